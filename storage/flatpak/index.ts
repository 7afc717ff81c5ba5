/**
 * Indexed summaries as flatpak ≥ 1.9 reads them (flatpak's
 * common/flatpak-repo-utils.c, flatpak_repo_update):
 *
 * - `summaries/SHA256.gz`: one summary per subset and architecture (the
 *   subset "" is everything; others come from the commits' `xa.subsets`),
 *   gzip of a summary whose refs carry `xa.data` (installed and download
 *   size, metadata), the sparse keys (`eol`, `eolr`, `tokt`) and `ostree.ts`;
 *   named by the SHA-256 of the uncompressed bytes, so served immutable.
 * - `summaries/OLD-NEW.delta`: gzip of a byte diff ("xadf") from a previous
 *   subsummary to the new one, for clients that hold the old one; up to 16
 *   previous digests are listed in the index as the subsummary's history.
 * - `summary.idx`: `(a{s(ayaaya{sv})}a{sv})`, name → (digest, history, {}),
 *   and the repository metadata (remote configuration, `xa.cache-version`).
 * - `summaries/SHA256(summary.idx).idx.sig` and `summary.idx.sig`: its signature.
 * - the compat `summary` gets `xa.cache`, `xa.sparse-cache` and the remote
 *   configuration, for flatpak < 1.9 and for `remote-ls -d` without an index.
 *
 * Nothing here writes: `planFlatpakPublish` returns the files to stage
 * (content-addressed ones, which the switch writes before anything else) and
 * the index, which the switch renames after the summary (storage/repo/summary.ts).
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { parse, serialize, Variant, type VarDict } from '../gvariant';
import { checksumFromBytes, checksumToBytes, sha256Hex } from '../objects/checksum';
import { bswap64 } from '../objects/endian';
import { OBJECT_GVARIANT_TYPE, ObjectType } from '../objects/types';
import { decodeCommit } from '../objects/commit';
import { CairnError } from '../errors';
import { keyFileBool, keyFileGet, type KeyFile } from '../repo/config';
import type { Repo } from '../repo/repo';
import { archForRef, isFlatpakRef, readCommitData, type CommitData } from './cache';
import { remoteConfigMetadata } from './config';

export const SUMMARY_INDEX = 'summary.idx';
export const SUMMARY_INDEX_SIG = 'summary.idx.sig';
export const SUMMARY_INDEX_TYPE = '(a{s(ayaaya{sv})}a{sv})';
/** FLATPAK_XA_CACHE_VERSION and FLATPAK_XA_SUMMARY_VERSION of flatpak 1.14. */
const XA_CACHE_VERSION = 2;
const XA_SUMMARY_VERSION = 1;
/** FLATPAK_SUMMARY_HISTORY_LENGTH_DEFAULT */
export const SUMMARY_HISTORY_LENGTH = 16;
/** Largest old subsummary read back to diff against (the client reads at most 10 MiB per summary too). */
const MAX_SUBSUMMARY_BYTES = 64 * 1024 * 1024;

export interface FlatpakPublish {
  /** Keys added to the compat summary's metadata. */
  summaryMetadata: VarDict;
  /** Content-addressed files under summaries/ to write first (only those not already there). */
  files: Array<{ key: string; data: Buffer }>;
  /** The new summary.idx. */
  index: Buffer;
  /** Every summaries/ file the new index (or the one it replaces) refers to: others may go after the switch. */
  keep: Set<string>;
}

/**
 * Whether Cairn publishes a repository as a flatpak repository: its config has
 * a `[flatpak]` group (`cairn init-repo --flatpak`, the settings API, or
 * `flatpak build-update-repo --title=…`), or it already has a summary index
 * (a repository `flatpak build-update-repo` made and Cairn adopted).
 */
export async function isFlatpakRepo(repo: Repo, config: KeyFile): Promise<boolean> {
  if (config.has('flatpak')) return true;
  return (await repo.backend.stat(SUMMARY_INDEX)) !== null;
}

/** What a subsummary is made of: subset ("" for all) and architecture. */
interface Subsummary {
  name: string;
  subset: string;
  arch: string;
}

function appstreamSubset(ref: string): string | null {
  if (!ref.startsWith('appstream2/')) return null;
  const rest = ref.slice('appstream2/'.length);
  const dash = rest.lastIndexOf('-');
  return dash === -1 ? null : rest.slice(0, dash);
}

