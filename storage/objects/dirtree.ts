import { parse, serialize } from '../gvariant';
import { CairnError } from '../errors';
import { checksumFromBytes, checksumToBytes } from './checksum';
import { compareNames, validateFilename } from './names';
import { OBJECT_GVARIANT_TYPE } from './types';

export interface DirTreeFile {
  name: string;
  checksum: string; // content object
}

export interface DirTreeDir {
  name: string;
  treeChecksum: string;
  metaChecksum: string;
}

export interface DirTree {
  files: DirTreeFile[];
  dirs: DirTreeDir[];
}

/** Checksum of the empty dirtree, the single byte 00. */
export const EMPTY_DIRTREE_CHECKSUM = '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d';

/** Encodes a dirtree, sorting entries by name as OSTree requires. */
export function encodeDirTree(t: DirTree): Buffer {
  const files = [...t.files].sort((a, b) => compareNames(a.name, b.name));
  const dirs = [...t.dirs].sort((a, b) => compareNames(a.name, b.name));
  checkEntries(files.map((f) => f.name), 'file');
  checkEntries(dirs.map((d) => d.name), 'directory');
  return serialize(OBJECT_GVARIANT_TYPE.dirtree, [
    files.map((f) => [f.name, checksumToBytes(f.checksum)]),
    dirs.map((d) => [d.name, checksumToBytes(d.treeChecksum), checksumToBytes(d.metaChecksum)]),
  ]);
}

/** Decodes and validates (ostree_validate_structureof_dirtree): legal names, sorted, unique, 32-byte checksums. */
export function decodeDirTree(data: Buffer): DirTree {
  const [rawFiles, rawDirs] = parse(OBJECT_GVARIANT_TYPE.dirtree, data) as [Array<[string, Buffer]>, Array<[string, Buffer, Buffer]>];
  const files = rawFiles.map(([name, c]) => ({ name, checksum: checksumFromBytes(c) }));
  const dirs = rawDirs.map(([name, t, m]) => ({ name, treeChecksum: checksumFromBytes(t), metaChecksum: checksumFromBytes(m) }));
  checkEntries(files.map((f) => f.name), 'file');
  checkEntries(dirs.map((d) => d.name), 'directory');
  return { files, dirs };
}

function checkEntries(names: string[], what: string): void {
  names.forEach((n, i) => {
    validateFilename(n);
    if (i > 0 && compareNames(names[i - 1]!, n) >= 0) {
      throw new CairnError('INVALID_OBJECT', `dirtree ${what} entries not sorted or repeated at "${n.slice(0, 80)}"`);
    }
  });
}
