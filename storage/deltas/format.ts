/**
 * The static-delta wire format (FORMATS.md §5), shared by the reader/applier
 * and the compiler: superblock, part headers, fallbacks, part files, opcodes,
 * LEB128 varints, delta paths and names. Pure functions over bytes, no I/O.
 *
 * Endianness: part-header and fallback `u`/`t` fields follow the superblock's
 * `ostree.endianness` ('l' little, 'B' big). Cairn always writes 'l'. The
 * generation timestamp is [BE] regardless, and so are the (uid, gid, mode)
 * triples in a part's mode table — ostree writes those with GUINT32_TO_BE.
 */
import { parse, serialize, Variant, type VarDict } from '../gvariant';
import { CairnError } from '../errors';
import { checksumFromBytes, checksumFromMb64, checksumToBytes, checksumToMb64, isChecksum } from '../objects/checksum';
import { bswap32, bswap64 } from '../objects/endian';
import { ObjectType } from '../objects/types';
import { xzCompress, xzDecompress, type XzCompressOptions } from './xz';

export const SUPERBLOCK_TYPE = '(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))';
export const PART_HEADER_TYPE = '(uayttay)';
export const FALLBACK_TYPE = '(yaytt)';
export const PART_PAYLOAD_TYPE = '(a(uuu)aa(ayay)ayay)';
const COMMIT_TYPE = '(a{sv}aya(say)sstayay)';

/** OSTREE_DELTAPART_VERSION: the only part format there is. */
export const DELTA_PART_VERSION = 0;
export const ENDIANNESS_KEY = 'ostree.endianness';

/** Size of one record of a part's object list: objtype byte + raw checksum. */
export const OBJECT_RECORD_SIZE = 33;

export enum DeltaOp {
  OpenSpliceAndClose = 0x53, // 'S'
  Open = 0x6f, // 'o'
  Write = 0x77, // 'w'
  SetReadSource = 0x72, // 'r'
  UnsetReadSource = 0x52, // 'R'
  Close = 0x63, // 'c'
  Bspatch = 0x42, // 'B'
}

export const OP_NAMES: Record<number, string> = {
  [DeltaOp.OpenSpliceAndClose]: 'S',
  [DeltaOp.Open]: 'o',
  [DeltaOp.Write]: 'w',
  [DeltaOp.SetReadSource]: 'r',
  [DeltaOp.UnsetReadSource]: 'R',
  [DeltaOp.Close]: 'c',
  [DeltaOp.Bspatch]: 'B',
};

/** Part compression byte: none, or an xz container. */
export type PartCompression = 0 | 0x78;
export const COMPRESSION_NONE = 0 as const;
export const COMPRESSION_XZ = 0x78 as const; // 'x'

/**
 * ostree 2022.7 maps an uncompressed part at offset 1 and fails with EINVAL for
 * parts over a page-ish size; 16 KiB is where FORMATS.md saw it break. Cairn
 * never writes uncompressed parts at all, and refuses to encode one this large.
 */
export const MAX_UNCOMPRESSED_PART_FILE = 16 * 1024;

export interface DeltaObjectRef {
  type: ObjectType;
  checksum: string;
}

export interface PartHeader {
  version: number;
  /** SHA-256 of the whole part file (compression byte included). */
  checksum: string;
  /** Length of the part file. */
  size: number;
  /** Metadata bytes plus regular-file content bytes the part produces. */
  usize: number;
  /** Objects produced, in op order. */
  objects: DeltaObjectRef[];
}

export interface FallbackEntry {
  type: ObjectType;
  checksum: string;
  /** Size of the loose object (.filez) the client downloads. */
  compressedSize: number;
  /** Uncompressed content size. */
  size: number;
}

export interface Superblock {
  /** Every key, in order: user keys, `ostree.endianness`, inline parts, commitmeta. */
  metadata: VarDict;
  /** Generation time, seconds since the epoch. */
  timestamp: bigint;
  from: string | null;
  to: string;
  /** Exact bytes of the to-commit. */
  commit: Buffer;
  parts: PartHeader[];
  fallbacks: FallbackEntry[];
}

export interface ModeEntry {
  uid: number;
  gid: number;
  mode: number;
}

/** The decompressed payload of a part: tables, data blob and opcode stream. */
export interface PartPayload {
  modes: ModeEntry[];
  /** xattr sets as stored: (name with NUL, value) pairs; index 0 is normally []. */
  xattrs: Array<Array<[Buffer, Buffer]>>;
  blob: Buffer;
  ops: Buffer;
}

