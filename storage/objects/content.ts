import { createHash, type Hash } from 'node:crypto';
import { parse, serialize } from '../gvariant';
import { CairnError } from '../errors';
import { S_IFLNK, S_IFMT, S_IFREG } from './dirmeta';
import { bswap32, bswap64 } from './endian';
import { OBJECT_GVARIANT_TYPE } from './types';
import { checkXattrsSorted, decodeXattrs, encodeXattrs, type Xattr } from './xattrs';

/** What a content object says about its file, besides the bytes. */
export interface FileHeader {
  uid: number;
  gid: number;
  mode: number; // S_IFREG or S_IFLNK plus permission bits
  symlinkTarget: string; // '' for regular files
  xattrs: Xattr[];
}

/** Largest symlink target OSTree accepts (PATH_MAX). */
const MAX_SYMLINK = 4096;

export function isSymlink(h: FileHeader): boolean {
  return (h.mode & S_IFMT) === S_IFLNK;
}

export function validateFileHeader(h: FileHeader): void {
  const fmt = h.mode & S_IFMT;
  if (fmt !== S_IFREG && fmt !== S_IFLNK) throw new CairnError('INVALID_OBJECT', `content object mode 0${h.mode.toString(8)} is neither regular file nor symlink`);
  if ((h.mode & ~(S_IFMT | 0o7777)) !== 0) throw new CairnError('INVALID_OBJECT', `invalid mode bits 0${h.mode.toString(8)}`);
  if (fmt === S_IFLNK) {
    const len = Buffer.byteLength(h.symlinkTarget);
    if (len === 0 || len > MAX_SYMLINK) throw new CairnError('INVALID_OBJECT', 'symlink target is empty or too long');
  } else if (h.symlinkTarget !== '') {
    throw new CairnError('INVALID_OBJECT', 'regular file with a symlink target');
  }
}

/** BE32(length) ‖ 4 zero bytes ‖ variant: the framing OSTree puts around file headers. */
function frame(variant: Buffer): Buffer {
  const pre = Buffer.alloc(8);
  pre.writeUInt32BE(variant.length, 0);
  return Buffer.concat([pre, variant]);
}

/** The header that starts the checksummed content stream: `(uuuusa(ayay))`. */
export function encodeFileHeader(h: FileHeader): Buffer {
  validateFileHeader(h);
  return frame(serialize(OBJECT_GVARIANT_TYPE.fileHeader, [bswap32(h.uid), bswap32(h.gid), bswap32(h.mode), 0, h.symlinkTarget, encodeXattrs(h.xattrs)]));
}

/** The header of an archive `.filez`: `(tuuuusa(ayay))`, the uncompressed size first. */
export function encodeArchiveHeader(h: FileHeader, size: number): Buffer {
  validateFileHeader(h);
  return frame(
    serialize(OBJECT_GVARIANT_TYPE.archiveFileHeader, [bswap64(BigInt(size)), bswap32(h.uid), bswap32(h.gid), bswap32(h.mode), 0, h.symlinkTarget, encodeXattrs(h.xattrs)]),
  );
}

/** Most a .filez header may claim to be; real ones are a few hundred bytes (xattrs can make them larger). */
export const MAX_ARCHIVE_HEADER = 1024 * 1024;

/**
 * Reads the framed archive header at the start of `buf` (which must hold at least
 * the whole header). Returns the header, declared size and where the deflate body starts.
 */
export function decodeArchiveHeader(buf: Buffer): { header: FileHeader; size: number; bodyOffset: number } {
  if (buf.length < 8) throw new CairnError('INVALID_OBJECT', 'archive file object shorter than its header framing');
  const len = buf.readUInt32BE(0);
  if (buf.readUInt32BE(4) !== 0) throw new CairnError('INVALID_OBJECT', 'archive file header padding is not zero');
  if (len > MAX_ARCHIVE_HEADER) throw new CairnError('TOO_LARGE', `archive file header of ${len} bytes`);
  if (buf.length < 8 + len) throw new CairnError('INVALID_OBJECT', 'archive file object truncated in its header');
  const [size, uid, gid, mode, rdev, target, xattrs] = parse(OBJECT_GVARIANT_TYPE.archiveFileHeader, buf.subarray(8, 8 + len)) as [
    bigint,
    number,
    number,
    number,
    number,
    string,
    Array<[Buffer, Buffer]>,
  ];
  if (rdev !== 0) throw new CairnError('INVALID_OBJECT', 'content object with a device number');
  checkXattrsSorted(xattrs);
  const header: FileHeader = { uid: bswap32(uid), gid: bswap32(gid), mode: bswap32(mode), symlinkTarget: target, xattrs: decodeXattrs(xattrs) };
  validateFileHeader(header);
  const declared = bswap64(size);
  if (declared > BigInt(Number.MAX_SAFE_INTEGER)) throw new CairnError('TOO_LARGE', 'declared file size out of range');
  if (isSymlink(header) && declared !== 0n) throw new CairnError('INVALID_OBJECT', 'symlink with a non-zero size');
  return { header, size: Number(declared), bodyOffset: 8 + len };
}

/**
 * Incremental content checksum: SHA-256 over framed `(uuuusa(ayay))` header
 * then the file bytes. Feed data with update(), then digest().
 */
export class ContentHasher {
  private readonly hash: Hash = createHash('sha256');
  constructor(header: FileHeader) {
    this.hash.update(encodeFileHeader(header));
  }
  update(chunk: Buffer | Uint8Array): this {
    this.hash.update(chunk);
    return this;
  }
  digest(): string {
    return this.hash.digest('hex');
  }
}

export function contentChecksumOf(header: FileHeader, data: Buffer): string {
  return new ContentHasher(header).update(data).digest();
}
