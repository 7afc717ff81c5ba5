import { CairnError } from '../errors';

/** OstreeObjectType numbering (libostree/ostree-core.h); the numbers appear in deltas and ostree.sizes. */
export enum ObjectType {
  File = 1,
  DirTree = 2,
  DirMeta = 3,
  Commit = 4,
  TombstoneCommit = 5,
  CommitMeta = 6,
}

/** File extension of each object type in an archive repository. */
export const ARCHIVE_EXTENSION: Record<ObjectType, string> = {
  [ObjectType.File]: 'filez',
  [ObjectType.DirTree]: 'dirtree',
  [ObjectType.DirMeta]: 'dirmeta',
  [ObjectType.Commit]: 'commit',
  [ObjectType.TombstoneCommit]: 'tombstone-commit',
  [ObjectType.CommitMeta]: 'commitmeta',
};

const BY_EXTENSION = new Map<string, ObjectType>(Object.entries(ARCHIVE_EXTENSION).map(([t, ext]) => [ext, Number(t) as ObjectType]));

export function objectTypeFromExtension(ext: string): ObjectType {
  const t = BY_EXTENSION.get(ext);
  if (t === undefined) throw new CairnError('INVALID_ARGUMENT', `unknown object type "${ext.slice(0, 40)}"`);
  return t;
}

/** Metadata objects are named by the SHA-256 of their own bytes; content objects and commitmeta are not. */
export function isMetadataObject(t: ObjectType): boolean {
  return t === ObjectType.DirTree || t === ObjectType.DirMeta || t === ObjectType.Commit;
}

/** GVariant type of each metadata-like object. */
export const OBJECT_GVARIANT_TYPE = {
  commit: '(a{sv}aya(say)sstayay)',
  dirtree: '(a(say)a(sayay))',
  dirmeta: '(uuua(ayay))',
  commitmeta: 'a{sv}',
  tombstone: 'a{sv}',
  fileHeader: '(uuuusa(ayay))',
  archiveFileHeader: '(tuuuusa(ayay))',
  summary: '(a(s(taya{sv}))a{sv})',
  deltaIndex: 'a{sv}',
} as const;

/** Path of an object in the archive layout: objects/XX/REST.EXT */
export function objectKey(checksum: string, type: ObjectType): string {
  return `objects/${checksum.slice(0, 2)}/${checksum.slice(2)}.${ARCHIVE_EXTENSION[type]}`;
}

/** Largest metadata object, summary, superblock or signature the client accepts (OSTREE_MAX_METADATA_SIZE). */
export const MAX_METADATA_SIZE = 10 * 1024 * 1024;