function invalid(why: string, details?: Record<string, unknown>): never {
  throw new CairnError('INVALID_OBJECT', `static delta: ${why}`, details);
}

// ---------------------------------------------------------------------------------------------
// Names and paths

/** `FROM-TO` or `TO` in hex, as the summary, the index and `ostree static-delta list` name deltas. */
export function deltaName(from: string | null, to: string): string {
  return from ? `${from}-${to}` : to;
}

export function parseDeltaName(name: string): { from: string | null; to: string } {
  const m = /^(?:([0-9a-f]{64})-)?([0-9a-f]{64})$/.exec(name);
  if (!m) throw new CairnError('INVALID_ARGUMENT', `invalid delta name "${name.slice(0, 140)}": need TO or FROM-TO in hex`);
  return { from: m[1] ?? null, to: m[2]! };
}

/** Folder of a delta: `deltas/F[0:2]/F[2:]-T` (mb64 checksums), or `deltas/T[0:2]/T[2:]` from scratch. */
export function deltaDir(from: string | null, to: string): string {
  const t = checksumToMb64(to);
  if (!from) return `deltas/${t.slice(0, 2)}/${t.slice(2)}`;
  const f = checksumToMb64(from);
  return `deltas/${f.slice(0, 2)}/${f.slice(2)}-${t}`;
}

export function superblockKey(from: string | null, to: string): string {
  return `${deltaDir(from, to)}/superblock`;
}

/** Key of part `i`; also the superblock metadata key of an inline part. */
export function partKey(from: string | null, to: string, i: number): string {
  return `${deltaDir(from, to)}/${i}`;
}

/** Superblock metadata key holding the to-commit's detached metadata. */
export function commitmetaKey(from: string | null, to: string): string {
  return `${deltaDir(from, to)}/commitmeta`;
}

/** Inverse of deltaDir() for a key below `deltas/` (superblock or part); null when it is not one. */
export function parseDeltaKey(key: string): { from: string | null; to: string; file: string } | null {
  const m = /^deltas\/([A-Za-z0-9+_]{2})\/([A-Za-z0-9+_]{41})(?:-([A-Za-z0-9+_]{43}))?\/([^/]+)$/.exec(key);
  if (!m) return null;
  const first = checksumFromMb64(m[1]! + m[2]!);
  return m[3] ? { from: first, to: checksumFromMb64(m[3]), file: m[4]! } : { from: null, to: first, file: m[4]! };
}

// ---------------------------------------------------------------------------------------------
// Varints (unsigned LEB128, as _ostree_read_varuint64 / _ostree_write_varuint64)

const MAX_VARINT_BYTES = 10;

/** Appends the unsigned LEB128 encoding of `n` to `out`. */
export function writeVarint(out: number[], n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new CairnError('INVALID_ARGUMENT', `varint value ${n} out of range`);
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
}

/**
 * Reads a varint at `at`; returns [value, next offset]. Truncated, over-long (> 10
 * bytes) or values past 2^53 (no real offset or size is that large) are refused.
 */
export function readVarint(buf: Buffer, at: number): [number, number] {
  let value = 0;
  for (let i = 0; i < MAX_VARINT_BYTES; i++) {
    if (at + i >= buf.length) invalid('truncated varint in the opcode stream');
    const b = buf[at + i]!;
    value += (b & 0x7f) * 2 ** (7 * i);
    if (!(b & 0x80)) {
      if (value > Number.MAX_SAFE_INTEGER) invalid('varint value out of range');
      return [value, at + i + 1];
    }
  }
  return invalid('varint longer than 10 bytes');
}

// ---------------------------------------------------------------------------------------------
// Superblock

function u32(v: number, swap: boolean): number {
  return swap ? bswap32(v) : v;
}

function u64(v: bigint, swap: boolean): bigint {
  return swap ? bswap64(v) : v;
}

function toSafe(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) invalid(`${what} out of range`);
  return Number(v);
}

/** Whether a superblock's u/t fields need swapping (`_ostree_delta_needs_byteswap`). */
function needsByteswap(metadata: VarDict, rawHeaders: Array<[number, Buffer, bigint, bigint, Buffer]>): boolean {
  for (const [k, v] of metadata) {
    if (k !== ENDIANNESS_KEY) continue;
    if (v.type !== 'y') invalid(`${ENDIANNESS_KEY} is not a byte`);
    if (v.value === 0x6c) return false; // 'l' (we run on little-endian hosts only, as every Node target does)
    if (v.value === 0x42) return true; // 'B'
    invalid(`unknown endianness 0x${(v.value as number).toString(16)}`);
  }
  // No key (very old deltas): ostree guesses. A part size above 2^32 read one way and
  // sane read the other way means the other way.
  let big = 0;
  for (const [, , size] of rawHeaders) {
    if (size > 0xffffffffn && bswap64(size) <= 0xffffffffn) big++;
  }
  return big > 0 && big === rawHeaders.length;
}

