import { pruneDeltas } from '../deltas/prune';
import { CairnError } from '../errors';
import { ObjectType, objectKey } from '../objects/types';
import { confirmLocks, withRepoLock } from '../repo/mutex';
import { bumpGcEpoch, presence } from '../repo/presence';
import type { Repo } from '../repo/repo';
import { updateSummary, type SummarySigner } from '../repo/summary';
import { MarkSet } from './markset';
import { randomBytes } from 'node:crypto';
import type { Backend } from '../backends/backend';
import { listAllRefs, mapLimit, Marker, objectLabel, parallelism, parseObjectKey } from './reach';

/**
 * Garbage collection of unreachable objects, safe while publishers push.
 *
 * Reachable (kept) is:
 *  - the closure of every ref (refs/heads, mirrors, remotes) with its whole
 *    present history: GC never cuts history, prune does (prune.ts);
 *  - every object whose file is younger than the grace window (default 1 h,
 *    by mtime): a push uploads its objects first and moves the ref last, so
 *    the objects of a push in flight are kept as long as the push takes less
 *    than the grace window;
 *  - whatever a ref update needs: deletions are made in short rounds under
 *    the repository's `refs` lock (the lock every ref update holds from its
 *    completeness check to the switch), each round first marking the
 *    closures of refs that moved since the mark; so a ref update either ran
 *    before a round (its commit is marked, nothing of it goes) or after (it
 *    finds what the round deleted missing and refuses with 422 instead of
 *    publishing a broken commit). A round holds the lock for at most
 *    ROUND_MS (a batch starts only if, taking as long as the round's
 *    previous one, it ends within that; a round's first batch always runs),
 *    so publishing never waits much longer than that.
 *  - detached metadata (.commitmeta) of kept commits, and every
 *    .tombstone-commit (they record pruned commits for clients).
 *
 * The mark holds a MarkSet (16 bytes a slot, 32 MiB for a million objects),
 * not every checksum as strings; the sweep streams the listing of objects/
 * and holds one round's deletions at a time. Deltas whose commits went are
 * removed afterwards and the summary regenerated (signed with `signer`).
 *
 * On a remote store (S3: `Backend.blocking` false) three things differ:
 *  - Age is measured by the store's clock, not ours: an object's mtime is the
 *    store's Last-Modified, so "now" is the Last-Modified of a probe written
 *    at the start (storeNow), and a clock skew between this host and the
 *    store cannot shorten the grace window. S3 dates are whole seconds
 *    (truncated): an mtime of a whole second counts as the latest instant it
 *    may stand for (m + 1 s), so rounding never deletes an object younger
 *    than the window (the probe's own truncation only makes "now" earlier).
 *  - Stats of candidates and reads of the walk go several at once (each is a
 *    round trip); deletions go in batches of REMOTE_BATCH keys
 *    (Backend.removeMany: S3 DeleteObjects, 1,000 keys a request) instead of
 *    the filesystem's PARALLEL_REMOVES, and the sweep gathers candidates
 *    while the lock is left free between rounds (up to MAX_PENDING).
 *  - Rounds are longer (REMOTE_ROUND_MS) and at least REMOTE_PAUSE_MS apart: a publisher
 *    in another process waits for the store's lease lock by polling it (at most
 *    ~1 s apart), so a collector retaking the lock at once would starve it;
 *    the pause is longer than a poll interval.
 *
 * Deletions are batches (Backend.removeMany: no order within one), so every
 * order that matters is between two batches: a commit's detached metadata
 * and partial marker go in the batch before the one with the commit (as
 * prune does), so no .commitmeta or state/C.commitpartial outlives its commit
 * if the sweep is cut short; and every unreachable commit goes in the first
 * pass, before any object of the second (see the two passes below).
 *
 * The clock probes of storeNow are removed right after they are read; one
 * that a killed gc left in tmp/ (`tmp/cairn-gc-clock-*`) and that is older
 * than an hour is removed by the next gc that is not a dry run.
 */

export interface GcOptions {
  /** Objects younger than this are kept whatever (default 1 h). */
  graceMs?: number;
  /** Report what would go, delete nothing. */
  dryRun?: boolean;
  /** Re-signs the summary when deltas go. */
  signer?: SummarySigner;
  /** Progress lines (stderr of the CLI). */
  onProgress?(line: string): void;
  /** Test hook: called after the mark, before the sweep. */
  afterMark?(): Promise<void> | void;
  /** The clock (tests). */
  now?: () => number;
}

