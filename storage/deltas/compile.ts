/**
 * Static delta compiler (the *compilation* side; applying is apply.ts).
 *
 * Output is what the stock ostree 2022.7 client applies (FORMATS.md §5):
 * superblock holding the whole to-commit, 'l' endianness, xz parts only (an
 * uncompressed part over 16 KiB breaks 2022.7), exact part sizes, usize and
 * checksums, fallbacks for very large new files.
 *
 * Choices, per object that `to` has and `from` has not:
 *   - metadata (dirtree, dirmeta): spliced with `S`;
 *   - a regular file with a previous version (same path in `from`, else same
 *     basename and size within 30%, like ostree's similarity rule) and both
 *     under `maxBsdiffSize`: `r o w c R` (bytes copied from the old version)
 *     when only its mode, owner or xattrs changed, else `r o B c R` (bsdiff
 *     against the old version; over 1 MiB anchored on content-defined chunks
 *     found in both, anchored.ts) when the patch compresses smaller than the
 *     new bytes would;
 *   - otherwise, files above `minFallbackSize` become fallbacks (the client
 *     fetches the loose .filez; bug #2053 means every object must stay loose
 *     anyway, and the repo keeps them);
 *   - everything else is spliced with `S` (mode and xattr tables per part).
 * Parts are placed by placement.ts: inside the superblock while it stays within
 * the client's 10 MiB (the 2022.x client then has almost nothing to race the
 * parts for, docs/delta-bytes.md), else the best-saving ones inline and the
 * rest's objects as fallbacks; from-scratch deltas over the limit keep files.
 * Objects are ordered so similar bytes sit together in the xz window
 * (metadata, then patches, then small files grouped by extension and name,
 * then large files, then symlinks). When the files without a previous version
 * amount to SPLIT_MIN_PAYLOAD or more, they (with the metadata and symlinks)
 * get parts of their own, compressed while the bsdiffs of the others run, and
 * the patches and the files whose patch lost come in later parts. A payload of
 * SPLIT_MIN_PAYLOAD or more is cut into at least two parts of similar size,
 * compressed side by side on the libuv pool. The layout is a pure function of
 * the two trees (never of timing or of the machine): the same inputs give the
 * same parts byte for byte; only the superblock's generation time differs
 * (test/deltas/determinism).
 *
 * The compile blocks its thread for short spells (bsdiff, small reads through
 * the backend's blocking calls): it runs off the request loop (delta jobs in a
 * worker thread, server/jobs/worker.ts; the CLI in its own process).
 */
import { availableParallelism } from 'node:os';
import { deflateRawSync, constants as zconst } from 'node:zlib';
import { CairnError } from '../errors';
import type { VarDict } from '../gvariant';
import { Variant, parse } from '../gvariant';
import { checksumToBytes, sha256Hex, validateChecksum } from '../objects/checksum';
import { isSymlink, type FileHeader } from '../objects/content';
import { ObjectType } from '../objects/types';
import { encodeXattrs } from '../objects/xattrs';
import type { Repo } from '../repo/repo';
import { anchoredBsdiff } from './anchored';
import { XZ_PRESET } from './xz';
import {
  commitmetaKey,
  COMPRESSION_XZ,
  DELTA_PART_VERSION,
  deltaDir,
  deltaName,
  DeltaOp,
  encodePartFile,
  encodePartPayload,
  encodeSuperblock,
  endiannessEntry,
  inlinePartEntry,
  partKey,
  superblockKey,
  writeVarint,
  type DeltaObjectRef,
  type FallbackEntry,
  type ModeEntry,
  type PartHeader,
} from './format';
import { CLIENT_SUPERBLOCK_LIMIT, MIN_OUTSTANDING, placeParts } from './placement';
import { CancelledError, signalGate, throwIfCancelled, type NativeGate } from './cancel';
import { readContent, readMetadataObject, type ContentInfo } from './objects-io';
import { indexCommit } from './tree-index';