function decodeObjectList(raw: Buffer): DeltaObjectRef[] {
  if (raw.length % OBJECT_RECORD_SIZE !== 0) invalid(`part object list of ${raw.length} bytes is not a multiple of ${OBJECT_RECORD_SIZE}`);
  const out: DeltaObjectRef[] = [];
  for (let i = 0; i < raw.length; i += OBJECT_RECORD_SIZE) {
    const t = raw[i]!;
    if (t !== ObjectType.File && t !== ObjectType.DirTree && t !== ObjectType.DirMeta && t !== ObjectType.Commit) {
      invalid(`object type ${t} cannot be produced by a delta`);
    }
    out.push({ type: t as ObjectType, checksum: checksumFromBytes(raw.subarray(i + 1, i + OBJECT_RECORD_SIZE)) });
  }
  return out;
}

export function encodeObjectList(objects: readonly DeltaObjectRef[]): Buffer {
  const out = Buffer.alloc(objects.length * OBJECT_RECORD_SIZE);
  objects.forEach((o, i) => {
    out[i * OBJECT_RECORD_SIZE] = o.type;
    checksumToBytes(o.checksum).copy(out, i * OBJECT_RECORD_SIZE + 1);
  });
  return out;
}

/** Parses and validates a superblock (normal form required: it is content-addressed by its digest). */
export function decodeSuperblock(data: Buffer): Superblock {
  const v = parse(SUPERBLOCK_TYPE, data) as [VarDict, bigint, Buffer, Buffer, unknown, Buffer, Array<[number, Buffer, bigint, bigint, Buffer]>, Array<[number, Buffer, bigint, bigint]>];
  const [metadata, ts, from, to, commitValue, recurse, rawHeaders, rawFallbacks] = v;
  if (from.length !== 0 && from.length !== 32) invalid(`from checksum of ${from.length} bytes`);
  if (to.length !== 32) invalid(`to checksum of ${to.length} bytes`);
  if (recurse.length !== 0) invalid('non-empty "recurse" field (never used by ostree)');
  const swap = needsByteswap(metadata, rawHeaders);
  const parts = rawHeaders.map(([version, csum, size, usize, objs], i): PartHeader => {
    const ver = u32(version, swap);
    if (ver !== DELTA_PART_VERSION) invalid(`part ${i} has version ${ver}`);
    if (csum.length !== 32) invalid(`part ${i} checksum of ${csum.length} bytes`);
    return {
      version: ver,
      checksum: checksumFromBytes(csum),
      size: toSafe(u64(size, swap), `part ${i} size`),
      usize: toSafe(u64(usize, swap), `part ${i} uncompressed size`),
      objects: decodeObjectList(objs),
    };
  });
  const fallbacks = rawFallbacks.map(([type, csum, csize, size], i): FallbackEntry => {
    if (type !== ObjectType.File && type !== ObjectType.DirTree && type !== ObjectType.DirMeta) invalid(`fallback ${i} has object type ${type}`);
    if (csum.length !== 32) invalid(`fallback ${i} checksum of ${csum.length} bytes`);
    return {
      type: type as ObjectType,
      checksum: checksumFromBytes(csum),
      compressedSize: toSafe(u64(csize, swap), `fallback ${i} size`),
      size: toSafe(u64(size, swap), `fallback ${i} uncompressed size`),
    };
  });
  return {
    metadata,
    timestamp: bswap64(ts),
    from: from.length ? checksumFromBytes(from) : null,
    to: checksumFromBytes(to),
    commit: serialize(COMMIT_TYPE, commitValue),
    parts,
    fallbacks,
  };
}

/** Serializes a superblock, always little-endian ('l'); `metadata` must already hold the endianness key. */
export function encodeSuperblock(sb: Superblock): Buffer {
  const endian = sb.metadata.find(([k]) => k === ENDIANNESS_KEY);
  if (!endian || endian[1].type !== 'y' || endian[1].value !== 0x6c) {
    throw new CairnError('INVALID_ARGUMENT', `superblock metadata must say ${ENDIANNESS_KEY}='l'`);
  }
  return serialize(SUPERBLOCK_TYPE, [
    sb.metadata,
    bswap64(sb.timestamp),
    sb.from ? checksumToBytes(sb.from) : Buffer.alloc(0),
    checksumToBytes(sb.to),
    parse(COMMIT_TYPE, sb.commit),
    Buffer.alloc(0),
    sb.parts.map((p) => [p.version, checksumToBytes(p.checksum), BigInt(p.size), BigInt(p.usize), encodeObjectList(p.objects)]),
    sb.fallbacks.map((f) => [f.type, checksumToBytes(f.checksum), BigInt(f.compressedSize), BigInt(f.size)]),
  ]);
}