export interface GcReport {
  repo: string;
  dryRun: boolean;
  graceSeconds: number;
  refs: number;
  /** Objects marked reachable. */
  marked: number;
  /** Objects looked at in objects/. */
  scanned: number;
  /** Unreachable but younger than the grace window: kept. */
  young: number;
  /** Deleted (or that would be, on a dry run), by type, and their bytes. */
  deleted: Record<string, number>;
  deletedObjects: number;
  deletedBytes: number;
  /** Up to 1,000 of the names deleted. */
  sample: string[];
  /** Deltas removed because a commit of theirs went. */
  deltas: string[];
  /** Memory of the mark set, bytes. */
  markBytes: number;
  seconds: number;
}

export const DEFAULT_GRACE_MS = 60 * 60_000;
/** Longest a sweep round holds the `refs` lock. */
const ROUND_MS = 100;
/** The same on a remote store (each deletion is a round trip; taking the lock costs a few). */
const REMOTE_ROUND_MS = 1000;
/** Between two rounds on a remote store, the lock free for a waiter in another process (its polls are at most ~1 s apart). */
export const REMOTE_PAUSE_MS = 1500;
/** Keys of one removal batch on the filesystem (removeMany runs them at once: each syncs its folder). */
const PARALLEL_REMOVES = 32;
/** Keys of one removal batch on a remote store (one S3 DeleteObjects request). */
const REMOTE_BATCH = 1000;
/** Candidates gathered before a round. */
const ROUND_OBJECTS = 512;
/** On a remote store, unreachable objects held while the lock is left free between rounds (then the sweep waits for the next round). */
const MAX_PENDING = 8 * REMOTE_BATCH;
/** Clock probes (storeNow) a killed gc left behind, removed once this old. */
const STALE_PROBE_MS = 60 * 60_000;

