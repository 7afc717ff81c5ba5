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
 * Objects are ordered so similar bytes sit together in the xz window
 * (metadata, then patches, then small files grouped by extension and name,
 * then large files, then symlinks), and the
 * order is a pure function of the two trees: the same inputs give the same
 * parts byte for byte; only the superblock's generation time differs.
 */
import { deflateRawSync, constants as zconst } from 'node:zlib';
import { CairnError } from '../errors';
import type { VarDict } from '../gvariant';
import { Variant, parse } from '../gvariant';
import { checksumToBytes, sha256Hex, validateChecksum } from '../objects/checksum';
import { decodeCommit } from '../objects/commit';
import { isSymlink, type FileHeader } from '../objects/content';
import { decodeDirTree, type DirTree } from '../objects/dirtree';
import { ObjectType } from '../objects/types';
import { encodeXattrs } from '../objects/xattrs';
import type { Repo } from '../repo/repo';
import { anchoredBsdiff } from './anchored';
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
import { signalGate, throwIfCancelled, type NativeGate } from './cancel';
import { readContentInfo, readContentObject, type ContentInfo } from './objects-io';

export interface CompileOptions {
  /** Most payload bytes per part before a new part starts (ostree max-chunk-size: 32 MB). */
  maxPartSize?: number;
  /** New files whose content is larger become fallbacks (ostree min-fallback-size: 4 MB); 0 disables. */
  minFallbackSize?: number;
  /** bsdiff is tried only when old + new sizes are at most this (ostree max-bsdiff-size: 128 MB). */
  maxBsdiffSize?: number;
  /** Use bsdiff for modified files (default true). */
  bsdiff?: boolean;
  /** Put the parts inside the superblock (one-file deltas; ostree's --inline). */
  inline?: boolean;
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
  usize: number;
  elapsedMs: number;
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
export const DEFAULT_MIN_FALLBACK_SIZE = 4 * 1000 * 1000;
export const DEFAULT_MAX_BSDIFF_SIZE = 128 * 1000 * 1000;
/** ostree's CONTENT_SIZE_SIMILARITY_THRESHOLD_PERCENT. */
const SIMILARITY_PERCENT = 30;
const S_IROTH = 0o004;
/** Files above this go after the small ones in a part (see the layout comment in compileDelta). */
const LARGE_FILE = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Trees with paths

interface TreeIndex {
  /** dirtree and dirmeta checksums, keyed `type:checksum`, with the first path that uses them. */
  metadata: Map<string, { ref: DeltaObjectRef; path: string }>;
  /** content checksum → paths using it (sorted walk order). */
  files: Map<string, string[]>;
  /** path → content checksum. */
  byPath: Map<string, string>;
}

/** Dirtrees read at once per batch while indexing (the walk itself stays sequential and ordered). */
const DIRTREE_READ_CONCURRENCY = 32;

/**
 * Every dirtree under `root`, read level by level with bounded concurrency:
 * one backend round trip after another made the index of a large tree the
 * biggest cost of a small delta.
 */
async function loadDirTrees(repo: Repo, commit: string, root: string): Promise<Map<string, DirTree>> {
  const trees = new Map<string, DirTree>();
  let level = [root];
  while (level.length > 0) {
    const todo = [...new Set(level)].filter((t) => !trees.has(t));
    for (let i = 0; i < todo.length; i += DIRTREE_READ_CONCURRENCY) {
      const batch = todo.slice(i, i + DIRTREE_READ_CONCURRENCY);
      const raws = await Promise.all(batch.map((t) => repo.readMetadata(t, ObjectType.DirTree)));
      batch.forEach((t, k) => {
        const raw = raws[k];
        if (!raw) throw new CairnError('MISSING_OBJECTS', `dirtree ${t} of commit ${commit} is missing`, { object: t });
        trees.set(t, decodeDirTree(raw));
      });
    }
    level = todo.flatMap((t) => trees.get(t)!.dirs.map((d) => d.treeChecksum));
  }
  return trees;
}

async function indexTree(repo: Repo, commit: string): Promise<{ index: TreeIndex; commitBytes: Buffer }> {
  const commitBytes = await repo.readMetadata(commit, ObjectType.Commit);
  if (!commitBytes) throw new CairnError('NOT_FOUND', `commit ${commit} is not in repository ${repo.name}`, { commit });
  const c = decodeCommit(commitBytes);
  const trees = await loadDirTrees(repo, commit, c.rootTree);
  const index: TreeIndex = { metadata: new Map(), files: new Map(), byPath: new Map() };
  const visit = (tree: string, meta: string, dir: string): void => {
    const mk = `${ObjectType.DirMeta}:${meta}`;
    if (!index.metadata.has(mk)) index.metadata.set(mk, { ref: { type: ObjectType.DirMeta, checksum: meta }, path: dir });
    const tk = `${ObjectType.DirTree}:${tree}`;
    const seenTree = index.metadata.has(tk);
    if (!seenTree) index.metadata.set(tk, { ref: { type: ObjectType.DirTree, checksum: tree }, path: dir });
    const dt = trees.get(tree)!;
    for (const f of dt.files) {
      const p = `${dir}/${f.name}`;
      index.byPath.set(p, f.checksum);
      const paths = index.files.get(f.checksum);
      if (paths) paths.push(p);
      else index.files.set(f.checksum, [p]);
    }
    for (const d of dt.dirs) visit(d.treeChecksum, d.metaChecksum, `${dir}/${d.name}`);
  };
  visit(c.rootTree, c.rootMeta, '');
  return { index, commitBytes };
}

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
  const maxPartSize = opts.maxPartSize ?? DEFAULT_MAX_PART_SIZE;
  const minFallback = opts.minFallbackSize ?? DEFAULT_MIN_FALLBACK_SIZE;
  const maxBsdiff = opts.maxBsdiffSize ?? DEFAULT_MAX_BSDIFF_SIZE;
  const sbKey = superblockKey(from, to);
  if (!opts.replace && (await repo.backend.stat(sbKey))) {
    throw new CairnError('ALREADY_EXISTS', `static delta ${deltaName(from, to)} already exists`, { name: deltaName(from, to) });
  }

