/**
 * Reading a static delta (Cairn's or ostree's): the superblock with its digest,
 * the parts with their checksums and sizes checked against the superblock, and
 * a description for `cairn delta show`. Applying lives in apply.ts.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Backend } from '../backends/backend';
import { CairnError, isNotFoundErrno } from '../errors';
import { sha256Hex, validateChecksum } from '../objects/checksum';
import { MAX_METADATA_SIZE, ObjectType } from '../objects/types';
import {
  COMPRESSION_XZ,
  decodePartFile,
  decodeSuperblock,
  DeltaOp,
  inlinePart,
  OP_NAMES,
  partKey,
  readVarint,
  superblockKey,
  type PartPayload,
  type Superblock,
} from './format';

/** Where the files of one delta come from. */
export interface DeltaSource {
  /** Label for messages. */
  readonly label: string;
  readSuperblock(): Promise<Buffer>;
  /** Part file `i` (never called for inline parts); may return at most `maxSize` + 1 bytes. */
  readPart(i: number, maxSize: number): Promise<Buffer>;
}

export interface DeltaLimits {
  /** Parts per delta. */
  maxParts: number;
  /** Objects across all parts and fallbacks. */
  maxObjects: number;
  /** Part file size (compressed). */
  maxPartFileSize: number;
  /** Decompressed part payload, whatever the superblock says. */
  maxPartPayload: number;
  /** A single produced object (bounds the buffers of `o`/`w`/`B`). */
  maxObjectSize: number;
}

export const DEFAULT_DELTA_LIMITS: DeltaLimits = {
  maxParts: 10_000,
  maxObjects: 5_000_000,
  maxPartFileSize: 1024 * 1024 * 1024,
  maxPartPayload: 1024 * 1024 * 1024,
  maxObjectSize: 1024 * 1024 * 1024,
};

export interface OpenedDelta {
  superblock: Superblock;
  /** SHA-256 of the superblock file (what the summary and the index list). */
  digest: string;
  superblockSize: number;
  source: DeltaSource;
  limits: DeltaLimits;
}

function invalid(why: string, details?: Record<string, unknown>): never {
  throw new CairnError('INVALID_OBJECT', `static delta: ${why}`, details);
}

/** Files of a delta in a repository backend (`deltas/…/superblock`, `…/0`, …). */
export function backendDeltaSource(backend: Backend, from: string | null, to: string): DeltaSource {
  const label = `${backend.location}:${superblockKey(from, to)}`;
  const readKey = async (key: string, max: number): Promise<Buffer> => {
    const info = await backend.stat(key);
    if (!info) throw new CairnError('NOT_FOUND', `static delta file ${key} does not exist`, { key });
    if (info.size > max) throw new CairnError('TOO_LARGE', `${key} is ${info.size} bytes, limit ${max}`, { key });
    const got = await backend.read(key);
    if (!got) throw new CairnError('NOT_FOUND', `static delta file ${key} does not exist`, { key });
    return got.data;
  };
  return {
    label,
    readSuperblock: () => readKey(superblockKey(from, to), MAX_METADATA_SIZE),
    readPart: (i, max) => readKey(partKey(from, to, i), max),
  };
}

/** Files of a delta in a plain folder: `superblock`, `0`, `1`, … (what `ostree static-delta generate --filename` writes). */
export function dirDeltaSource(dir: string): DeltaSource {
  const readFile = async (name: string, max: number): Promise<Buffer> => {
    const p = path.join(dir, name);
    try {
      const st = await fsp.stat(p);
      if (st.size > max) throw new CairnError('TOO_LARGE', `${p} is ${st.size} bytes, limit ${max}`);
      return await fsp.readFile(p);
    } catch (e) {
      if (isNotFoundErrno(e)) throw new CairnError('NOT_FOUND', `static delta file ${p} does not exist`);
      throw e;
    }
  };
  return {
    label: dir,
    readSuperblock: () => readFile('superblock', MAX_METADATA_SIZE),
    readPart: (i, max) => readFile(String(i), max),
  };
}

/** A source over bytes in memory (tests, and deltas checked before they are stored). */
export function memoryDeltaSource(superblock: Buffer, parts: Buffer[], label = 'memory'): DeltaSource {
  return {
    label,
    readSuperblock: async () => superblock,
    readPart: async (i) => {
      const p = parts[i];
      if (!p) throw new CairnError('NOT_FOUND', `static delta part ${i} does not exist`);
      return p;
    },
  };
}