export interface CompileOptions {
  /**
   * Most payload bytes per part before a new part starts (ostree max-chunk-size:
   * 32 MB). Default: 32 MB, except for deltas between two commits placed 'auto':
   * a third of each group's payload, between AUTO_MIN_PART_SIZE and
   * AUTO_PART_SIZE, so that the parts carried inline are at least three
   * (placement.ts: the client's queue stays closed while they are applied).
   */
  maxPartSize?: number;
  /** New files whose content is larger become fallbacks (ostree min-fallback-size: 4 MB); 0 disables. */
  minFallbackSize?: number;
  /** bsdiff is tried only when old + new sizes are at most this (ostree max-bsdiff-size: 128 MB). */
  maxBsdiffSize?: number;
  /** Use bsdiff for modified files (default true). */
  bsdiff?: boolean;
  /**
   * Where the parts go: `true` all inside the superblock (one-file deltas;
   * ostree's --inline), `false` each in a part file, `'auto'` (the default) as
   * placement.ts decides: inline while the superblock stays within the client's
   * limit, else the best-saving parts inline and the rest's objects as fallbacks.
   */
  inline?: boolean | 'auto';
  /** Superblock size up to which 'auto' puts parts inline (default INLINE_BUDGET; tests set less). */
  inlineBudget?: number;
  /** Generation time written into the superblock (default: now). */
  timestamp?: Date;
  /** User metadata, placed first in the superblock metadata as ostree does. */
  metadata?: VarDict;
  /** Replace an existing delta for the same pair (default: refuse, deltas are immutable). */
  replace?: boolean;
  /**
   * Asks the compile to stop: checked at every object and part boundary and
   * between xz input chunks. The compile then waits for the native work in
   * flight, removes the parts it wrote (the superblock is written last, so no
   * delta was visible) and throws CancelledError (code CANCELLED).
   */
  signal?: AbortSignal;
  /** Brackets native work that a thread termination must not cut (worker.ts; see cancel.ts). */
  gate?: NativeGate;
  /** Objects planned so far out of those the client lacks, then parts compressed (phase 'parts'). */
  onProgress?(p: { done: number; total: number; phase: 'objects' | 'parts' }): void;
}

export interface CompileStats {
  metadataObjects: number;
  splicedFiles: number;
  symlinks: number;
  bsdiffFiles: number;
  fallbacks: number;
  /** Files with a previous version where bsdiff was not worth it. */
  bsdiffRejected: number;
  /** Files whose bytes equal their previous version's (mode, owner or xattrs changed): `r o w c R`. */
  copiedFiles: number;
  /** Part entries carried inside the superblock, a repeated part each time (0: every part is a file). */
  inlineParts: number;
  usize: number;
  elapsedMs: number;
  /** Where the time went: indexing both trees, deciding every object, xz of the parts, writing. */
  phaseMs: { index: number; plan: number; compress: number; write: number };
}

export interface CompileResult {
  name: string;
  from: string | null;
  to: string;
  /** SHA-256 of the superblock (what the summary and index list). */
  digest: string;
  superblockSize: number;
  partSizes: number[];
  /** Superblock plus part files (what a client downloads for the delta itself). */
  totalSize: number;
  /** Loose .filez bytes the client fetches for fallbacks. */
  fallbackSize: number;
  stats: CompileStats;
}

export const DEFAULT_MAX_PART_SIZE = 32 * 1000 * 1000;
/** Payload per part of a delta between two commits placed 'auto' (docs/delta-bytes.md: 1–2 MB parts inline left the client nearly nothing to fetch loose). */
export const AUTO_PART_SIZE = 2 * 1000 * 1000;
/** Smallest payload per part of such a delta (smaller groups make one part; placement may repeat it). */
export const AUTO_MIN_PART_SIZE = 64 * 1000;
export const DEFAULT_MIN_FALLBACK_SIZE = 4 * 1000 * 1000;
export const DEFAULT_MAX_BSDIFF_SIZE = 128 * 1000 * 1000;
/** ostree's CONTENT_SIZE_SIMILARITY_THRESHOLD_PERCENT. */
const SIMILARITY_PERCENT = 30;
const S_IROTH = 0o004;
/** Files above this go after the small ones in a part (see the layout comment in compileDelta). */
const LARGE_FILE = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Paths