export async function gc(repo: Repo, opts: GcOptions = {}): Promise<GcReport> {
  // This process's uploads are no longer taken as present without a look (storage/repo/presence.ts;
  // other processes learn it from the gc epoch each deleting round changes):
  // this collection may delete them, with a grace shorter than the memo trusts an entry.
  if (!opts.dryRun) presence.forgetStore(repo.backend);
  const now = opts.now ?? Date.now;
  const started = now();
  const remote = !repo.backend.blocking;
  // "Now" for the grace window: taken before the mark (a later one would shorten the window by the mark's time).
  const clock = opts.now || !remote ? { nowMs: started, how: "this host's clock" } : await storeNow(repo.backend, started);
  const graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
  if (!(graceMs >= 0)) throw new CairnError('INVALID_ARGUMENT', 'the grace window must be 0 or more');
  const progress = opts.onProgress ?? (() => undefined);
  if (!opts.dryRun) await removeStaleProbes(repo.backend, clock.nowMs, progress);
  const set = new MarkSet();
  const corrupt: string[] = [];
  const marker = new Marker(repo, set, { onCorrupt: (name, err) => corrupt.push(`${name}: ${err}`) });

  // Mark: every ref's closure with its history.
  const marked = new Map<string, string>();
  const markRefs = async (refs: Map<string, string>) => {
    for (const [ref, commit] of refs) {
      if (marked.get(ref) === commit) continue;
      await marker.markCommit(commit, true);
      marked.set(ref, commit);
    }
    if (corrupt.length) {
      throw new CairnError('INVALID_OBJECT', `garbage collection of ${repo.name} stopped: ${corrupt.length} reachable metadata object(s) cannot be read (${corrupt[0]}); their children are unknown. Run 'cairn fsck --repair' and push them again`, {
        corrupt: corrupt.slice(0, 100),
      });
    }
  };
  const refs = await listAllRefs(repo);
  progress(`marking the closures of ${refs.size} refs`);
  await markRefs(refs);
  progress(`marked ${set.size} objects (${(set.bytes / 1048576).toFixed(1)} MiB)`);
  await opts.afterMark?.();

  const report: GcReport = {
    repo: repo.name,
    dryRun: opts.dryRun === true,
    graceSeconds: graceMs / 1000,
    refs: refs.size,
    marked: 0,
    scanned: 0,
    young: 0,
    deleted: {},
    deletedObjects: 0,
    deletedBytes: 0,
    sample: [],
    deltas: [],
    markBytes: 0,
    seconds: 0,
  };
  let commitsDeleted = 0;
  let pending: Array<{ key: string; checksum: string; type: ObjectType; size: number }> = [];

  const isKept = (checksum: string, type: ObjectType): boolean => {
    if (type === ObjectType.TombstoneCommit) return true;
    if (type === ObjectType.CommitMeta) return set.has(checksum, ObjectType.Commit);
    return set.has(checksum, type);
  };
  const count = (p: { key: string; checksum: string; type: ObjectType; size: number }) => {
    const ext = p.key.slice(p.key.lastIndexOf('.') + 1);
    report.deleted[ext] = (report.deleted[ext] ?? 0) + 1;
    report.deletedObjects++;
    report.deletedBytes += p.size;
    if (report.sample.length < 1000) report.sample.push(objectLabel(p.checksum, p.type));
    if (p.type === ObjectType.Commit) commitsDeleted++;
  };

  let lastRound = -Infinity;
  /** One or more rounds deleting `pending`, each under the refs lock, after marking refs that moved. */
  const flush = async () => {
    if (opts.dryRun) {
      pending.forEach(count);
      pending = [];
      return;
    }
    while (pending.length > 0) {
      // On a remote store the lock stays free REMOTE_PAUSE_MS between two rounds (also across flushes).
      const rest = lastRound + REMOTE_PAUSE_MS - performance.now();
      if (remote && rest > 0) await new Promise<void>((r) => setTimeout(r, rest));
      await withRepoLock(repo.backend, 'refs', async () => {
        await markRefs(await listAllRefs(repo));
        const until = performance.now() + (remote ? REMOTE_ROUND_MS : ROUND_MS);
        let bumped = false;
        // A batch starts only if it should end within the round, by the last batch's time (the first always starts).
        let batchMs = 0;
        while (pending.length > 0 && performance.now() + batchMs < until) {
          const batchStart = performance.now();
          // A batch at once (removeMany): on the filesystem each removal syncs its folder, and concurrent
          // syncs share the journal's commits; on S3 it is one DeleteObjects request.
          const batch = pending.splice(-(remote ? REMOTE_BATCH : PARALLEL_REMOVES)).filter((p) => !isKept(p.checksum, p.type));
          if (batch.length === 0) continue;
          // The lock still ours, and extended (a store's lease can be taken over from a holder stalled past
          // it: then a publish may have landed unseen, so nothing more is deleted; CONFLICT ends the gc).
          await confirmLocks();
          // Before this round's first deletion: every process's presence memo stops trusting what it
          // entered before now (storage/repo/presence.ts, the gc epoch).
          if (!bumped) bumped = await bumpGcEpoch(repo.backend);
          // A commit goes with its detached metadata (and ostree's partial marker), those first: a batch
          // has no order within it, so they are a batch of their own before the commits'.
          const commits = batch.filter((p) => p.type === ObjectType.Commit);
          if (commits.length > 0) await repo.backend.removeMany(commits.flatMap((p) => [objectKey(p.checksum, ObjectType.CommitMeta), `state/${p.checksum}.commitpartial`]));
          await repo.backend.removeMany(batch.map((p) => p.key));
          batch.forEach(count);
          batchMs = performance.now() - batchStart;
        }
      });
      lastRound = performance.now();
      if (pending.length > 0 && !remote) await new Promise<void>((r) => setImmediate(r));
    }
  };

  // Two passes: unreachable commits first (with their detached metadata and partial markers), then
  // everything else. ostree's fsck checks every commit in objects/, reachable or not, so a sweep cut
  // short (killed, out of time) must never leave a commit whose dirtrees or files it already deleted;
  // for the same reason a commit kept for its age marks its tree before the second pass.
  const cutoff = clock.nowMs - graceMs;
  progress(`keeping objects modified after ${new Date(cutoff).toISOString()} (by ${clock.how})`);
  const isYoung = (mtimeMs: number) => mtimeMs >= cutoff || (mtimeMs % 1000 === 0 && mtimeMs + 1000 > cutoff);
  const statOf = (k: string) => Promise.resolve(repo.backend.statFast(k));
  const width = parallelism(repo);
  let candidates: Array<{ key: string; checksum: string; type: ObjectType }> = [];
  /** Stats the candidates (several at once on a remote store): the young stay (a young commit marks its tree), the rest go to `pending`. */
  const classify = async (pass: 'commits' | 'the rest') => {
    const batch = candidates;
    candidates = [];
    const infos = await mapLimit(batch, width, (c) => statOf(c.key));
    for (let i = 0; i < batch.length; i++) {
      const c = batch[i]!;
      const info = infos[i];
      if (!info || isKept(c.checksum, c.type)) continue;
      if (isYoung(info.mtimeMs)) {
        report.young++;
        // A commit that stays keeps its tree, however old its objects (a push in flight, say).
        // (What cannot be read of it is not gc's to judge: fsck's; it only keeps what it can reach.)
        if (pass === 'commits') {
          const known = corrupt.length;
          await marker.markCommit(c.checksum, false).catch(() => 0);
          corrupt.length = known;
        }
        continue;
      }
      pending.push({ ...c, size: info.size });
    }
    // On a remote store the sweep goes on gathering while the lock must stay free (REMOTE_PAUSE_MS after a
    // round), so the stats of the next candidates overlap the pause; up to MAX_PENDING held.
    const paused = remote && performance.now() < lastRound + REMOTE_PAUSE_MS && pending.length < MAX_PENDING;
    if (pending.length >= ROUND_OBJECTS && !paused) await flush();
  };
  for (const pass of ['commits', 'the rest'] as const) {
    progress(`sweeping objects/ (${pass})`);
    let lastLine = performance.now();
    for await (const key of repo.backend.list('objects')) {
      const o = parseObjectKey(key);
      if (!o) continue;
      if ((o.type === ObjectType.Commit) !== (pass === 'commits')) continue;
      report.scanned++;
      if (performance.now() - lastLine > 2000) {
        progress(`swept ${report.scanned} objects, ${report.deletedObjects + pending.length} unreachable`);
        lastLine = performance.now();
      }
      if (isKept(o.checksum, o.type)) continue;
      candidates.push({ key, ...o });
      if (candidates.length >= ROUND_OBJECTS) await classify(pass);
    }
    await classify(pass);
    await flush();
  }

  if (!opts.dryRun && commitsDeleted > 0) {
    report.deltas = await pruneDeltas(repo);
    if (report.deltas.length) await updateSummary(repo, opts.signer);
  }
  report.marked = set.size;
  report.markBytes = set.bytes;
  report.seconds = (now() - started) / 1000;
  progress(`${opts.dryRun ? 'would delete' : 'deleted'} ${report.deletedObjects} objects (${report.deletedBytes} bytes); kept ${report.young} younger than the grace window`);
  return report;
}