  const { index: toIdx, commitBytes } = await indexTree(repo, to);
  const fromIdx = from ? (await indexTree(repo, from)).index : null;
  const stats: CompileStats = { metadataObjects: 0, splicedFiles: 0, symlinks: 0, bsdiffFiles: 0, fallbacks: 0, bsdiffRejected: 0, copiedFiles: 0, usize: 0, elapsedMs: 0 };

  // Metadata the client lacks, ordered by path then type (dirmeta, dirtree).
  const metaPlans: Plan[] = [];
  const newMeta = [...toIdx.metadata.entries()].filter(([k]) => !fromIdx?.metadata.has(k)).sort(([ka, a], [kb, b]) => cmp(a.path, b.path) || cmp(ka, kb));
  for (const [, m] of newMeta) {
    throwIfCancelled(signal);
    const data = await repo.readMetadata(m.ref.checksum, m.ref.type);
    if (!data) throw new CairnError('MISSING_OBJECTS', `${m.ref.checksum} (type ${m.ref.type}) is missing`, { object: m.ref.checksum });
    metaPlans.push({ kind: 'meta', ref: m.ref, data });
  }

  // Content the client lacks, in a stable order: by extension, basename, path.
  const newFiles = [...toIdx.files.entries()].filter(([c]) => !fromIdx?.files.has(c)).map(([checksum, paths]) => ({ checksum, path: paths[0]! }));
  newFiles.sort((a, b) => cmp(extension(a.path), extension(b.path)) || cmp(basename(a.path), basename(b.path)) || cmp(a.path, b.path));

  const fromInfo = new Map<string, ContentInfo>();
  const infoOf = async (c: string) => {
    let i = fromInfo.get(c);
    if (!i) fromInfo.set(c, (i = await readContentInfo(repo, c)));
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
    const usable = async (c: string) => {
      const i = await infoOf(c);
      return !isSymlink(i.header) && (i.header.mode & S_IROTH) !== 0 && i.size > 0;
    };
    const same = fromIdx.byPath.get(path);
    if (same && (await usable(same))) return same;
    let best: string | null = null;
    let bestDiff = Infinity;
    for (const c of fromByName.get(basename(path)) ?? []) {
      if (!(await usable(c))) continue;
      const s = (await infoOf(c)).size;
      const diff = Math.abs(s - size);
      if (diff * 100 > SIMILARITY_PERCENT * Math.max(s, size)) continue;
      if (diff < bestDiff || (diff === bestDiff && best !== null && c < best)) {
        best = c;
        bestDiff = diff;
      }
    }
    return best;
  };

