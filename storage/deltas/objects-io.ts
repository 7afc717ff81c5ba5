/**
 * Reading whole content objects out of an archive repository, for the delta
 * compiler (to splice or diff them) and the applier (bsdiff/`w` read sources).
 */
import { inflateRawSync } from 'node:zlib';
import { nowOf, readAt } from '../backends/backend';
import { CairnError } from '../errors';
import { contentChecksumOf, decodeArchiveHeader, isSymlink, MAX_ARCHIVE_HEADER, type FileHeader } from '../objects/content';
import { verifyFilez } from '../objects/filez';
import { validateChecksum } from '../objects/checksum';
import { MAX_METADATA_SIZE, ObjectType, objectKey } from '../objects/types';
import type { Repo } from '../repo/repo';

export interface LoadedContent {
  header: FileHeader;
  /** File bytes (empty for a symlink). */
  data: Buffer;
}

/**
 * Inflates `.filez` `checksum` completely, verifying that it hashes to its name.
 * Files larger than `maxSize` are refused before anything is inflated.
 */
export async function readContentObject(repo: Repo, checksum: string, maxSize: number): Promise<LoadedContent> {
  const key = objectKey(checksum, ObjectType.File);
  const opened = await repo.backend.openRead(key);
  if (!opened) throw new CairnError('NOT_FOUND', `content object ${checksum} is not in the repository`, { object: checksum });
  const chunks: Buffer[] = [];
  const v = await verifyFilez(opened.stream, { maxSize, onData: (b) => chunks.push(Buffer.from(b)) });
  if (v.checksum !== checksum) {
    throw new CairnError('CHECKSUM_MISMATCH', `content object ${checksum} hashes to ${v.checksum}`, { object: checksum, actual: v.checksum });
  }
  return { header: v.header, data: Buffer.concat(chunks, v.size) };
}

export interface ContentInfo {
  header: FileHeader;
  /** Uncompressed file size (0 for symlinks). */
  size: number;
  /** Size of the .filez file. */
  storedSize: number;
}

/** Header, size and stored size of a content object, reading only the start of its file. */
export async function readContentInfo(repo: Repo, checksum: string): Promise<ContentInfo> {
  const key = objectKey(checksum, ObjectType.File);
  const info = await repo.backend.stat(key);
  if (!info) throw new CairnError('NOT_FOUND', `content object ${checksum} is not in the repository`, { object: checksum });
  let want = Math.min(info.size, 4096);
  for (;;) {
    const opened = await repo.backend.openRead(key, { start: 0, end: Math.max(0, want - 1) });
    if (!opened) throw new CairnError('NOT_FOUND', `content object ${checksum} is not in the repository`, { object: checksum });
    const parts: Buffer[] = [];
    for await (const c of opened.stream) parts.push(Buffer.from(c as Buffer));
    const head = Buffer.concat(parts);
    const need = head.length >= 8 ? 8 + head.readUInt32BE(0) : 8;
    if (need > 8 + MAX_ARCHIVE_HEADER) throw new CairnError('TOO_LARGE', `content object ${checksum} has an oversized header`);
    if (head.length >= need) {
      const { header, size } = decodeArchiveHeader(head);
      return { header, size, storedSize: info.size };
    }
    if (want >= info.size) throw new CairnError('INVALID_OBJECT', `content object ${checksum} is truncated in its header`);
    want = Math.min(info.size, need);
  }
}

/** A content object's header and sizes, with its bytes when they were asked for. */
export interface ContentRead extends ContentInfo {
  /** File bytes, verified, when the file is not a symlink and its size was at most `dataUpTo`. */
  data?: Buffer;
}

/** Bytes read first: the header and, for most files, the whole object. */
const HEAD_READ = 64 * 1024;
/** Largest stored object read and inflated in one piece on the calling thread; beyond it, readContentObject inflates on the libuv pool (two large files of a bsdiff inflate side by side). */
const ONE_PIECE_STORED = 1024 * 1024;

/**
 * Header, sizes and (for files of at most `dataUpTo` bytes) the verified
 * content of `.filez` `checksum`, with one open and a read or two: the
 * compiler's path for the thousands of small objects of a delta, where a
 * stat, two opens and a zlib stream per object cost more than the bytes.
 * Same checks as readContentObject (size bound, inflated size as declared,
 * nothing after the deflate stream, content checksum); larger objects, and
 * backends without positional reads, take the streaming path.
 */
