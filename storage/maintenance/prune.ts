import { listDeltas } from '../deltas/inventory';
import { pruneDeltas } from '../deltas/prune';
import { CairnError } from '../errors';
import { serialize, Variant } from '../gvariant';
import { decodeDirTree } from '../objects/dirtree';
import { OBJECT_GVARIANT_TYPE, ObjectType, objectKey } from '../objects/types';
import { keyFileBool } from '../repo/config';
import { confirmLocks, withRepoLock } from '../repo/mutex';
import { validateRefName } from '../repo/names';
import type { Repo } from '../repo/repo';
import { updateSummary, type SummarySigner } from '../repo/summary';
import { MarkSet } from './markset';
import { listAllRefs, mapLimit, Marker, parallelism } from './reach';

/**
 * Prune: cut the history of refs. For each ref chosen (default: every ref
 * under refs/heads), its commits are walked from the head along their
 * parents; the newest ones are kept while one of the rules holds — among
 * the last `keep` commits (the head counts: `keep: 1` keeps only it), or
 * younger than `keepYoungerThan` — and from the first commit that fails
 * both, that commit and all older ones go (a commit another ref still keeps
 * stays). As `ostree prune --depth`, the new oldest kept commit's parent is
 * then simply absent: `ostree log` stops there, and pulls with `--depth`
 * stop there too.
 *
 * A pruned commit goes with its detached metadata, and when the repository's
 * config says `core.tombstone-commits=true` a `.tombstone-commit` object
 * (`{commit: <hex>}`, what libostree writes) takes its place, so clients
 * pulling with depth are told it was deleted on purpose. Deltas from or to a
 * pruned commit go too (storage/deltas/prune.ts), and the summary is
 * regenerated when any did. The trees of pruned commits become unreachable:
 * garbage collection (gc.ts) removes them; the report says how many objects
 * and bytes that frees (`exclusive*`: reachable from pruned commits only).
 *
 * Deciding and deleting happen under the repository's `refs` lock, so a ref
 * update is never half-seen: it runs before or after, and a publish that
 * lands after still finds every commit it depends on (the commits pruned are
 * in no ref's kept history at that moment).
 */

export interface PruneOptions {
  /** Refs (names under refs/heads) to prune; default: all of them. */
  refs?: string[];
  /** Keep this many commits of each ref (the head counts). */
  keep?: number;
  /** Keep commits whose timestamp is at or after this time. */
  keepYoungerThan?: Date;
  dryRun?: boolean;
  /** Re-signs the summary when deltas go. */
  signer?: SummarySigner;
  onProgress?(line: string): void;
}

export interface PrunedCommit {
  commit: string;
  /** The ref whose history it was cut from (the first one, in name order). */
  ref: string;
  timestamp: string;
  bytes: number;
}

export interface PruneReport {
  repo: string;
  dryRun: boolean;
  tombstones: boolean;
  /** Per ref chosen: commits kept in its history. */
  kept: Record<string, number>;
  commits: PrunedCommit[];
  /** Deltas that go (or would go) with them. */
  deltas: string[];
  /** Bytes of the commits, their detached metadata and the deltas removed. */
  bytes: number;
  /** Objects (and their bytes) reachable only from pruned commits: what `cairn gc` frees afterwards (after its grace window). */
  exclusiveObjects: number;
  exclusiveBytes: number;
}

/** At most this many commits are pruned per call (a bound on the work and on the report). */
export const MAX_PRUNE_COMMITS = 100_000;
/** Commits removed per batch on the filesystem (the lease confirmed before each), and on a remote store (S3: 1,000 keys a DeleteObjects request). */
const PRUNE_BATCH = 32;
const REMOTE_PRUNE_BATCH = 500;