/** generate_summary's choice of refs for one subsummary. */
function inSubsummary(ref: string, data: CommitData | undefined, s: Subsummary): boolean {
  const arch = archForRef(ref);
  if (arch !== null && arch !== s.arch) return false;
  if (s.subset !== '') {
    if (ref.startsWith('appstream/')) return false;
    if (ref.startsWith('appstream2/')) return appstreamSubset(ref) === s.subset;
    if (data) return data.subsets.includes(s.subset);
    return true;
  }
  return appstreamSubset(ref) === null;
}

/** The repository metadata of the index (add_summary_metadata), without last-modified's caller-given time. */
function indexMetadata(config: KeyFile, now: Date): VarDict {
  const md: VarDict = [
    ['ostree.summary.mode', new Variant('s', keyFileGet(config, 'core', 'mode') ?? 'bare')],
    ['ostree.summary.tombstone-commits', new Variant('b', keyFileBool(config, 'core', 'tombstone-commits'))],
    ['ostree.summary.indexed-deltas', new Variant('b', true)],
    ['ostree.summary.last-modified', new Variant('t', bswap64(BigInt(Math.floor(now.getTime() / 1000))))],
  ];
  const collectionId = keyFileGet(config, 'core', 'collection-id');
  if (collectionId) md.push(['ostree.summary.collection-id', new Variant('s', collectionId)]);
  md.push(...remoteConfigMetadata(config));
  md.push(['xa.cache-version', new Variant('u', XA_CACHE_VERSION)]);
  return md;
}

function summariesKey(name: string): string {
  return `summaries/${name}`;
}

/**
 * Everything flatpak-specific a publish switches: called by the switch with
 * the refs as they will be (sorted by name).
 */