export async function readContent(repo: Repo, checksum: string, dataUpTo: number): Promise<ContentRead> {
  const key = objectKey(checksum, ObjectType.File);
  const b = repo.backend;
  if (b.blocking) {
    // Local storage: a small object costs less read with blocking calls than a pool round trip each.
    const st = nowOf(b.statFast(key));
    if (!st) throw new CairnError('NOT_FOUND', `content object ${checksum} is not in the repository`, { object: checksum });
    if (st.size <= ONE_PIECE_STORED) {
      const got = nowOf(b.readFast(key));
      if (!got) throw new CairnError('NOT_FOUND', `content object ${checksum} is not in the repository`, { object: checksum });
      return decodeWhole(checksum, got.data, dataUpTo);
    }
  }
  const reader = await b.openReader(key);
  if (reader === null) throw new CairnError('NOT_FOUND', `content object ${checksum} is not in the repository`, { object: checksum });
  try {
    const storedSize = reader.info.size;
    let head = await readAt(reader, 0, Math.min(storedSize, dataUpTo > 0 ? HEAD_READ : 4096));
    if (head.length < 8) throw new CairnError('INVALID_OBJECT', `content object ${checksum} is truncated in its header`);
    const need = 8 + head.readUInt32BE(0);
    if (need > 8 + MAX_ARCHIVE_HEADER) throw new CairnError('TOO_LARGE', `content object ${checksum} has an oversized header`);
    if (head.length < need) {
      if (need > storedSize) throw new CairnError('INVALID_OBJECT', `content object ${checksum} is truncated in its header`);
      head = Buffer.concat([head, await readAt(reader, head.length, need - head.length)]);
    }
    const { header, size } = decodeArchiveHeader(head);
    const info: ContentInfo = { header, size, storedSize };
    if (isSymlink(header) || size > dataUpTo) return info;
    if (storedSize > ONE_PIECE_STORED) return { ...info, data: (await readContentObject(repo, checksum, dataUpTo)).data };
    const whole = head.length >= storedSize ? head : Buffer.concat([head, await readAt(reader, head.length, storedSize - head.length)]);
    if (whole.length !== storedSize) throw new CairnError('INVALID_OBJECT', `content object ${checksum} changed size while read`);
    return decodeWhole(checksum, whole, dataUpTo);
  } finally {
    await reader.close();
  }
}

/** A whole `.filez` in memory: its header and sizes, and its verified bytes when wanted (see readContent). */
function decodeWhole(checksum: string, whole: Buffer, dataUpTo: number): ContentRead {
  if (whole.length < 8) throw new CairnError('INVALID_OBJECT', `content object ${checksum} is truncated in its header`);
  const need = 8 + whole.readUInt32BE(0);
  if (need > 8 + MAX_ARCHIVE_HEADER) throw new CairnError('TOO_LARGE', `content object ${checksum} has an oversized header`);
  if (need > whole.length) throw new CairnError('INVALID_OBJECT', `content object ${checksum} is truncated in its header`);
  const { header, size, bodyOffset } = decodeArchiveHeader(whole);
  const info: ContentInfo = { header, size, storedSize: whole.length };
  if (isSymlink(header) || size > dataUpTo) return info;
  const data = inflateOnePiece(checksum, whole.subarray(bodyOffset), size);
  const actual = contentChecksumOf(header, data);
  if (actual !== checksum) throw new CairnError('CHECKSUM_MISMATCH', `content object ${checksum} hashes to ${actual}`, { object: checksum, actual });
  return { ...info, data };
}


/** The deflate body inflated at once: exactly `size` bytes and nothing after the stream, or INVALID_OBJECT. */
function inflateOnePiece(checksum: string, body: Buffer, size: number): Buffer {
  let out: { buffer: Buffer; engine: { bytesWritten: number } };
  try {
    // One byte over the declared size is enough to know it inflates past it (a bomb stops there).
    out = inflateRawSync(body, { info: true, maxOutputLength: size + 1 }) as unknown as typeof out;
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' ? `inflates past its declared ${size} bytes` : `corrupt deflate data (${(e as Error).message})`;
    throw new CairnError('INVALID_OBJECT', `content object ${checksum}: ${why}`, { object: checksum });
  }
  if (out.engine.bytesWritten < body.length) throw new CairnError('INVALID_OBJECT', `content object ${checksum}: bytes after the end of its deflate stream`, { object: checksum });
  if (out.buffer.length !== size) throw new CairnError('INVALID_OBJECT', `content object ${checksum}: inflates to ${out.buffer.length} bytes, its header says ${size}`, { object: checksum });
  return out.buffer;
}

/**
 * Bytes of a metadata object, or null when absent: Repo.readMetadata with one
 * open instead of a stat and then an open (the index of a tree reads hundreds).
 */
export async function readMetadataObject(repo: Repo, checksum: string, type: ObjectType): Promise<Buffer | null> {
  const key = objectKey(validateChecksum(checksum), type);
  const b = repo.backend;
  if (b.blocking) {
    const st = nowOf(b.statFast(key));
    if (!st) return null;
    if (st.size > MAX_METADATA_SIZE) throw new CairnError('TOO_LARGE', `${key} is larger than ${MAX_METADATA_SIZE} bytes`);
    const got = nowOf(b.readFast(key));
    if (got && got.data.length > MAX_METADATA_SIZE) throw new CairnError('TOO_LARGE', `${key} is larger than ${MAX_METADATA_SIZE} bytes`);
    return got?.data ?? null;
  }
  const reader = await b.openReader(key);
  if (!reader) return null;
  try {
    if (reader.info.size > MAX_METADATA_SIZE) throw new CairnError('TOO_LARGE', `${key} is larger than ${MAX_METADATA_SIZE} bytes`);
    const data = await readAt(reader, 0, reader.info.size);
    if (data.length !== reader.info.size) throw new CairnError('IO', `${key} changed size while read`, { path: key });
    return data;
  } finally {
    await reader.close();
  }
}
