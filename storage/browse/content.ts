/**
 * Content objects (`.filez`) as the browse API needs them: the header and
 * sizes without inflating anything, and the file's bytes as a stream that
 * inflates under the declared size and checks the content checksum at the
 * end (a stream that does not hash to its name ends in an error).
 */
import { Readable } from 'node:stream';
import { createInflateRaw } from 'node:zlib';
import { readAt } from '../backends/backend';
import { CairnError } from '../errors';
import { ContentHasher, decodeArchiveHeader, isSymlink, MAX_ARCHIVE_HEADER, type FileHeader } from '../objects/content';
import { validateChecksum } from '../objects/checksum';
import { ObjectType, objectKey } from '../objects/types';
import type { Repo } from '../repo/repo';

export interface ContentHead {
  header: FileHeader;
  /** Uncompressed file size as the header declares it (0 for symlinks); checked when the content is read. */
  size: number;
  /** Bytes of the `.filez` file as stored. */
  storedSize: number;
  /** Where the deflate body starts in the `.filez`. */
  bodyOffset: number;
}

const FIRST_READ = 4096;

const absent = (checksum: string) => new CairnError('NOT_FOUND', `content object ${checksum} is not in the repository`, { object: checksum });
const truncated = (checksum: string) => new CairnError('INVALID_OBJECT', `content object ${checksum} is truncated in its header`, { object: checksum });

/**
 * Header and sizes of content object `checksum`, reading only the start of
 * its file (4 KiB, more only for a header with large xattrs, at most
 * MAX_ARCHIVE_HEADER). NOT_FOUND when absent.
 */
/** Thrown by readContentHead when `admit` refused the header's size (nothing decoded). */
export class HeaderRefused extends Error {
  constructor(readonly headerBytes: number) {
    super(`content header of ${headerBytes} bytes not admitted`);
  }
}

export async function readContentHead(repo: Repo, checksum: string, opts: { admit?: (headerBytes: number) => boolean } = {}): Promise<ContentHead> {
  const key = objectKey(validateChecksum(checksum), ObjectType.File);
  const reader = await repo.backend.openReader(key);
  if (!reader) throw absent(checksum);
  try {
    const storedSize = reader.info.size;
    let head = await readAt(reader, 0, Math.min(storedSize, FIRST_READ));
    const need = headerNeed(checksum, head);
    if (opts.admit && !opts.admit(need)) throw new HeaderRefused(need);
    if (head.length < need) {
      if (need > storedSize) throw truncated(checksum);
      head = Buffer.concat([head, await readAt(reader, head.length, need - head.length)]);
      if (head.length < need) throw truncated(checksum);
    }
    return { ...decode(checksum, head), storedSize };
  } finally {
    await reader.close();
  }
}

function headerNeed(checksum: string, head: Buffer): number {
  if (head.length < 8) throw truncated(checksum);
  const need = 8 + head.readUInt32BE(0);
  if (need > 8 + MAX_ARCHIVE_HEADER) throw new CairnError('TOO_LARGE', `content object ${checksum} has an oversized header`, { object: checksum });
  return need;
}

function decode(checksum: string, head: Buffer): Omit<ContentHead, 'storedSize'> {
  try {
    return decodeArchiveHeader(head);
  } catch (e) {
    if (e instanceof CairnError) throw new CairnError(e.code, `content object ${checksum}: ${e.message}`, { object: checksum });
    throw e;
  }
}


export interface OpenedContent extends ContentHead {
  checksum: string;
  /**
   * The file's bytes, inflated as they are read (the object is never held
   * whole). It errors (INVALID_OBJECT / CHECKSUM_MISMATCH) if the content
   * inflates past or short of its declared size or does not hash to its name;
   * the bytes before that point have been delivered by then.
   */
  stream: Readable;
}

/** Opens content object `checksum` for reading its file bytes. Symlinks are refused (they have no bytes). */
export async function openContent(repo: Repo, checksum: string): Promise<OpenedContent> {
  const head = await readContentHead(repo, checksum);
  if (isSymlink(head.header)) {
    throw new CairnError('INVALID_ARGUMENT', `content object ${checksum} is a symlink (to ${head.header.symlinkTarget.slice(0, 200)}), it has no bytes to read`);
  }
  if (head.storedSize <= head.bodyOffset) throw new CairnError('INVALID_OBJECT', `content object ${checksum} has no compressed body`, { object: checksum });
  const key = objectKey(checksum, ObjectType.File);
  const opened = await repo.backend.openRead(key, { start: head.bodyOffset, end: head.storedSize - 1 });
  if (!opened) throw absent(checksum);
  return { ...head, checksum, stream: Readable.from(inflateChecked(opened.stream, checksum, head), { objectMode: false }) };
}

async function* inflateChecked(source: Readable, checksum: string, head: ContentHead): AsyncGenerator<Buffer> {
  const inflate = createInflateRaw({ chunkSize: 64 * 1024 });
  source.on('error', (e) => inflate.destroy(e));
  source.pipe(inflate);
  const hasher = new ContentHasher(head.header);
  let produced = 0;
  try {
    for await (const chunk of inflate) {
      const b = chunk as Buffer;
      produced += b.length;
      if (produced > head.size) throw new CairnError('INVALID_OBJECT', `content object ${checksum} inflates past its declared size of ${head.size} bytes`, { object: checksum });
      hasher.update(b);
      yield b;
    }
  } catch (e) {
    if (e instanceof CairnError) throw e;
    throw new CairnError('INVALID_OBJECT', `content object ${checksum}: corrupt compressed content: ${(e as Error).message}`, { object: checksum });
  } finally {
    source.destroy();
    inflate.destroy();
  }
  if (produced !== head.size) throw new CairnError('INVALID_OBJECT', `content object ${checksum} inflates to ${produced} bytes, its header declares ${head.size}`, { object: checksum });
  const actual = hasher.digest();
  if (actual !== checksum) throw new CairnError('CHECKSUM_MISMATCH', `content object ${checksum} hashes to ${actual}`, { object: checksum, actual });
}