function basename(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

function extension(p: string): string {
  const b = basename(p);
  const i = b.lastIndexOf('.');
  return i > 0 ? b.slice(i + 1) : '';
}

// ---------------------------------------------------------------------------------------------
// Part builder

/** What goes into a part for one object, decided before any bytes are laid out. */
type Plan =
  | { kind: 'meta'; ref: DeltaObjectRef; data: Buffer }
  | { kind: 'file'; ref: DeltaObjectRef; header: FileHeader; data: Buffer }
  | { kind: 'bsdiff'; ref: DeltaObjectRef; header: FileHeader; size: number; source: string; patch: Buffer }
  /** Same bytes as `source`, new mode/uid/gid/xattrs: `r o w c R`, the bytes copied from the source. */
  | { kind: 'copy'; ref: DeltaObjectRef; header: FileHeader; size: number; source: string };

function planPayloadSize(p: Plan): number {
  if (p.kind === 'meta') return p.data.length;
  if (p.kind === 'file') return isSymlink(p.header) ? Buffer.byteLength(p.header.symlinkTarget) : p.data.length;
  if (p.kind === 'copy') return 32;
  return 32 + p.patch.length;
}

class PartBuilder {
  readonly objects: DeltaObjectRef[] = [];
  readonly plans: Plan[] = [];
  private readonly modes: ModeEntry[] = [];
  private readonly modeIndex = new Map<string, number>();
  private readonly xattrs: Array<Array<[Buffer, Buffer]>> = [];
  private readonly xattrIndex = new Map<string, number>();
  private readonly blob: Buffer[] = [];
  blobSize = 0;
  private readonly ops: number[] = [];
  usize = 0;

  private append(b: Buffer): number {
    const at = this.blobSize;
    this.blob.push(b);
    this.blobSize += b.length;
    return at;
  }

  private tables(h: FileHeader): [number, number] {
    const mk = `${h.uid}:${h.gid}:${h.mode}`;
    let mi = this.modeIndex.get(mk);
    if (mi === undefined) {
      mi = this.modes.length;
      this.modes.push({ uid: h.uid, gid: h.gid, mode: h.mode });
      this.modeIndex.set(mk, mi);
    }
    const xs = encodeXattrs(h.xattrs);
    const xk = xs.map(([n, v]) => `${n.toString('hex')}=${v.toString('hex')}`).join(',');
    let xi = this.xattrIndex.get(xk);
    if (xi === undefined) {
      xi = this.xattrs.length;
      this.xattrs.push(xs);
      this.xattrIndex.set(xk, xi);
    }
    return [mi, xi];
  }

  private op(code: DeltaOp, ...args: number[]): void {
    this.ops.push(code);
    for (const a of args) writeVarint(this.ops, a);
  }

  add(p: Plan): void {
    this.objects.push(p.ref);
    this.plans.push(p);
    if (p.kind === 'meta') {
      const at = this.append(p.data);
      this.op(DeltaOp.OpenSpliceAndClose, p.data.length, at);
      this.usize += p.data.length;
    } else if (p.kind === 'file') {
      const [mi, xi] = this.tables(p.header);
      const bytes = isSymlink(p.header) ? Buffer.from(p.header.symlinkTarget, 'utf8') : p.data;
      const at = this.append(bytes);
      this.op(DeltaOp.OpenSpliceAndClose, mi, xi, bytes.length, at);
      // ostree's usize counts regular-file content, not symlink targets.
      if (!isSymlink(p.header)) this.usize += bytes.length;
    } else if (p.kind === 'copy') {
      const [mi, xi] = this.tables(p.header);
      const src = this.append(checksumToBytes(p.source));
      this.op(DeltaOp.SetReadSource, src);
      this.op(DeltaOp.Open, mi, xi, p.size);
      this.op(DeltaOp.Write, p.size, 0);
      this.op(DeltaOp.Close);
      this.op(DeltaOp.UnsetReadSource);
      this.usize += p.size;
    } else {
      const [mi, xi] = this.tables(p.header);
      const src = this.append(checksumToBytes(p.source));
      this.op(DeltaOp.SetReadSource, src);
      this.op(DeltaOp.Open, mi, xi, p.size);
      const at = this.append(p.patch);
      this.op(DeltaOp.Bspatch, at, p.patch.length);
      this.op(DeltaOp.Close);
      this.op(DeltaOp.UnsetReadSource);
      this.usize += p.size;
    }
  }

  payload(): Buffer {
    return encodePartPayload({ modes: this.modes, xattrs: this.xattrs, blob: Buffer.concat(this.blob, this.blobSize), ops: Buffer.from(this.ops) });
  }
}

// ---------------------------------------------------------------------------------------------
// Compiler

/** Cheap compressibility estimate used to choose between a bsdiff patch and the new bytes. */
function estimate(b: Buffer): number {
  return deflateRawSync(b, { level: 1, strategy: zconst.Z_DEFAULT_STRATEGY }).length;
}

/**
 * What `r o B c R` costs beyond the patch itself: the raw source checksum in the
 * blob (incompressible) and the opcodes with their varints.
 */
const BSDIFF_OVERHEAD = 32 + 12;

/**
 * Whether a bsdiff patch beats splicing the new bytes: its estimate plus the
 * opcodes' cost is below the estimate of the new bytes. The new file's stored
 * `.filez` (deflate at a higher level than the estimate's, plus a header of a
 * few hundred bytes at most) answers first when the patch is clearly smaller:
 * deflating a 12 MB file again only to learn that a 2 kB patch wins was a
 * tenth of such a delta's time.
 */
function patchWins(patch: Buffer, newBytes: Buffer, storedSize: number): boolean {
  const cost = estimate(patch) + BSDIFF_OVERHEAD;
  if (cost + 4096 < storedSize) return true;
  return cost < estimate(newBytes);
}

/**
 * Small files first, large ones after (stable, so each group keeps the extension/name order):
 * the small files then share one contiguous xz window instead of being split by big,
 * often incompressible, blobs. Measured: this beats ostree's hash order on mixed trees.
 */
function smallFirst(plans: Plan[]): Plan[] {
  const big = (p: Plan) => (p.kind === 'file' && p.data.length > LARGE_FILE ? 1 : 0);
  return [...plans].sort((a, b) => big(a) - big(b));
}

function payloadOf(plans: Plan[]): number {
  return plans.reduce((a, p) => a + planPayloadSize(p), 0);
}

/** The plans of both lists in the order their files have in `order`. */
function mergeSorted(order: Array<{ checksum: string }>, a: Plan[], b: Plan[]): Plan[] {
  const by = new Map<string, Plan>();
  for (const p of [...a, ...b]) by.set(p.ref.checksum, p);
  return order.flatMap((f) => by.get(f.checksum) ?? []);
}

/**
 * Objects into parts, in order: at most maxPartSize each, and a large payload
 * in at least PARALLEL_PARTS parts of similar size, so that they compress side
 * by side (a function of the plans alone: the layout does not depend on the machine).
 */
function layout(plans: Plan[], maxPartSize: number): PartBuilder[] {
  const target = partTargetSize(payloadOf(plans), maxPartSize);
  const builders: PartBuilder[] = [];
  let current = new PartBuilder();
  for (const p of plans) {
    if (current.objects.length > 0 && (current.blobSize >= target || current.blobSize + planPayloadSize(p) > maxPartSize)) {
      builders.push(current);
      current = new PartBuilder();
    }
    current.add(p);
  }
  if (current.objects.length > 0 || builders.length === 0) builders.push(current);
  return builders;
}

/**
 * The xz preset of a part. Normally XZ_PRESET (ostree's). A part that is
 * nearly all zero bytes (99%) — the diff bytes of an anchored bsdiff, where every
 * byte copied from the old version is a zero to add — is compressed with
 * liblzma's fast mode instead: its binary-tree match finder crawls through
 * long runs (a 12 MB patch took a quarter of a second to squeeze into 2 kB),
 * while the fast mode's hash chains take them at once, for the same few bytes
 * of output. A function of the payload alone, so the output stays deterministic.
 */
function partPreset(payload: Buffer): number {
  if (payload.length < ZERO_PART_MIN) return XZ_PRESET;
  let zeros = 0;
  for (let i = 0; i < payload.length; i++) if (payload[i] === 0) zeros++;
  return zeros >= payload.length * ZERO_PART_SHARE ? XZ_PRESET_RUNS : XZ_PRESET;
}
const ZERO_PART_MIN = 1024 * 1024;
/** 99%: the patches of a root filesystem update (~96% zeros, real diffs between) keep preset 8, which is 0.3% smaller there. */
const ZERO_PART_SHARE = 0.99;
/** liblzma preset 1: fast mode (hc4), 1 MiB dictionary. */
const XZ_PRESET_RUNS = 1;

/** Objects read (and inflated, and diffed) at once while planning. */
const READ_CONCURRENCY = 16;
/** Parts compressed at once: each xz stream keeps one core busy on the libuv pool (at most 4 threads). */
const XZ_CONCURRENCY = Math.max(1, Math.min(4, availableParallelism()));
/** A delta with at least this much payload is cut in (at least) PARALLEL_PARTS parts of similar size. */
const SPLIT_MIN_PAYLOAD = 4 * 1000 * 1000;
/**
 * Fixed, not the machine's cores: the layout (and so every byte) must not
 * depend on where the compile runs. Two parts keep the xz window large while
 * letting two cores work; bigger deltas have more parts anyway (maxPartSize).
 */
const PARALLEL_PARTS = 2;

/** The size at which a part is closed: the payload spread evenly over the parts it needs. */
function partTargetSize(totalPayload: number, maxPartSize: number): number {
  const parts = Math.max(Math.ceil(totalPayload / maxPartSize), totalPayload >= SPLIT_MIN_PAYLOAD ? PARALLEL_PARTS : 1);
  return Math.max(1, Math.ceil(totalPayload / parts));
}

/**
 * `fn` over `items`, at most `limit` at once, results in the items' order.
 * Stops starting new items at the first failure or when `signal` aborts, and
 * settles only once every started item has (none is left running, native
 * work included), then throws the first failure (CancelledError on abort).
 */
async function mapOrdered<T, R>(items: readonly T[], limit: number, signal: AbortSignal | undefined, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const lane = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      if (signal?.aborted) {
        failure ??= { error: new CancelledError() };
        return;
      }
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (e) {
        failure ??= { error: e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failure) throw failure.error;
  return out;
}

/**
 * Compiles the delta `from → to` (`from` null: from scratch) of `repo` and
 * writes it into the repository's `deltas/` (parts first, superblock last, each
 * an atomic backend write, so a crash never leaves a superblock pointing at
 * missing parts). Callers update the summary and delta indexes afterwards.
 */
export async function compileDelta(repo: Repo, from: string | null, to: string, opts: CompileOptions = {}): Promise<CompileResult> {
  const started = Date.now();
  const signal = opts.signal;
  const gate = opts.gate ?? signalGate(signal);
  throwIfCancelled(signal);
  validateChecksum(to);
  if (from !== null) validateChecksum(from);
  if (from === to) throw new CairnError('INVALID_ARGUMENT', 'a delta needs two different commits');
  const placing = opts.inline ?? 'auto';
  // Deltas between two commits get parts small enough to be at least three per group, placed
  // inline (see maxPartSize); otherwise ostree's 32 MB.
  const partSizeFor = (plans: Plan[]): number => {
    if (opts.maxPartSize !== undefined || placing !== 'auto' || from === null) return opts.maxPartSize ?? DEFAULT_MAX_PART_SIZE;
    return Math.min(AUTO_PART_SIZE, Math.max(AUTO_MIN_PART_SIZE, Math.ceil(payloadOf(plans) / MIN_OUTSTANDING)));
  };
  const minFallback = opts.minFallbackSize ?? DEFAULT_MIN_FALLBACK_SIZE;
  const maxBsdiff = opts.maxBsdiffSize ?? DEFAULT_MAX_BSDIFF_SIZE;
  const sbKey = superblockKey(from, to);
  if (!opts.replace && (await repo.backend.stat(sbKey))) {
    throw new CairnError('ALREADY_EXISTS', `static delta ${deltaName(from, to)} already exists`, { name: deltaName(from, to) });
  }

  const t0 = Date.now();
  // One after the other, sharing the dirtrees read (tree-index.ts): the second tree's unchanged folders cost nothing.
  const { index: toIdx, commitBytes } = await indexCommit(repo, to);
  const fromIdx = from ? (await indexCommit(repo, from)).index : null;
  const stats: CompileStats = {
    metadataObjects: 0,
    splicedFiles: 0,
    symlinks: 0,
    bsdiffFiles: 0,
    fallbacks: 0,
    bsdiffRejected: 0,
    copiedFiles: 0,
    inlineParts: 0,
    usize: 0,
    elapsedMs: 0,
    phaseMs: { index: Date.now() - t0, plan: 0, compress: 0, write: 0 },
  };
  throwIfCancelled(signal);
  const t1 = Date.now();

  // Metadata the client lacks, ordered by path then type (dirmeta, dirtree).
  const newMeta = [...toIdx.metadata.entries()].filter(([k]) => !fromIdx?.metadata.has(k)).sort(([ka, a], [kb, b]) => cmp(a.path, b.path) || cmp(ka, kb));
  const metaPlans: Plan[] = await mapOrdered(newMeta, READ_CONCURRENCY, signal, async ([, m]) => {
    const data = await readMetadataObject(repo, m.ref.checksum, m.ref.type);
    if (!data) throw new CairnError('MISSING_OBJECTS', `${m.ref.checksum} (type ${m.ref.type}) is missing`, { object: m.ref.checksum });
    return { kind: 'meta', ref: m.ref, data } satisfies Plan;
  });

  // Content the client lacks, in a stable order: by extension, basename, path.
  const newFiles = [...toIdx.files.entries()].filter(([c]) => !fromIdx?.files.has(c)).map(([checksum, paths]) => ({ checksum, path: paths[0]! }));
  newFiles.sort((a, b) => cmp(extension(a.path), extension(b.path)) || cmp(basename(a.path), basename(b.path)) || cmp(a.path, b.path));

  // Headers of `from` files, read once however many new files look at them (promises: concurrent askers share one read).
  const fromInfo = new Map<string, Promise<ContentInfo>>();
  const infoOf = (c: string): Promise<ContentInfo> => {
    let i = fromInfo.get(c);
    if (!i) fromInfo.set(c, (i = readContent(repo, c, 0)));
    return i;
  };
  // Basename → from files, for "same name, similar size" matches.
  const fromByName = new Map<string, string[]>();
  if (fromIdx) {
    for (const [p, c] of fromIdx.byPath) {
      const list = fromByName.get(basename(p));
      if (list) list.push(c);
      else fromByName.set(basename(p), [c]);
    }
  }
  const previousVersion = async (path: string, size: number): Promise<string | null> => {
    if (!fromIdx) return null;
    const usable = (i: ContentInfo) => !isSymlink(i.header) && (i.header.mode & S_IROTH) !== 0 && i.size > 0;
    const same = fromIdx.byPath.get(path);
    if (same && usable(await infoOf(same))) return same;
    const named = fromByName.get(basename(path)) ?? [];
    const infos = await Promise.all(named.map(infoOf));
    let best: string | null = null;
    let bestDiff = Infinity;
    named.forEach((c, k) => {
      const i = infos[k]!;
      if (!usable(i)) return;
      const diff = Math.abs(i.size - size);
      if (diff * 100 > SIMILARITY_PERCENT * Math.max(i.size, size)) return;
      if (diff < bestDiff || (diff === bestDiff && best !== null && c < best)) {
        best = c;
        bestDiff = diff;
      }
    });
    return best;
  };

  // What each new file becomes, in two groups. Plain files (no previous version to diff against)
  // and symlinks need only reading; files with a previous version need bsdiff, the costly part of
  // planning. Files are read, inflated and diffed several at a time (reads and inflates overlap on
  // the libuv pool, bsdiff runs between them); each decision depends on that file alone and results
  // keep the sorted order, so the output does not depend on timing.
  const progressTotal = newMeta.length + newFiles.length;
  let progressDone = newMeta.length;
  const progressed = () => opts.onProgress?.({ done: progressDone++, total: progressTotal, phase: 'objects' });
  // Files up to this size are read (and verified) whole at once: they are spliced unless a patch wins.
  const spliceLimit = minFallback > 0 ? minFallback : Number.MAX_SAFE_INTEGER;
  type Sorted = { checksum: string; path: string; info: ContentInfo; data: Buffer | null; prev: string | null };
  const sorted: Sorted[] = await mapOrdered(newFiles, READ_CONCURRENCY, signal, async (f) => {
    const { data, ...info } = await readContent(repo, f.checksum, spliceLimit);
    let prev = opts.bsdiff === false || isSymlink(info.header) ? null : await previousVersion(f.path, info.size);
    if (prev && info.size + (await infoOf(prev)).size > maxBsdiff) prev = null;
    return { ...f, info, data: data ?? null, prev };
  });
  const fileRef = (c: string): DeltaObjectRef => ({ type: ObjectType.File, checksum: c });
  // What each new file costs loose (placement weighs parts by it) and its content size (fallback entries).
  const looseSize = new Map(sorted.map((f) => [f.checksum, f.info.storedSize]));
  const contentSize = new Map(sorted.map((f) => [f.checksum, f.info.size]));
  const fallbacks: FallbackEntry[] = [];
  /** A file spliced as it is, or a fallback when it is too large. */
  const spliced = async (f: Sorted, loaded: Buffer | null): Promise<Plan | FallbackEntry> => {
    if (minFallback > 0 && f.info.size > minFallback) return { type: ObjectType.File, checksum: f.checksum, compressedSize: f.info.storedSize, size: f.info.size };
    loaded ??= (await readContent(repo, f.checksum, Number.MAX_SAFE_INTEGER)).data ?? Buffer.alloc(0);
    return { kind: 'file', ref: fileRef(f.checksum), header: f.info.header, data: loaded };
  };
  const isPlan = (x: Plan | FallbackEntry): x is Plan => 'kind' in x;
  const loadWhole = async (c: string): Promise<{ data: Buffer }> => {
    const r = await readContent(repo, c, maxBsdiff);
    if (!r.data) throw new CairnError('INVALID_OBJECT', `content object ${c} is not a regular file of at most ${maxBsdiff} bytes`, { object: c });
    return { data: r.data };
  };

  const linkPlans: Plan[] = sorted.filter((f) => isSymlink(f.info.header)).map((f) => ({ kind: 'file', ref: fileRef(f.checksum), header: f.info.header, data: Buffer.alloc(0) }));
  const plainOut = await mapOrdered(
    sorted.filter((f) => !isSymlink(f.info.header) && !f.prev),
    READ_CONCURRENCY,
    signal,
    async (f) => {
      progressed();
      return spliced(f, f.data);
    },
  );
  const plainPlans = plainOut.filter(isPlan);

  // A large group of plain files goes into parts of its own, compressed on the libuv pool while
  // the bsdiffs run; otherwise everything is laid out together once planned (one xz window).
  const early = metaPlans.concat(smallFirst(plainPlans), linkPlans);
  const ownParts = payloadOf(early) >= SPLIT_MIN_PAYLOAD;
  const internal = new AbortController();
  const onAbort = () => internal.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const compress = (builders: PartBuilder[]) =>
    mapOrdered(builders, XZ_CONCURRENCY, internal.signal, async (b) => {
      const payload = b.payload();
      const file = await encodePartFile(payload, COMPRESSION_XZ, { signal: internal.signal, gate, preset: partPreset(payload) });
      opts.onProgress?.({ done: ++compressed, total: totalParts, phase: 'parts' });
      return file;
    });
  let compressed = 0;
  let totalParts = 0;
  const earlyBuilders = ownParts ? layout(early, partSizeFor(early)) : [];
  totalParts += earlyBuilders.length;
  const earlyFiles = ownParts ? compress(earlyBuilders) : Promise.resolve([]);
  earlyFiles.catch(() => {}); // awaited below, also on failure
  let builders: PartBuilder[];
  let partFiles: Buffer[];
  try {
    const candidates = sorted.filter((f) => f.prev);
    const decided = await mapOrdered(candidates, READ_CONCURRENCY, internal.signal, async (f): Promise<{ out: Plan | FallbackEntry; rejected: boolean }> => {
      progressed();
      const prev = f.prev!;
      const [mine, old] = await Promise.all([f.data ? { data: f.data } : loadWhole(f.checksum), loadWhole(prev)]);
      throwIfCancelled(internal.signal);
      const ref = fileRef(f.checksum);
      if (old.data.equals(mine.data)) {
        // Only the mode, owner or xattrs changed: no bsdiff (a suffix array of the whole file for
        // an empty patch), the client copies the bytes from its previous version.
        return { out: { kind: 'copy', ref, header: f.info.header, size: f.info.size, source: prev }, rejected: false };
      }
      // Large files: bsdiff between content-defined chunks found in both (no whole-file suffix array).
      const patch = anchoredBsdiff(old.data, mine.data);
      if (patchWins(patch, mine.data, f.info.storedSize)) return { out: { kind: 'bsdiff', ref, header: f.info.header, size: f.info.size, source: prev, patch }, rejected: false };
      return { out: await spliced(f, mine.data), rejected: true };
    });
    stats.bsdiffRejected = decided.filter((d) => d.rejected).length;
    const patchPlans = decided.map((d) => d.out).filter((o): o is Plan => isPlan(o) && o.kind !== 'file');
    const rejectedPlans = decided.map((d) => d.out).filter((o): o is Plan => isPlan(o) && o.kind === 'file');
    // Fallbacks in the files' sorted order, as before the split.
    const fallbackSet = new Set<string>();
    for (const o of [...plainOut, ...decided.map((d) => d.out)]) if (!isPlan(o)) fallbackSet.add(o.checksum);
    for (const f of sorted) if (fallbackSet.has(f.checksum)) fallbacks.push({ type: ObjectType.File, checksum: f.checksum, compressedSize: f.info.storedSize, size: f.info.size });
    stats.phaseMs.plan = Date.now() - t1;

    // Late parts: patches first, then the files whose patch lost (small ones first), or, when the
    // plain files did not get their own parts, everything in the order metadata, patches, files
    // (small ones first, in sorted order), symlinks.
    const late = ownParts ? patchPlans.concat(smallFirst(rejectedPlans)) : metaPlans.concat(patchPlans, smallFirst(mergeSorted(sorted, plainPlans, rejectedPlans)), linkPlans);
    const lateBuilders = late.length > 0 || !ownParts ? layout(late, partSizeFor(late)) : [];
    totalParts += lateBuilders.length;
    const lateFiles = await compress(lateBuilders);
    builders = [...earlyBuilders, ...lateBuilders];
    partFiles = [...(await earlyFiles), ...lateFiles];
  } catch (e) {
    internal.abort();
    await earlyFiles.catch(() => {});
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  throwIfCancelled(signal);
  const t2 = t1 + stats.phaseMs.plan;
  const headers: PartHeader[] = builders.map((b, i) => ({ version: DELTA_PART_VERSION, checksum: sha256Hex(partFiles[i]!), size: partFiles[i]!.length, usize: b.usize, objects: b.objects }));
  stats.phaseMs.compress = Date.now() - t2;
  const t3 = Date.now();

  const userMetadata: VarDict = [...(opts.metadata ?? []).filter(([k]) => k !== 'ostree.endianness'), endiannessEntry()];
  const detached = await repo.readMetadata(to, ObjectType.CommitMeta);
  const timestamp = BigInt(Math.floor((opts.timestamp ?? new Date()).getTime() / 1000));
  /** The superblock with the parts at `kept` (indexes into partFiles, repeats allowed), inline or not, plus fallbacks. */
  const assemble = (kept: number[], inline: boolean, extraFallbacks: FallbackEntry[]) => {
    const metadata: VarDict = [...userMetadata];
    if (inline) kept.forEach((i, j) => metadata.push(inlinePartEntry(from, to, j, partFiles[i]!)));
    if (detached) metadata.push([commitmetaKey(from, to), new Variant('a{sv}', parse('a{sv}', detached))]);
    return encodeSuperblock({ metadata, timestamp, from, to, commit: commitBytes, parts: kept.map((i) => headers[i]!), fallbacks: [...fallbacks, ...extraFallbacks] });
  };
  const all = partFiles.map((_, i) => i);
  let superblock: Buffer;
  let inlineParts = placing === true;
  let filesKept = all;
  if (placing === 'auto') {
    const placed = placeParts({
      parts: builders.map((b, i) => ({
        size: partFiles[i]!.length,
        objects: b.objects.length,
        hasMetadata: b.objects.some((o) => o.type !== ObjectType.File),
        looseBytes: b.objects.reduce((n, o) => n + (o.type === ObjectType.File ? (looseSize.get(o.checksum) ?? 0) : 0), 0),
      })),
      baseBytes: assemble(all, false, []).length,
      fromScratch: from === null,
      budget: opts.inlineBudget,
    });
    const kept = placed.kind === 'inline' ? placed.inline : [];
    const dropped: FallbackEntry[] = [];
    for (const i of placed.kind === 'inline' ? placed.fallback : []) {
      for (const o of builders[i]!.objects) dropped.push({ type: ObjectType.File, checksum: o.checksum, compressedSize: looseSize.get(o.checksum)!, size: contentSize.get(o.checksum)! });
    }
    const candidate = kept.length > 0 ? assemble(kept, true, dropped) : null;
    // The estimate erred (it is conservative): part files, as before.
    if (candidate && candidate.length <= CLIENT_SUPERBLOCK_LIMIT) {
      superblock = candidate;
      inlineParts = true;
      filesKept = kept;
      fallbacks.push(...dropped);
    } else {
      superblock = assemble(all, false, []);
    }
  } else {
    superblock = assemble(all, inlineParts, []);
  }
  // Each part once, however many times it is carried (placement may repeat parts).
  for (const i of new Set(filesKept)) {
    stats.usize += builders[i]!.usize;
    for (const p of builders[i]!.plans) {
      if (p.kind === 'meta') stats.metadataObjects++;
      else if (p.kind === 'bsdiff') stats.bsdiffFiles++;
      else if (p.kind === 'copy') stats.copiedFiles++;
      else if (isSymlink(p.header)) stats.symlinks++;
      else stats.splicedFiles++;
    }
  }
  stats.fallbacks = fallbacks.length;
  stats.inlineParts = inlineParts ? filesKept.length : 0;

  // Parts first, stale parts of an earlier attempt removed, superblock last. A cancel or a
  // failure before the superblock removes the parts this compile wrote: nothing is left that no
  // superblock names (unless an existing delta is being replaced: its parts are overwritten).
  const written: string[] = [];
  try {
    if (!inlineParts) {
      for (let i = 0; i < partFiles.length; i++) {
        throwIfCancelled(signal);
        await repo.backend.write(partKey(from, to, i), partFiles[i]!);
        written.push(partKey(from, to, i));
      }
    }
    throwIfCancelled(signal);
  } catch (e) {
    if (!opts.replace) for (const key of written) await repo.backend.remove(key).catch(() => {});
    throw e;
  }
  const dir = deltaDir(from, to);
  const keep = new Set(inlineParts ? [] : partFiles.map((_, i) => partKey(from, to, i)));
  for await (const key of repo.backend.list(dir)) {
    if (/\/\d+$/.test(key) && !keep.has(key)) await repo.backend.remove(key);
  }
  await repo.backend.write(sbKey, superblock);

  stats.phaseMs.write = Date.now() - t3;
  stats.elapsedMs = Date.now() - started;
  const partSizes = inlineParts ? [] : partFiles.map((f) => f.length);
  return {
    name: deltaName(from, to),
    from,
    to,
    digest: sha256Hex(superblock),
    superblockSize: superblock.length,
    partSizes,
    totalSize: superblock.length + partSizes.reduce((a, b) => a + b, 0),
    fallbackSize: fallbacks.reduce((a, f) => a + f.compressedSize, 0),
    stats,
  };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
