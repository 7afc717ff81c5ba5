import { parse, serialize, type VarDict } from '../gvariant';
import { CairnError } from '../errors';
import { checksumFromBytes, checksumToBytes, sha256Hex } from './checksum';
import { bswap64 } from './endian';
import { OBJECT_GVARIANT_TYPE } from './types';

/** A commit object `(a{sv}aya(say)sstayay)`. */
export interface Commit {
  metadata: VarDict;
  parent: string | null;
  subject: string;
  body: string;
  /** Seconds since the epoch (stored [BE]). */
  timestamp: bigint;
  rootTree: string;
  rootMeta: string;
}

export function encodeCommit(c: Commit): Buffer {
  checkMetadataKeys(c.metadata);
  return serialize(OBJECT_GVARIANT_TYPE.commit, [
    c.metadata,
    c.parent ? checksumToBytes(c.parent) : Buffer.alloc(0),
    [], // "related" objects: unused by OSTree, always empty
    c.subject,
    c.body,
    bswap64(c.timestamp),
    checksumToBytes(c.rootTree),
    checksumToBytes(c.rootMeta),
  ]);
}

/** Decodes and validates like ostree_validate_structureof_commit: parent 0 or 32 bytes, root checksums 32 bytes, no empty metadata keys. */
export function decodeCommit(data: Buffer): Commit {
  const [metadata, parent, , subject, body, ts, rootTree, rootMeta] = parse(OBJECT_GVARIANT_TYPE.commit, data) as [
    VarDict,
    Buffer,
    unknown,
    string,
    string,
    bigint,
    Buffer,
    Buffer,
  ];
  if (parent.length !== 0 && parent.length !== 32) throw new CairnError('INVALID_OBJECT', `commit parent has ${parent.length} bytes`);
  checkMetadataKeys(metadata);
  return {
    metadata,
    parent: parent.length ? checksumFromBytes(parent) : null,
    subject,
    body,
    timestamp: bswap64(ts),
    rootTree: checksumFromBytes(rootTree),
    rootMeta: checksumFromBytes(rootMeta),
  };
}

function checkMetadataKeys(md: VarDict): void {
  for (const [k] of md) if (k.length === 0) throw new CairnError('INVALID_OBJECT', 'commit metadata has an empty key');
}

/** ContentChecksum: SHA-256 of the raw root dirtree and dirmeta checksums (what `ostree log` prints). */
export function contentChecksum(c: Pick<Commit, 'rootTree' | 'rootMeta'>): string {
  return sha256Hex(checksumToBytes(c.rootTree), checksumToBytes(c.rootMeta));
}

/** `version` from the commit metadata, when it is a string. */
export function commitVersion(c: Commit): string | undefined {
  for (const [k, v] of c.metadata) if (k === 'version' && v.type === 's') return v.value as string;
  return undefined;
}