export interface OpenOptions {
  /** The digest the summary or index lists; a mismatch is CHECKSUM_MISMATCH. */
  expectedDigest?: string;
  limits?: Partial<DeltaLimits>;
}

/**
 * Reads and checks a superblock: size, digest (when expected), normal form,
 * that the to-commit it holds hashes to `to`, and the limits on parts and objects.
 */
export async function openDelta(source: DeltaSource, opts: OpenOptions = {}): Promise<OpenedDelta> {
  const limits = { ...DEFAULT_DELTA_LIMITS, ...opts.limits };
  const data = await source.readSuperblock();
  if (data.length > MAX_METADATA_SIZE) throw new CairnError('TOO_LARGE', `superblock of ${data.length} bytes exceeds ${MAX_METADATA_SIZE}`);
  const digest = sha256Hex(data);
  if (opts.expectedDigest !== undefined && validateChecksum(opts.expectedDigest) !== digest) {
    throw new CairnError('CHECKSUM_MISMATCH', `invalid checksum for static delta ${source.label}: expected ${opts.expectedDigest}, got ${digest}`, {
      expected: opts.expectedDigest,
      actual: digest,
    });
  }
  const superblock = decodeSuperblock(data);
  const commitSum = sha256Hex(superblock.commit);
  if (commitSum !== superblock.to) invalid(`the commit in the superblock hashes to ${commitSum}, not to ${superblock.to}`);
  if (superblock.parts.length > limits.maxParts) throw new CairnError('TOO_LARGE', `delta has ${superblock.parts.length} parts, limit ${limits.maxParts}`);
  let objects = superblock.fallbacks.length;
  for (const p of superblock.parts) objects += p.objects.length;
  if (objects > limits.maxObjects) throw new CairnError('TOO_LARGE', `delta lists ${objects} objects, limit ${limits.maxObjects}`);
  return { superblock, digest, superblockSize: data.length, source, limits };
}

/**
 * Bound on a part's decompressed payload. The payload holds the spliced
 * content (≈ usize), bsdiff patches (can exceed what they produce), the mode
 * and xattr tables and the opcodes; twice usize plus a margin per object
 * covers real deltas, and an xz bomb stops there.
 */
export function partPayloadLimit(d: OpenedDelta, i: number): number {
  const h = d.superblock.parts[i]!;
  return Math.min(d.limits.maxPartPayload, 2 * h.usize + 1024 * h.objects.length + 1024 * 1024);
}

/** The part file `i` (inline or fetched), its size and checksum checked against the superblock. */
export async function readPartFile(d: OpenedDelta, i: number): Promise<{ file: Buffer; inline: boolean }> {
  const h = d.superblock.parts[i];
  if (!h) throw new CairnError('NOT_FOUND', `static delta has no part ${i}`);
  const inline = inlinePart(d.superblock, i);
  if (h.size > d.limits.maxPartFileSize) throw new CairnError('TOO_LARGE', `part ${i} of ${h.size} bytes exceeds ${d.limits.maxPartFileSize}`);
  const file = inline ?? (await d.source.readPart(i, h.size));
  if (file.length !== h.size) invalid(`part ${i} is ${file.length} bytes, the superblock says ${h.size}`, { part: i });
  // ostree does not check inline parts (they are covered by the superblock digest); we do anyway.
  const sum = sha256Hex(file);
  if (sum !== h.checksum) {
    throw new CairnError('CHECKSUM_MISMATCH', `checksum mismatch in static delta part ${i}: expected ${h.checksum}, got ${sum}`, { part: i });
  }
  return { file, inline: inline !== null };
}

/** Reads, checks and decompresses part `i`. */
export async function loadPart(d: OpenedDelta, i: number): Promise<PartPayload> {
  const { file } = await readPartFile(d, i);
  return decodePartFile(file, partPayloadLimit(d, i));
}

// ---------------------------------------------------------------------------------------------
// Description (`cairn delta show`)