export async function planFlatpakPublish(
  repo: Repo,
  opts: { refs: Map<string, string>; config: KeyFile; now?: Date; sign?: (data: Buffer) => Promise<Buffer> },
): Promise<FlatpakPublish> {
  const now = opts.now ?? new Date();
  const b = repo.backend;
  const data = new Map<string, CommitData>();
  const arches = new Set<string>();
  const subsets = new Set<string>(['']);
  for (const [ref, commit] of opts.refs) {
    const arch = archForRef(ref);
    if (arch !== null) arches.add(arch);
    if (!isFlatpakRef(ref)) continue;
    const d = await readCommitData(repo, commit);
    data.set(ref, d);
    for (const s of d.subsets) subsets.add(s);
  }

  // The compat summary's flatpak keys.
  const cache: unknown[] = [];
  const sparseCache: unknown[] = [];
  for (const [ref, d] of data) {
    cache.push([ref, [bswap64(d.installedSize), bswap64(d.downloadSize), d.metadata]]);
    if (d.sparse) sparseCache.push([ref, d.sparse]);
  }
  const summaryMetadata: VarDict = [
    ...remoteConfigMetadata(opts.config),
    ['xa.cache-version', new Variant('u', XA_CACHE_VERSION)],
    ['xa.cache', new Variant('v', new Variant('a{s(tts)}', cache))],
    ['xa.sparse-cache', new Variant('a{sa{sv}}', sparseCache)],
  ];

  // Subsummaries.
  const wanted: Subsummary[] = [];
  for (const subset of subsets) for (const arch of arches) wanted.push({ name: subset === '' ? arch : `${subset}-${arch}`, subset, arch });
  wanted.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));

  const old = await readIndex(repo);
  const files: Array<{ key: string; data: Buffer }> = [];
  const keep = new Set<string>();
  const entries: unknown[] = [];
  for (const s of wanted) {
    const refs: unknown[] = [];
    for (const [ref, commit] of opts.refs) {
      const d = data.get(ref);
      if (!inSubsummary(ref, d, s)) continue;
      const md: VarDict = [];
      let size: number;
      let ts: bigint;
      if (d) {
        md.push(['xa.data', new Variant('(tts)', [bswap64(d.installedSize), bswap64(d.downloadSize), d.metadata])]);
        if (d.sparse) md.push(...d.sparse);
        size = d.commitSize;
        ts = d.timestamp;
      } else {
        const c = await plainCommit(repo, commit);
        size = c.size;
        ts = c.timestamp;
      }
      md.push(['ostree.ts', new Variant('t', bswap64(ts))]);
      refs.push([ref, [BigInt(size), checksumToBytes(commit), md]]);
    }
    const sub = serialize(OBJECT_GVARIANT_TYPE.summary, [refs, [['xa.summary-version', new Variant('u', XA_SUMMARY_VERSION)]]]);
    const digest = sha256Hex(sub);
    const gzKey = summariesKey(`${digest}.gz`);
    keep.add(gzKey);
    const existing = await b.stat(gzKey);
    if (!existing || existing.size === 0) files.push({ key: gzKey, data: gzipSync(sub) });

    // History: the previous digest first, then its history, each with a delta to the new one.
    const history: Buffer[] = [];
    const prev = old?.subsummaries.get(s.name);
    if (prev) {
      for (const from of [prev.digest, ...prev.history]) {
        if (history.length >= SUMMARY_HISTORY_LENGTH) break;
        if (from === digest || history.some((h) => h.equals(checksumToBytes(from)))) continue;
        const deltaKey = summariesKey(`${from}-${digest}.delta`);
        if (await b.stat(deltaKey)) {
          // Made by an earlier publish (nothing changed since): only parents that still exist count.
          if (!(await b.stat(summariesKey(`${from}.gz`)))) continue;
        } else {
          const oldSub = await readSubsummary(repo, from);
          if (!oldSub) continue; // only parents that still exist
          files.push({ key: deltaKey, data: gzipSync(summaryDiff(oldSub, sub)) });
        }
        keep.add(summariesKey(`${from}.gz`));
        keep.add(deltaKey);
        history.push(checksumToBytes(from));
      }
    }
    entries.push([s.name, [checksumToBytes(digest), history, []]]);
  }
  const index = serialize(SUMMARY_INDEX_TYPE, [entries, indexMetadata(opts.config, now)]);
  if (opts.sign) {
    const sigKey = summariesKey(`${sha256Hex(index)}.idx.sig`);
    files.push({ key: sigKey, data: await opts.sign(index) });
    keep.add(sigKey);
  }
  // The index being replaced stays readable for clients that just fetched it.
  if (old) {
    keep.add(summariesKey(`${old.digest}.idx.sig`));
    for (const e of old.subsummaries.values()) keep.add(summariesKey(`${e.digest}.gz`));
  }
  return { summaryMetadata, files, index, keep };
}

/** Signature bytes of an index already staged in `files` (the same bytes go to summary.idx.sig). */
export function indexSignature(plan: FlatpakPublish): Buffer | null {
  const key = summariesKey(`${sha256Hex(plan.index)}.idx.sig`);
  return plan.files.find((f) => f.key === key)?.data ?? null;
}

/**
 * Removes summaries/ files neither the new index nor the one it replaced
 * needs (flatpak_repo_gc_digested_summaries); unknown names are kept.
 */
export async function sweepSummaries(repo: Repo, keep: Set<string>): Promise<void> {
  for await (const key of repo.backend.list('summaries')) {
    const name = key.slice('summaries/'.length);
    if (name.includes('/')) continue;
    const known = /^[0-9a-f]{64}\.gz$/.test(name) || /^[0-9a-f]{64}-[0-9a-f]{64}\.delta$/.test(name) || /^[0-9a-f]{64}\.idx\.sig$/.test(name);
    if (known && !keep.has(key)) await repo.backend.remove(key).catch(() => undefined);
  }
}

interface ParsedIndex {
  digest: string;
  subsummaries: Map<string, { digest: string; history: string[] }>;
  metadata: VarDict;
}

/** The repository's current summary.idx, or null (absent or not an index). */
export async function readIndex(repo: Repo): Promise<ParsedIndex | null> {
  const got = await repo.backend.read(SUMMARY_INDEX);
  if (!got) return null;
  return parseIndex(got.data);
}