/** Probes of storeNow: `tmp/cairn-gc-clock-<pid>-<12 hex>`. */
const PROBE_NAME = /^tmp\/cairn-gc-clock-\d{1,10}-[0-9a-f]{12}$/;

/** At most this many keys of tmp/ are looked at for stale probes (what ostree stages there is not gc's business). */
const PROBE_SCAN_LIMIT = 10_000;

/**
 * Removes the clock probes (storeNow) older than STALE_PROBE_MS by `nowMs`
 * (the store's clock) that a gc killed between writing and removing one left
 * in tmp/: a listing of tmp/ (up to PROBE_SCAN_LIMIT keys), a stat of each
 * probe found. Housekeeping: a failure is reported, never fails the gc.
 */
async function removeStaleProbes(backend: Backend, nowMs: number, progress: (line: string) => void): Promise<void> {
  try {
    const stale: string[] = [];
    let seen = 0;
    for await (const key of backend.list('tmp')) {
      if (++seen > PROBE_SCAN_LIMIT) break;
      if (!PROBE_NAME.test(key)) continue;
      const info = await backend.stat(key);
      if (info && nowMs - info.mtimeMs > STALE_PROBE_MS) stale.push(key);
    }
    if (stale.length === 0) return;
    await backend.removeMany(stale);
    progress(`removed ${stale.length} clock probe(s) older than an hour left in tmp/ by a gc that was stopped`);
  } catch (e) {
    progress(`stale clock probes in tmp/ not removed: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * "Now" by the clock of the store's mtimes: the Last-Modified of a probe
 * object written into the repository's tmp/ (and removed). Falls back to
 * this host's clock (`fallback`) when the probe cannot be written (a store
 * this process may only read: a dry run).
 */
export async function storeNow(backend: Backend, fallback: number): Promise<{ nowMs: number; how: string }> {
  const key = `tmp/cairn-gc-clock-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    await backend.write(key, Buffer.from('the store\'s clock, for cairn gc\n'));
    const info = await backend.stat(key);
    if (info && info.mtimeMs > 0) return { nowMs: info.mtimeMs, how: "the store's clock" };
  } catch {
    // reported below: this host's clock
  } finally {
    await backend.remove(key).catch(() => undefined);
  }
  return { nowMs: fallback, how: "this host's clock: the store took no probe object" };
}