export interface PartDescription {
  index: number;
  inline: boolean;
  compression: 'xz' | 'none' | 'unknown';
  size: number;
  usize: number;
  blobSize: number;
  opsSize: number;
  modes: number;
  xattrSets: number;
  objects: Record<'file' | 'dirtree' | 'dirmeta' | 'commit', number>;
  /** Count of each opcode ('S', 'o', 'w', 'r', 'R', 'c', 'B'). */
  ops: Record<string, number>;
}

export interface DeltaDescription {
  name: string;
  from: string | null;
  to: string;
  digest: string;
  timestamp: bigint;
  endianness: string;
  superblockSize: number;
  parts: PartDescription[];
  fallbacks: Array<{ checksum: string; type: ObjectType; compressedSize: number; size: number }>;
  /** Superblock plus every non-inline part file. */
  totalSize: number;
  totalUsize: number;
  fallbackSize: number;
  metadataKeys: string[];
}

const TYPE_NAMES: Record<number, 'file' | 'dirtree' | 'dirmeta' | 'commit'> = {
  [ObjectType.File]: 'file',
  [ObjectType.DirTree]: 'dirtree',
  [ObjectType.DirMeta]: 'dirmeta',
  [ObjectType.Commit]: 'commit',
};

/** Counts opcodes without executing them (each op's varints are skipped; object types decide S's arity). */
export function opHistogram(payload: PartPayload, objects: Superblock['parts'][number]['objects']): Record<string, number> {
  const hist: Record<string, number> = {};
  const ops = payload.ops;
  let at = 0;
  let obj = 0;
  const skip = (n: number) => {
    for (let k = 0; k < n; k++) at = readVarint(ops, at)[1];
  };
  while (at < ops.length) {
    const op = ops[at++]!;
    const name = OP_NAMES[op];
    if (!name) invalid(`unknown opcode 0x${op.toString(16)} at offset ${at - 1}`);
    hist[name] = (hist[name] ?? 0) + 1;
    switch (op) {
      case DeltaOp.OpenSpliceAndClose: {
        const o = objects[obj++];
        if (!o) invalid('more objects produced than listed');
        skip(o.type === ObjectType.File ? 4 : 2);
        break;
      }
      case DeltaOp.Open:
        skip(3);
        break;
      case DeltaOp.Write:
      case DeltaOp.Bspatch:
        skip(2);
        break;
      case DeltaOp.SetReadSource:
        skip(1);
        break;
      case DeltaOp.Close:
        obj++;
        break;
      default:
        break;
    }
  }
  return hist;
}

export async function describeDelta(source: DeltaSource, opts: OpenOptions = {}): Promise<DeltaDescription> {
  const d = await openDelta(source, opts);
  const sb = d.superblock;
  const parts: PartDescription[] = [];
  let totalSize = d.superblockSize;
  for (let i = 0; i < sb.parts.length; i++) {
    const h = sb.parts[i]!;
    const { file, inline } = await readPartFile(d, i);
    if (!inline) totalSize += file.length;
    const payload = await decodePartFile(file, partPayloadLimit(d, i));
    const objects = { file: 0, dirtree: 0, dirmeta: 0, commit: 0 };
    for (const o of h.objects) objects[TYPE_NAMES[o.type]!]++;
    parts.push({
      index: i,
      inline,
      compression: file[0] === COMPRESSION_XZ ? 'xz' : file[0] === 0 ? 'none' : 'unknown',
      size: h.size,
      usize: h.usize,
      blobSize: payload.blob.length,
      opsSize: payload.ops.length,
      modes: payload.modes.length,
      xattrSets: payload.xattrs.length,
      objects,
      ops: opHistogram(payload, h.objects),
    });
  }
  const endian = sb.metadata.find(([k]) => k === 'ostree.endianness');
  return {
    name: sb.from ? `${sb.from}-${sb.to}` : sb.to,
    from: sb.from,
    to: sb.to,
    digest: d.digest,
    timestamp: sb.timestamp,
    endianness: endian && typeof endian[1].value === 'number' ? String.fromCharCode(endian[1].value) : '(absent)',
    superblockSize: d.superblockSize,
    parts,
    fallbacks: sb.fallbacks.map((f) => ({ ...f })),
    totalSize,
    totalUsize: sb.parts.reduce((n, p) => n + p.usize, 0),
    fallbackSize: sb.fallbacks.reduce((n, f) => n + f.compressedSize, 0),
    metadataKeys: sb.metadata.map(([k]) => k),
  };
}