  const patchPlans: Plan[] = [];
  const filePlans: Plan[] = [];
  const linkPlans: Plan[] = [];
  const fallbacks: FallbackEntry[] = [];
  const progressTotal = newMeta.length + newFiles.length;
  let progressDone = newMeta.length;
  for (const f of newFiles) {
    throwIfCancelled(signal);
    opts.onProgress?.({ done: progressDone++, total: progressTotal, phase: 'objects' });
    const info = await readContentInfo(repo, f.checksum);
    const ref: DeltaObjectRef = { type: ObjectType.File, checksum: f.checksum };
    if (isSymlink(info.header)) {
      linkPlans.push({ kind: 'file', ref, header: info.header, data: Buffer.alloc(0) });
      continue;
    }
    const prev = opts.bsdiff === false ? null : await previousVersion(f.path, info.size);
    let loaded: Buffer | null = null;
    if (prev && info.size + (await infoOf(prev)).size <= maxBsdiff) {
      loaded = (await readContentObject(repo, f.checksum, maxBsdiff)).data;
      const old = (await readContentObject(repo, prev, maxBsdiff)).data;
      if (old.equals(loaded)) {
        // Only the mode, owner or xattrs changed: no bsdiff (a suffix array of the whole file for
        // an empty patch), the client copies the bytes from its previous version.
        patchPlans.push({ kind: 'copy', ref, header: info.header, size: info.size, source: prev });
        continue;
      }
      // Large files: bsdiff between content-defined chunks found in both (no whole-file suffix array).
      const patch = anchoredBsdiff(old, loaded);
      if (estimate(patch) + BSDIFF_OVERHEAD < estimate(loaded)) {
        patchPlans.push({ kind: 'bsdiff', ref, header: info.header, size: info.size, source: prev, patch });
        continue;
      }
      stats.bsdiffRejected++;
    }
    if (minFallback > 0 && info.size > minFallback) {
      fallbacks.push({ type: ObjectType.File, checksum: f.checksum, compressedSize: info.storedSize, size: info.size });
      continue;
    }
    loaded ??= (await readContentObject(repo, f.checksum, Math.max(minFallback, maxPartSize, info.size))).data;
    filePlans.push({ kind: 'file', ref, header: info.header, data: loaded });
  }

  // Small files first, large ones after (stable, so each group keeps the extension/name order):
  // the small files then share one contiguous xz window instead of being split by big,
  // often incompressible, blobs. Measured: this beats ostree's hash order on mixed trees.
  const big = (p: Plan) => (p.kind === 'file' && p.data.length > LARGE_FILE ? 1 : 0);
  filePlans.sort((a, b) => big(a) - big(b));

  // Lay the objects out in parts.
  const plans = [...metaPlans, ...patchPlans, ...filePlans, ...linkPlans];
  const builders: PartBuilder[] = [];
  let current = new PartBuilder();
  for (const p of plans) {
    if (current.objects.length > 0 && current.blobSize + planPayloadSize(p) > maxPartSize) {
      builders.push(current);
      current = new PartBuilder();
    }
    current.add(p);
    if (p.kind === 'meta') stats.metadataObjects++;
    else if (p.kind === 'bsdiff') stats.bsdiffFiles++;
    else if (p.kind === 'copy') stats.copiedFiles++;
    else if (isSymlink(p.header)) stats.symlinks++;
    else stats.splicedFiles++;
  }
  if (current.objects.length > 0 || builders.length === 0) builders.push(current);
  stats.fallbacks = fallbacks.length;

  const headers: PartHeader[] = [];
  const partFiles: Buffer[] = [];
  for (const b of builders) {
    throwIfCancelled(signal);
    opts.onProgress?.({ done: headers.length, total: builders.length, phase: 'parts' });
    const file = await encodePartFile(b.payload(), COMPRESSION_XZ, { signal, gate });
    partFiles.push(file);
    headers.push({ version: DELTA_PART_VERSION, checksum: sha256Hex(file), size: file.length, usize: b.usize, objects: b.objects });
    stats.usize += b.usize;
  }

  const metadata: VarDict = [...(opts.metadata ?? []).filter(([k]) => k !== 'ostree.endianness'), endiannessEntry()];
  if (opts.inline) partFiles.forEach((f, i) => metadata.push(inlinePartEntry(from, to, i, f)));
  const detached = await repo.readMetadata(to, ObjectType.CommitMeta);
  if (detached) metadata.push([commitmetaKey(from, to), new Variant('a{sv}', parse('a{sv}', detached))]);

  const superblock = encodeSuperblock({
    metadata,
    timestamp: BigInt(Math.floor((opts.timestamp ?? new Date()).getTime() / 1000)),
    from,
    to,
    commit: commitBytes,
    parts: headers,
    fallbacks,
  });

  // Parts first, stale parts of an earlier attempt removed, superblock last. A cancel or a
  // failure before the superblock removes the parts this compile wrote: nothing is left that no
  // superblock names (unless an existing delta is being replaced: its parts are overwritten).
  const written: string[] = [];
  try {
    if (!opts.inline) {
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
  const keep = new Set(opts.inline ? [] : partFiles.map((_, i) => partKey(from, to, i)));
  for await (const key of repo.backend.list(dir)) {
    if (/\/\d+$/.test(key) && !keep.has(key)) await repo.backend.remove(key);
  }
  await repo.backend.write(sbKey, superblock);

  stats.elapsedMs = Date.now() - started;
  const partSizes = opts.inline ? [] : partFiles.map((f) => f.length);
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
