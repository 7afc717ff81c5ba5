import type { Backend } from '../../storage/backends/backend';
import { deltaName } from '../../storage/deltas/format';
import { listDeltaRecordKeys, readDeltaRecord, recordJobId, type DeltaRecord } from '../../storage/jobs/records';
import { DELTA_JOB, deltaJobKey, type DeltaJobParams, type DeltaJobResult } from './delta-job';
import type { Job, JobFilter, JobState } from './queue';

/**
 * The jobs every replica shows alike: this replica's queue merged with the
 * delta jobs' durable records (storage/jobs/records.ts), which every replica
 * on one store shares. A delta job's id is its record's (records.ts
 * deltaJobId), so an id one replica answered names the same job on all.
 *
 * Merging, per id (`mergeJob`):
 * - a job this replica runs or ran itself (running here, or finished here
 *   after running) is shown as its queue has it (progress, result), and so is
 *   a job queued here whose record is queued too (its position and priority
 *   here);
 * - otherwise the record says what happens: a job queued here that another
 *   replica runs or finished, and a job left here to another replica (done
 *   here at once with `result.ranBy`), show the record's state, owner and
 *   times; a record not in this queue at all shows as it is (a queued one with
 *   its priority and no position);
 * - a record `cancelled` shows as `failed` with its error (OBSOLETE), as the
 *   queue shows cancelled jobs.
 * No id appears twice; a record whose delta has an active job here under
 * another id (an older generation, a rare race) is left out of listings.
 *
 * The records are read at most once per `intervalMs` (RecordSnapshots) and at
 * most `maxRecords` of them, the bound of the durable layer's own scans.
 */

/** One record as listed: its key, job id and content. */
export interface RecordEntry {
  key: string;
  id: string;
  rec: DeltaRecord;
}

export interface RecordSnapshot {
  /** When its listing began (this process's clock). */
  startedAt: number;
  entries: RecordEntry[];
  byId: Map<string, RecordEntry>;
}

/** Reads records at most this many at once. */
const READS_AT_ONCE = 8;

/**
 * The records of a store, listed at most once per `intervalMs` (callers at
 * the same time share one listing): `recent()` answers a listing begun at
 * most `intervalMs` before it was asked; `since(t)` one begun at or after
 * `t`, waiting for the interval to allow it (a job id not found in a listing
 * older than the request: GET /api/jobs/:id right after another replica
 * answered it).
 */
export class RecordSnapshots {
  private last: RecordSnapshot | undefined;
  private inFlight: { startedAt: number; done: Promise<RecordSnapshot> } | undefined;
  private lastStart = -Infinity;

