import type { Commit } from '../objects/commit';
import { ObjectType } from '../objects/types';
import { readRefLog } from '../repo/reflog';
import type { Repo } from '../repo/repo';
import { deltaExists } from './inventory';

/**
 * The priorities of planned deltas (the job queue runs lower first; the same
 * numbers as server/jobs/queue.ts PRIORITY_*, which storage does not import).
 */
export const PLAN_PRIORITY = { previousHead: 0, olderCommit: 1, scratch: 2 } as const;

/** One delta to build: `from` null means from scratch. */
export interface PlannedDelta {
  from: string | null;
  to: string;
  /** PLAN_PRIORITY: 0 from the ref's previous head, 1 from older commits, 2 from scratch. */
  priority: number;
}

export interface DeltaPolicy {
  /** Also a from-scratch delta to the new head. */
  scratch: boolean;
  /** Deltas from this many earlier commits of the ref. */
  previousCommits: number;
}

/**
 * The deltas worth having once `ref` moved to `to`: from scratch (hosts
 * installing fresh) and from the ref's previous commits (hosts updating).
 *
 * "Previous commits" are, first, the values the ref held before (its log, newest
 * first, `old` of this very move leading): those are the versions hosts actually
 * run. When the log holds fewer than N, the new commit's parent chain fills up
 * (commits pushed together, or a repository older than the log). Commits that
 * are not in the repository (pruned, or never uploaded: `--depth` pushes) are
 * skipped. Deltas already present are left out: they are immutable.
 *
 * In the order hosts need them, with that priority: from the ref's previous
 * head (`old`, or when not given the `old` of the log's newest move to `to`)
 * first — every host that followed the ref runs it; then from older previous
 * commits, newest first; then from scratch (fresh installs, which can also
 * pull objects). A ref that did not exist before has no previous head: its
 * previous commits (parents) are all "older".
 */
export async function planDeltasForRefMove(repo: Repo, ref: string, to: string, policy: DeltaPolicy, opts: { old?: string | null } = {}): Promise<PlannedDelta[]> {
  const out: PlannedDelta[] = [];
  const n = policy.previousCommits;
  if (n > 0) {
    const head = opts.old !== undefined ? opts.old : await previousHead(repo, ref, to);
    for (const from of await previousCommits(repo, ref, to, n, opts.old ?? null)) {
      out.push({ from, to, priority: from === head ? PLAN_PRIORITY.previousHead : PLAN_PRIORITY.olderCommit });
    }
  }
  if (policy.scratch) out.push({ from: null, to, priority: PLAN_PRIORITY.scratch });
  // Stable: the previous head first, then the log's order, then scratch.
  out.sort((a, b) => a.priority - b.priority);
  const missing: PlannedDelta[] = [];
  for (const d of out) if (!(await deltaExists(repo, d.from, d.to))) missing.push(d);
  return missing;
}

/** The value `ref` held before its newest move to `to` (its log), null if none. */
async function previousHead(repo: Repo, ref: string, to: string): Promise<string | null> {
  for (const e of await readRefLog(repo, { ref, limit: 10 })) if (e.new === to) return e.old ?? null;
  return null;
}

/** Up to `n` distinct commits present in the repo that `ref` held before `to` (see above). */
export async function previousCommits(repo: Repo, ref: string, to: string, n: number, old: string | null): Promise<string[]> {
  const picked: string[] = [];
  const seen = new Set<string>([to]);
  const consider = async (c: string | null | undefined): Promise<boolean> => {
    if (!c || seen.has(c)) return picked.length < n;
    seen.add(c);
    if (await repo.hasObject(c, ObjectType.Commit)) picked.push(c);
    return picked.length < n;
  };

  if (!(await consider(old))) return picked;
  // The log keeps a bounded look-back: far older heads are unlikely to still run.
  for (const e of await readRefLog(repo, { ref, limit: 10 * n + 10 })) {
    if (!(await consider(e.new))) return picked;
    if (!(await consider(e.old))) return picked;
  }
  // Then the parent chain; it ends at the first commit that is not here.
  let cur: string | null = to;
  for (let depth = 0; cur && depth < 10 * n + 10; depth++) {
    const commit: Commit | null = await repo.readCommit(cur).catch(() => null);
    if (!commit?.parent) break;
    if (!(await consider(commit.parent))) return picked;
    cur = commit.parent;
  }
  return picked;
}

/** How far back in a ref's log on-demand deltas may start (entries of that ref). */
export const ON_DEMAND_LOG_LOOKBACK = 100;

/**
 * Whether a host may have Cairn build `from → to` on demand (a GET of a
 * missing superblock, anonymous): `to` must be the current head of a ref, and
 * `from` a commit that ref held (its log, the last ON_DEMAND_LOG_LOOKBACK
 * moves) or one of the first `ancestors` parents of `to` (commits pushed
 * together, or older than the log). Hosts update from versions they ran; a
 * stranger cannot make Cairn compile and keep deltas between arbitrary
 * commits. Presence of the commits is the caller's check.
 */
export async function onDemandEligible(repo: Repo, from: string, to: string, opts: { ancestors: number; logLookback?: number }): Promise<boolean> {
  if (from === to) return false;
  const refs: string[] = [];
  for (const [ref, head] of await repo.listRefs()) if (head === to) refs.push(ref);
  if (refs.length === 0) return false;
  // Recent ancestors of the head.
  let cur: string | null = to;
  for (let depth = 0; cur && depth < opts.ancestors; depth++) {
    const commit: Commit | null = await repo.readCommit(cur).catch(() => null);
    if (!commit?.parent) break;
    if (commit.parent === from) return true;
    cur = commit.parent;
  }
  // Values the ref held.
  for (const ref of refs) {
    for (const e of await readRefLog(repo, { ref, limit: opts.logLookback ?? ON_DEMAND_LOG_LOOKBACK })) {
      if (e.old === from || e.new === from) return true;
    }
  }
  return false;
}