export function parseIndex(bytes: Buffer): ParsedIndex | null {
  try {
    const [subs, metadata] = parse(SUMMARY_INDEX_TYPE, bytes) as [Array<[string, [Buffer, Buffer[], VarDict]]>, VarDict];
    const out = new Map<string, { digest: string; history: string[] }>();
    for (const [name, [digest, history]] of subs) {
      if (digest.length !== 32) continue;
      out.set(name, { digest: checksumFromBytes(digest), history: history.filter((h) => h.length === 32).map((h) => checksumFromBytes(h)) });
    }
    return { digest: sha256Hex(bytes), subsummaries: out, metadata };
  } catch {
    return null;
  }
}

/** summaries/DIGEST.gz inflated and checked against its name; null when absent or damaged. */
export async function readSubsummary(repo: Repo, digest: string): Promise<Buffer | null> {
  const got = await repo.backend.read(summariesKey(`${digest}.gz`));
  if (!got) return null;
  try {
    const data = gunzipSync(got.data, { maxOutputLength: MAX_SUBSUMMARY_BYTES });
    return sha256Hex(data) === digest ? data : null;
  } catch {
    return null;
  }
}

async function plainCommit(repo: Repo, commit: string): Promise<{ size: number; timestamp: bigint }> {
  const bytes = await repo.readMetadata(commit, ObjectType.Commit);
  if (!bytes) throw new CairnError('NOT_FOUND', `ref points to missing commit ${commit}`, { commit });
  return { size: bytes.length, timestamp: decodeCommit(bytes).timestamp };
}

const OP_REUSE = 0;
const OP_SKIP = 1;
const OP_DATA = 2;

/**
 * A summary diff as flatpak_summary_apply_diff reads it: "xadf", the op
 * count (u32 LE), ops (u32 LE: kind in the top nibble, size below), then the
 * new bytes the DATA ops copy. Made of the common prefix, the common suffix
 * and the middle: subsummaries change little between publishes (a ref's
 * checksum, sizes, a timestamp), so most of the bytes are reused.
 */
export function summaryDiff(oldBytes: Buffer, newBytes: Buffer): Buffer {
  let prefix = 0;
  const max = Math.min(oldBytes.length, newBytes.length);
  while (prefix < max && oldBytes[prefix] === newBytes[prefix]) prefix++;
  let suffix = 0;
  while (suffix < max - prefix && oldBytes[oldBytes.length - 1 - suffix] === newBytes[newBytes.length - 1 - suffix]) suffix++;
  const ops: Array<[number, number]> = [];
  const emit = (kind: number, size: number) => {
    while (size > 0) {
      const n = Math.min(size, 0x0fffffff);
      ops.push([kind, n]);
      size -= n;
    }
  };
  emit(OP_REUSE, prefix);
  emit(OP_SKIP, oldBytes.length - prefix - suffix);
  const middle = newBytes.subarray(prefix, newBytes.length - suffix);
  emit(OP_DATA, middle.length);
  emit(OP_REUSE, suffix);
  const head = Buffer.alloc(8 + 4 * ops.length);
  head.write('xadf', 0, 'latin1');
  head.writeUInt32LE(ops.length, 4);
  ops.forEach(([kind, size], i) => head.writeUInt32LE(((kind << 28) | size) >>> 0, 8 + 4 * i));
  return Buffer.concat([head, middle]);
}

/** flatpak_summary_apply_diff, for tests and checks. */
export function applySummaryDiff(oldBytes: Buffer, diff: Buffer): Buffer {
  if (diff.length < 8 || diff.toString('latin1', 0, 4) !== 'xadf') throw new Error('not a summary diff');
  const n = diff.readUInt32LE(4);
  let data = 8 + 4 * n;
  if (data > diff.length) throw new Error('summary diff ops overrun');
  let at = 0;
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const op = diff.readUInt32LE(8 + 4 * i);
    const kind = op >>> 28;
    const size = op & 0x0fffffff;
    if (kind === OP_REUSE) {
      if (at + size > oldBytes.length) throw new Error('summary diff reuses past the old bytes');
      out.push(oldBytes.subarray(at, at + size));
      at += size;
    } else if (kind === OP_SKIP) {
      if (at + size > oldBytes.length) throw new Error('summary diff skips past the old bytes');
      at += size;
    } else if (kind === OP_DATA) {
      if (data + size > diff.length) throw new Error('summary diff data overrun');
      out.push(diff.subarray(data, data + size));
      data += size;
    } else throw new Error('summary diff op unknown');
  }
  return Buffer.concat(out);
}