export async function prune(repo: Repo, opts: PruneOptions): Promise<PruneReport> {
  if (opts.keep === undefined && opts.keepYoungerThan === undefined) throw new CairnError('INVALID_ARGUMENT', 'say what to keep: keep (a number of commits) and/or keepYoungerThan');
  if (opts.keep !== undefined && !(Number.isInteger(opts.keep) && opts.keep >= 1)) throw new CairnError('INVALID_ARGUMENT', 'keep must be an integer of at least 1 (the head is always kept)');
  if (opts.keepYoungerThan !== undefined && Number.isNaN(opts.keepYoungerThan.getTime())) throw new CairnError('INVALID_ARGUMENT', 'keepYoungerThan is not a valid time');
  for (const r of opts.refs ?? []) validateRefName(r);
  const run = () => pruneLocked(repo, opts);
  return opts.dryRun ? run() : withRepoLock(repo.backend, 'refs', run);
}

async function pruneLocked(repo: Repo, opts: PruneOptions): Promise<PruneReport> {
  const progress = opts.onProgress ?? (() => undefined);
  const all = await listAllRefs(repo);
  const heads = new Map([...all].filter(([k]) => k.startsWith('heads/')).map(([k, v]) => [k.slice('heads/'.length), v]));
  const chosen = opts.refs ?? [...heads.keys()];
  for (const r of chosen) if (!heads.has(r)) throw new CairnError('NOT_FOUND', `no ref ${r} in ${repo.name}`, { ref: r });
  const chosenSet = new Set(chosen);
  const keepN = opts.keep ?? 1;
  const youngerMs = opts.keepYoungerThan?.getTime();

  // Which commits are kept (by any ref: the refs not chosen keep their whole history) and which go.
  const keptCommits = new Set<string>();
  const cut = new Map<string, { ref: string; timestamp: bigint }>();
  const kept: Record<string, number> = {};
  const marker = new Marker(repo, new MarkSet());
  for (const [key, head] of all) {
    const name = key.startsWith('heads/') ? key.slice('heads/'.length) : null;
    const pruning = name !== null && chosenSet.has(name);
    let i = 0;
    let cutting = false;
    const seen = new Set<string>();
    for (let c: string | null = head; c !== null && !seen.has(c); i++) {
      seen.add(c);
      const commit = await marker.readCommit(c, i === 0 ? 'ref' : 'history');
      if (!commit) break;
      if (pruning && !cutting && i > 0) {
        const byCount = opts.keep !== undefined && i < keepN;
        const byAge = youngerMs !== undefined && Number(commit.timestamp) * 1000 >= youngerMs;
        if (!byCount && !byAge) cutting = true;
      }
      if (cutting) {
        if (!cut.has(c)) cut.set(c, { ref: name!, timestamp: commit.timestamp });
        if (cut.size > MAX_PRUNE_COMMITS) throw new CairnError('TOO_LARGE', `more than ${MAX_PRUNE_COMMITS} commits to prune at once; prune fewer refs, or keep more, first`);
      } else {
        keptCommits.add(c);
        if (pruning) kept[name!] = (kept[name!] ?? 0) + 1;
      }
      c = commit.parent;
    }
  }
  for (const c of keptCommits) cut.delete(c);

  const tombstones = keyFileBool(await repo.readConfig(), 'core', 'tombstone-commits');
  const report: PruneReport = { repo: repo.name, dryRun: opts.dryRun === true, tombstones, kept, commits: [], deltas: [], bytes: 0, exclusiveObjects: 0, exclusiveBytes: 0 };
  for (const [commit, { ref, timestamp }] of cut) {
    const bytes = ((await repo.backend.stat(objectKey(commit, ObjectType.Commit)))?.size ?? 0) + ((await repo.backend.stat(objectKey(commit, ObjectType.CommitMeta)))?.size ?? 0);
    report.commits.push({ commit, ref, timestamp: new Date(Number(timestamp) * 1000).toISOString(), bytes });
    report.bytes += bytes;
  }
  for (const d of await listDeltas(repo)) {
    if (cut.has(d.to) || (d.from !== null && cut.has(d.from))) {
      report.deltas.push(d.name);
      report.bytes += d.size;
    }
  }
  if (cut.size === 0) return report;

  // What gc frees afterwards: objects of pruned commits' trees that no kept commit (nor any other ref) reaches.
  progress(`${cut.size} commits to prune; measuring what they alone hold`);
  const keptSet = new MarkSet();
  const keptMarker = new Marker(repo, keptSet);
  for (const c of keptCommits) await keptMarker.markCommit(c, false);
  const freed = new MarkSet();
  const exclusive = new Marker(repo, freed);
  for (const c of cut.keys()) {
    const commit = await exclusive.readCommit(c, 'other');
    if (!commit) continue;
    await measureExclusive(repo, commit.rootTree, commit.rootMeta, keptSet, freed, report);
  }

  if (opts.dryRun) return report;
  progress(`pruning ${cut.size} commits${tombstones ? ' (writing tombstones)' : ''}`);
  // In batches (Backend.removeMany: S3 DeleteObjects; no order within a batch, so each step below is a
  // batch of its own, in this order).
  const doomed = [...cut.keys()];
  const size = repo.backend.blocking ? PRUNE_BATCH : REMOTE_PRUNE_BATCH;
  for (let i = 0; i < doomed.length; i += size) {
    const batch = doomed.slice(i, i + size);
    // The ref lock still ours (a store's lease taken over after a stall: a publish may have landed unseen; CONFLICT).
    await confirmLocks();
    // The tombstones first: a crash in between leaves a tombstone beside its commit (ostree removes it when the commit comes back), never a commit gone without one.
    if (tombstones) {
      await mapLimit(batch, parallelism(repo), (c) => repo.backend.write(objectKey(c, ObjectType.TombstoneCommit), tombstoneBytes(c)));
      await confirmLocks();
    }
    // Then the detached metadata and partial markers, then the commits: none outlives its commit.
    await repo.backend.removeMany(batch.flatMap((c) => [objectKey(c, ObjectType.CommitMeta), `state/${c}.commitpartial`]));
    await repo.backend.removeMany(batch.map((c) => objectKey(c, ObjectType.Commit)));
  }
  const removed = await pruneDeltas(repo);
  if (removed.length) {
    progress(`removed ${removed.length} deltas; regenerating the summary`);
    await updateSummary(repo, opts.signer);
  }
  return report;
}