export function endiannessEntry(): [string, Variant] {
  return [ENDIANNESS_KEY, new Variant('y', 0x6c)];
}

/** The part file held inline under the superblock metadata key `partKey(from, to, i)`, if any. */
export function inlinePart(sb: Superblock, i: number): Buffer | null {
  const key = partKey(sb.from, sb.to, i);
  for (const [k, v] of sb.metadata) {
    if (k !== key) continue;
    if (v.type !== '(yay)') invalid(`inline part ${i} has type ${v.type}`);
    // The variant's bytes are the part file: (yay) serializes to the byte then the array.
    return serialize('(yay)', v.value);
  }
  return null;
}

/** The metadata entry that holds a part file inline. */
export function inlinePartEntry(from: string | null, to: string, i: number, partFile: Buffer): [string, Variant] {
  if (partFile.length < 1) throw new CairnError('INVALID_ARGUMENT', 'empty part file');
  return [partKey(from, to, i), new Variant('(yay)', [partFile[0], partFile.subarray(1)])];
}

/** Detached metadata of the to-commit carried in the superblock, if any (normal-form a{sv}). */
export function superblockCommitmeta(sb: Superblock): Buffer | null {
  const key = commitmetaKey(sb.from, sb.to);
  for (const [k, v] of sb.metadata) {
    if (k !== key) continue;
    if (v.type !== 'a{sv}') invalid(`commitmeta entry has type ${v.type}`);
    return serialize('a{sv}', v.value);
  }
  return null;
}

export function isValidChecksum(s: string): boolean {
  return isChecksum(s);
}

// ---------------------------------------------------------------------------------------------
// Parts

export function encodePartPayload(p: PartPayload): Buffer {
  return serialize(PART_PAYLOAD_TYPE, [p.modes.map((m) => [bswap32(m.uid), bswap32(m.gid), bswap32(m.mode)]), p.xattrs, p.blob, p.ops]);
}

export function decodePartPayload(data: Buffer): PartPayload {
  // Not required to be normal form: the part is authenticated by its checksum, and
  // the client reads it with g_variant_new_from_data(trusted=FALSE) semantics.
  const [modes, xattrs, blob, ops] = parse(PART_PAYLOAD_TYPE, data, { requireNormal: false }) as [Array<[number, number, number]>, Array<Array<[Buffer, Buffer]>>, Buffer, Buffer];
  return { modes: modes.map(([u, g, m]) => ({ uid: bswap32(u), gid: bswap32(g), mode: bswap32(m) })), xattrs, blob, ops };
}

/** A whole part file: compression byte then the (compressed) payload. Cairn writes xz. */
export async function encodePartFile(payload: Buffer, compression: PartCompression = COMPRESSION_XZ, xz: XzCompressOptions = {}): Promise<Buffer> {
  if (compression === COMPRESSION_NONE) {
    if (payload.length + 1 > MAX_UNCOMPRESSED_PART_FILE) {
      throw new CairnError('INVALID_ARGUMENT', `uncompressed parts over ${MAX_UNCOMPRESSED_PART_FILE} bytes break the ostree 2022.7 client`);
    }
    return Buffer.concat([Buffer.from([0]), payload]);
  }
  return Buffer.concat([Buffer.from([COMPRESSION_XZ]), await xzCompress(payload, xz)]);
}

/** Decompresses a part file (bounded by `maxPayloadSize`) and parses its payload. */
export async function decodePartFile(file: Buffer, maxPayloadSize: number): Promise<PartPayload> {
  if (file.length < 1) invalid('empty part file');
  const kind = file[0]!;
  let payload: Buffer;
  if (kind === COMPRESSION_NONE) {
    payload = file.subarray(1);
    if (payload.length > maxPayloadSize) throw new CairnError('TOO_LARGE', `part payload of ${payload.length} bytes exceeds ${maxPayloadSize}`);
  } else if (kind === COMPRESSION_XZ) {
    payload = await xzDecompress(file.subarray(1), maxPayloadSize);
  } else {
    invalid(`unknown part compression 0x${kind.toString(16)}`);
  }
  return decodePartPayload(payload);
}
