/**
 * Reading whole content objects out of an archive repository, for the delta
 * compiler (to splice or diff them) and the applier (bsdiff/`w` read sources).
 */
import { CairnError } from '../errors';
import { decodeArchiveHeader, MAX_ARCHIVE_HEADER, type FileHeader } from '../objects/content';
import { verifyFilez } from '../objects/filez';
import { ObjectType, objectKey } from '../objects/types';
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
