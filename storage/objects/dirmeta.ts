import { parse, serialize } from '../gvariant';
import { CairnError } from '../errors';
import { bswap32 } from './endian';
import { OBJECT_GVARIANT_TYPE } from './types';
import { checkXattrsSorted, decodeXattrs, encodeXattrs, type Xattr } from './xattrs';

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

/** Directory metadata: owner, mode (with S_IFDIR) and xattrs. */
export interface DirMeta {
  uid: number;
  gid: number;
  mode: number;
  xattrs: Xattr[];
}

export function encodeDirMeta(m: DirMeta): Buffer {
  validateDirMode(m.mode);
  return serialize(OBJECT_GVARIANT_TYPE.dirmeta, [bswap32(m.uid), bswap32(m.gid), bswap32(m.mode), encodeXattrs(m.xattrs)]);
}

export function decodeDirMeta(data: Buffer): DirMeta {
  const [uid, gid, mode, xattrs] = parse(OBJECT_GVARIANT_TYPE.dirmeta, data) as [number, number, number, Array<[Buffer, Buffer]>];
  const m = { uid: bswap32(uid), gid: bswap32(gid), mode: bswap32(mode), xattrs: decodeXattrs(xattrs) };
  validateDirMode(m.mode);
  checkXattrsSorted(xattrs);
  return m;
}

function validateDirMode(mode: number): void {
  // ostree_validate_structureof_dirmeta: S_IFDIR plus permission bits, nothing else.
  if ((mode & S_IFMT) !== S_IFDIR || (mode & ~(S_IFMT | 0o7777)) !== 0) {
    throw new CairnError('INVALID_OBJECT', `invalid directory mode 0${mode.toString(8)}`);
  }
}