  constructor(
    private readonly store: Backend,
    private readonly maxRecords: number,
    private readonly intervalMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  async recent(): Promise<RecordSnapshot> {
    const t = this.now();
    if (this.last && t - this.last.startedAt <= this.intervalMs) return this.last;
    if (this.inFlight && t - this.inFlight.startedAt <= this.intervalMs) return this.inFlight.done;
    return this.since(t - this.intervalMs);
  }

  async since(t: number): Promise<RecordSnapshot> {
    for (;;) {
      if (this.last && this.last.startedAt >= t) return this.last;
      if (this.inFlight) {
        if (this.inFlight.startedAt >= t) return this.inFlight.done;
        await this.inFlight.done.catch(() => undefined);
        continue;
      }
      const wait = this.lastStart + this.intervalMs - this.now();
      if (wait > 0) {
        await new Promise((r) => setTimeout(r, wait));
        continue;
      }
      const startedAt = this.now();
      this.lastStart = startedAt;
      const done = this.list(startedAt);
      this.inFlight = { startedAt, done };
      try {
        this.last = await done;
      } finally {
        if (this.inFlight?.done === done) this.inFlight = undefined;
      }
      return this.last;
    }
  }

  private async list(startedAt: number): Promise<RecordSnapshot> {
    const keys = await listDeltaRecordKeys(this.store, this.maxRecords);
    const entries: RecordEntry[] = [];
    let next = 0;
    const reader = async (): Promise<void> => {
      while (next < keys.length) {
        const key = keys[next++]!;
        const r = await readDeltaRecord(this.store, key).catch(() => null);
        if (r?.record) entries.push({ key, id: recordJobId(key, r.record), rec: r.record });
      }
    };
    await Promise.all(Array.from({ length: Math.min(READS_AT_ONCE, keys.length) }, reader));
    return { startedAt, entries, byId: new Map(entries.map((e) => [e.id, e])) };
  }
}

/** Whether the queue's own view of `j` is the truth: it runs here, ran here, or waits here as its record does. */
function localWins(j: Job, rec: DeltaRecord | undefined): boolean {
  if (j.kind !== DELTA_JOB) return true;
  if (j.state === 'running') return true;
  if (j.state === 'queued') return !rec || rec.state === 'queued';
  // Finished: left to another replica at once (ranBy), or ended on another replica's word (never started a run here).
  const ranBy = (j.result as DeltaJobResult | undefined)?.ranBy;
  if (ranBy) return !rec;
  return true;
}

/** The API's view of local job `j` (a copy), with its record `rec` if known. */
function localView(j: Job, rec: DeltaRecord | undefined, replica: string): Job {
  const v: Job = { ...j };
  if (rec) v.createdAt = rec.createdAt;
  const ranHere = j.state === 'running' || (j.state !== 'queued' && j.startedAt !== undefined && !(j.result as DeltaJobResult | undefined)?.ranBy);
  if (rec?.owner !== undefined && j.state !== 'running') v.owner = rec.owner;
  else if (ranHere) v.owner = replica;
  return v;
}

/** A record as a job (another replica's, or one this queue does not hold). */
export function recordJob(e: RecordEntry, replica: string): Job<DeltaJobParams, DeltaJobResult> {
  const r = e.rec;
  const state: JobState = r.state === 'cancelled' ? 'failed' : r.state;
  const params: DeltaJobParams = { repo: r.repo, from: r.from, to: r.to };
  const job: Job<DeltaJobParams, DeltaJobResult> = {
    id: e.id,
    kind: DELTA_JOB,
    key: deltaJobKey(r.repo, r.from, r.to),
    repo: r.repo,
    source: r.source,
    params,
    state,
    createdAt: r.createdAt,
    priority: r.priority,
  };
  if (r.startedAt && r.state !== 'queued') job.startedAt = r.startedAt;
  if (r.finishedAt && (r.state === 'done' || r.state === 'failed' || r.state === 'cancelled')) job.finishedAt = r.finishedAt;
  if (r.owner !== undefined && r.state !== 'queued') job.owner = r.owner;
  if (r.state === 'done') {
    job.result = { name: deltaName(r.from, r.to), from: r.from, to: r.to, existed: r.result?.existed ?? false, pruned: [] };
    if (r.result?.digest !== undefined) job.result.digest = r.result.digest;
    if (r.result?.totalSize !== undefined) job.result.totalSize = r.result.totalSize;
    if (r.result?.parts !== undefined) job.result.parts = r.result.parts;
    if (r.owner !== undefined && r.owner !== replica) job.result.ranBy = r.owner;
  }
  if (state === 'failed') job.error = r.error ?? (r.state === 'cancelled' ? { code: 'OBSOLETE', message: 'cancelled by a replica' } : { code: 'INTERNAL', message: 'failed on a replica' });
  return job;
}

/** One job by id: the local one and/or its record, merged (undefined when neither is known). */
export function mergeJob(local: Job | undefined, rec: RecordEntry | undefined, replica: string): Job | undefined {
  if (local && localWins(local, rec?.rec)) return localView(local, rec?.rec, replica);
  if (rec) return recordJob(rec, replica);
  return local && localView(local, undefined, replica);
}

/**
 * Local jobs (`local`, newest first, as JobQueue.list answers) and records merged, newest first (by
 * createdAt; the record's when it has one), filtered by `filter` after
 * merging (a state is the merged one).
 */
export function mergeJobs(local: Job[], records: RecordEntry[], replica: string, filter: JobFilter = {}): Job[] {
  const byId = new Map(records.map((e) => [e.id, e]));
  const activeKeys = new Set(local.filter((j) => j.state === 'queued' || j.state === 'running').map((j) => j.key));
  const out: Job[] = [];
  const ids = new Set<string>();
  for (const j of local) {
    ids.add(j.id);
    out.push(mergeJob(j, byId.get(j.id), replica)!);
  }
  for (const e of records) {
    if (ids.has(e.id)) continue;
    const job = recordJob(e, replica);
    if ((job.state === 'queued' || job.state === 'running') && activeKeys.has(job.key)) continue;
    out.push(job);
  }
  const kept = out.filter(
    (j) => (filter.repo === undefined || j.repo === filter.repo) && (filter.state === undefined || j.state === filter.state) && (filter.kind === undefined || j.kind === filter.kind),
  );
  // Stable: jobs created in the same millisecond keep the queue's order (newest first).
  const order = kept.map((j, i) => ({ j, i }));
  order.sort((x, y) => (x.j.createdAt < y.j.createdAt ? 1 : x.j.createdAt > y.j.createdAt ? -1 : x.i - y.i));
  kept.splice(0, kept.length, ...order.map((o) => o.j));
  return filter.limit === undefined ? kept : kept.slice(0, filter.limit);
}