/** Adds to the report the objects under a tree that `kept` does not hold (each once, via `freed`), with their sizes. */
async function measureExclusive(repo: Repo, tree: string, meta: string, kept: MarkSet, freed: MarkSet, report: PruneReport): Promise<void> {
  const count = async (checksum: string, type: ObjectType): Promise<boolean> => {
    if (kept.has(checksum, type) || !freed.add(checksum, type)) return false;
    const info = await repo.backend.stat(objectKey(checksum, type));
    if (!info) return false;
    report.exclusiveObjects++;
    report.exclusiveBytes += info.size;
    return true;
  };
  const stack: Array<[string, string]> = [[tree, meta]];
  while (stack.length) {
    const [t, m] = stack.pop()!;
    await count(m, ObjectType.DirMeta);
    if (!(await count(t, ObjectType.DirTree))) continue; // kept (so is all below it), seen, or absent
    const raw = await repo.readMetadata(t, ObjectType.DirTree).catch(() => null);
    if (!raw) continue;
    let dt;
    try {
      dt = decodeDirTree(raw);
    } catch {
      continue;
    }
    await mapLimit(dt.files, parallelism(repo), (f) => count(f.checksum, ObjectType.File)); // several stats at once on a remote store
    for (const d of dt.dirs) stack.push([d.treeChecksum, d.metaChecksum]);
  }
}

/** The `.tombstone-commit` libostree writes for a deleted commit: a{sv} {commit: ay "<hex>\0"} (a bytestring). */
export function tombstoneBytes(commit: string): Buffer {
  return serialize(OBJECT_GVARIANT_TYPE.tombstone, [['commit', new Variant('ay', Buffer.from(`${commit}\0`, 'latin1'))]]);
}
