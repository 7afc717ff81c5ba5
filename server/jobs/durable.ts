import { randomUUID } from 'node:crypto';
import type { Backend } from '../../storage/backends/backend';
import {
  deltaJobId,
  deltaRecordKey,
  deltaRecordsPrefix,
  encodeDeltaRecord,
  isDeltaJobId,
  listDeltaRecordKeys,
  readDeltaRecord,
  recordJobId,
  swapDeltaRecord,
  type DeltaRecord,
  type DeltaRecordResult,
  type DeltaRecordState,
} from '../../storage/jobs/records';
import type { Logger } from '../logging';
import type { DeltaJobParams } from './delta-job';
import { PRIORITY_DEMOTED, type JobError } from './queue';

/**
 * Which replica runs a delta job: durable records with leases in the state
 * store (storage/jobs/records.ts), shared by every replica on one data
 * location — and used the same way on a data folder with one process, so
 * every jobs test drives this path. The local JobQueue still decides WHEN a
 * job runs here (priorities, concurrency, cancellation, the status API); this
 * decides WHETHER this replica runs it:
 *
 * - `enqueue`: a replica that queues a delta writes its record once (`create`:
 *   two replicas queueing the same delta make one record), state `queued`; a
 *   finished record of the same delta (done, failed, cancelled) is set back
 *   to `queued` by compare-and-swap (a new request). Either way the record gets
 *   a new job id (records.ts deltaJobId), which the local queue's job takes, so
 *   the id means the same job on every replica; a record found queued or
 *   running gives its own id (the same job).
 * - `claim` (when the local queue starts the job): `queued` → `running` with
 *   this replica as `owner`, by compare-and-swap on the version read, so
 *   exactly one replica wins; a delta whose superblock is already there is
 *   marked `done` without running (another replica finished it); a record
 *   `running` under another owner is left to it ('elsewhere') unless its
 *   lease ran out, then it is taken over the same way.
 * - Leases: the owner rewrites its record every `renewMs` (its version
 *   changes). Another replica judges a lease by its own clock only (as
 *   S3Backend.lock): a running record whose version it has seen unchanged for
 *   `leaseMs` is expired. An owner whose renewal finds the record changed by
 *   someone else stops its work: taken over, or cancelled as obsolete.
 * - The scanner (every `scanMs`, and at once on start: jobs survive restarts)
 *   lists the records and hands `queued` ones, and `running` ones whose lease
 *   expired, to the local queue (when it has room); finished records unchanged
 *   for `keepFinishedMs` are removed (bounded: at most `maxRecords` looked at
 *   per scan).
 * - A stopping replica sets its running records back to `queued` (another
 *   replica, or itself after a restart, picks them up at once); its queued
 *   ones stay queued.
 * - Obsolete jobs (a newer ref move, server/jobs/deltas.ts dropObsolete): the
 *   record goes to `cancelled` by compare-and-swap (queued automatic ones, and
 *   running automatic from-scratch ones of other replicas, whose owner stops
 *   at its next renewal); queued explicit ones are demoted.
 *
 * The bound, as for the store's locks: an owner whose renewals all fail for
 * longer than the lease (paused, cut off from the store) can be taken over
 * while it still compiles; both then write the same immutable delta (its
 * superblock written last, ALREADY_EXISTS for the second) and the loser stops
 * at its next renewal.
 */

export interface DurableJobsOptions {
  /** How long a running record may stay unchanged before another replica takes it over; default 20 s. */
  leaseMs?: number;
  /** How often the owner renews; default a quarter of the lease. */
  renewMs?: number;
  /** How often the store's records are looked at; default a quarter of the lease. */
  scanMs?: number;
  /** How long finished records stay (unchanged) before they are removed; default 10 min. */
  keepFinishedMs?: number;
  /** Records looked at per scan at most; default 10,000. */
  maxRecords?: number;
}

export interface DurableHooks {
  /** Whether the delta's superblock is in the repository. */
  deltaExists(p: DeltaJobParams): Promise<boolean>;
  /** Whether the local queue has this delta queued or running. */
  isActive(p: DeltaJobParams): boolean;
  /** Hands a record to the local queue: 'queued', 'skipped' (the queue keeps it from running now: a recent local failure), or 'no-room' (full or closed). */
  submit(r: DeltaRecord): 'queued' | 'skipped' | 'no-room';
  log(): Logger;
}

export type Claim =
  /** This replica runs it, under `lease` (`takeover`: from an owner whose lease ran out). */
  | { kind: 'run'; lease: Lease; takeover: boolean }
  /** The delta exists: nothing to compile (the record is done). */
  | { kind: 'exists' }
  /** Another replica runs it (or just did). */
  | { kind: 'elsewhere'; owner: string }
  /** A replica cancelled it (obsolete) or its run failed there. */
  | { kind: 'cancelled' | 'failed'; error: JobError };

export type LeaseOutcome = { state: 'done'; result?: DeltaRecordResult } | { state: 'failed' | 'cancelled'; error: JobError } | { state: 'queued' };

export interface Lease {
  /** Aborted when the lease is lost: taken over, or the record cancelled. */
  readonly signal: AbortSignal;
  /** Why the lease was lost, if it was. */
  lost(): 'taken' | 'cancelled' | null;
  /** Stops renewing and records the outcome (nothing when the lease was lost). */
  finish(outcome: LeaseOutcome): Promise<void>;
}

const AUTOMATIC = new Set(['policy', 'on-demand']);
const FINISHED: ReadonlySet<DeltaRecordState> = new Set(['done', 'failed', 'cancelled']);

export class DurableDeltaRecords {
  /** This replica: random per process start (a restarted process is a new replica). */
  readonly replica = randomUUID();
  readonly leaseMs: number;
  private readonly renewMs: number;
  private readonly scanMs: number;
  private readonly keepFinishedMs: number;
  /** Records looked at per scan (and per listing of the jobs API: server/jobs/shared-view.ts) at most. */
  readonly maxRecords: number;
  /** Each record's version and since when (this replica's clock) it has been seen unchanged. */
  private readonly observed = new Map<string, { version: string; since: number }>();
  /** Records this replica holds a lease on. */
  private readonly held = new Set<string>();
  /** Records being written by `enqueue` (a claim waits for them). */
  private readonly creating = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly store: Backend,
    private readonly hooks: DurableHooks,
    opts: DurableJobsOptions = {},
  ) {
    this.leaseMs = opts.leaseMs ?? 20_000;
    if (!(this.leaseMs >= 1)) throw new Error('leaseMs must be ≥ 1');
    this.renewMs = opts.renewMs ?? Math.max(1, Math.floor(this.leaseMs / 4));
    this.scanMs = opts.scanMs ?? Math.max(1, Math.floor(this.leaseMs / 4));
    this.keepFinishedMs = opts.keepFinishedMs ?? 10 * 60_000;
    this.maxRecords = opts.maxRecords ?? 10_000;
  }

  private get log(): Logger {
    return this.hooks.log();
  }

  /** Starts the scanner: a scan now (records left by stopped or crashed replicas), then every scanMs. */
  start(): void {
    if (this.timer || this.stopped) return;
    const tick = (): void => {
      this.scanning = this.scan()
        .catch((e: unknown) => this.log.warn('delta job records scan failed', { err: errText(e) }))
        .finally(() => {
          this.scanning = undefined;
          if (!this.stopped) {
            this.timer = setTimeout(tick, this.scanMs);
            this.timer.unref();
          }
        });
    };
    this.timer = setTimeout(tick, 0);
    this.timer.unref();
  }

  /** Stops the scanner (leases are finished by their jobs). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.scanning;
    await Promise.all(this.creating.values());
  }

  /**
   * Records that `p` is to be queued (see the class comment) and answers the
   * job id the local queue's job must take: the record's. Never throws: when
   * the store cannot be written, a new id (the claim writes the record with it).
   */
  enqueue(p: DeltaJobParams, priority: number, source: string): Promise<string> {
    const key = deltaRecordKey(p.repo, p.from, p.to);
    const id = deltaJobId(key);
    let answer = id;
    const work = (async () => {
      const now = new Date().toISOString();
      const fresh: DeltaRecord = { repo: p.repo, from: p.from, to: p.to, priority, source, state: 'queued', attempts: 0, job: id, createdAt: now, updatedAt: now };
      for (let i = 0; i < 3; i++) {
        if (await this.store.create(key, encodeDeltaRecord(fresh))) return;
        const cur = await readDeltaRecord(this.store, key);
        if (cur && cur.record && !FINISHED.has(cur.record.state)) {
          answer = recordJobId(key, cur.record); // queued or running: one job
          return;
        }
        if ((await swapDeltaRecord(this.store, key, fresh, cur?.version ?? null)) !== null) return;
      }
    })()
      .catch((e: unknown) => this.log.warn('delta job record not written', { repo: p.repo, delta: key, err: errText(e) }))
      .finally(() => {
        if (this.creating.get(key) === work) this.creating.delete(key);
      });
    this.creating.set(key, work);
    return work.then(() => answer);
  }

  /** Decides whether this replica runs `p` now (see Claim); called when the local queue starts the job. */
  async claim(p: DeltaJobParams, job: { id: string; source?: string; priority: number }): Promise<Claim> {
    const key = deltaRecordKey(p.repo, p.from, p.to);
    await this.creating.get(key);
    for (let i = 0; i < 8; i++) {
      const cur = await readDeltaRecord(this.store, key);
      const rec = cur?.record ?? null;
      const seen = cur ? this.observe(key, cur.version) : undefined;
      let previous: string | undefined;
      if (rec?.state === 'cancelled') return { kind: 'cancelled', error: rec.error ?? { code: 'OBSOLETE', message: 'cancelled by another replica' } };
      if (rec?.state === 'failed' && rec.owner !== this.replica) return { kind: 'failed', error: rec.error ?? { code: 'INTERNAL', message: 'failed on another replica' } };
      if (rec?.state === 'running') {
        if (rec.owner === this.replica && this.held.has(key)) return { kind: 'elsewhere', owner: this.replica };
        if (rec.owner !== this.replica && Date.now() - seen!.since < this.leaseMs) return { kind: 'elsewhere', owner: rec.owner ?? 'unknown' };
        previous = rec.owner;
      }
      const now = new Date().toISOString();
      if (await this.hooks.deltaExists(p)) {
        if (cur && rec?.state !== 'done') await swapDeltaRecord(this.store, key, { ...(rec ?? this.fresh(key, p, job, now)), state: 'done', owner: this.replica, result: { existed: true }, updatedAt: now, finishedAt: now }, cur.version).catch(() => null);
        return { kind: 'exists' };
      }
      const next: DeltaRecord = {
        ...(rec ?? this.fresh(key, p, job, now)),
        state: 'running',
        owner: this.replica,
        renewals: 0,
        attempts: (rec?.attempts ?? 0) + 1,
        startedAt: now,
        updatedAt: now,
        error: undefined,
        result: undefined,
        finishedAt: undefined,
      };
      const version = await swapDeltaRecord(this.store, key, next, cur?.version ?? null);
      if (version === null) continue; // changed meanwhile: look again
      const fields = { repo: p.repo, delta: key, replica: this.replica, attempt: next.attempts };
      if (previous !== undefined) this.log.warn('delta job taken over', { ...fields, previous_owner: previous, lease_ms: this.leaseMs });
      else this.log.info('delta job claimed', fields);
      return { kind: 'run', lease: this.hold(key, next, version), takeover: previous !== undefined };
    }
    return { kind: 'elsewhere', owner: 'unknown' };
  }

  /**
   * After refs of `repo` moved: records of `repo` whose `to` is no longer the
   * head of a ref (`heads`, read after the records, so a record written for a
   * newer move is never judged by older heads: its version differs and the
   * compare-and-swap fails). Queued automatic ones are cancelled, queued
   * explicit ones demoted, running automatic from-scratch ones of other
   * replicas cancelled when `cancelRunning` (their owners stop at their next
   * renewal; this replica's own are cancelled through its queue).
   */
  async dropObsolete(repo: string, heads: () => Promise<Set<string>>, opts: { cancelRunning: boolean }): Promise<void> {
    const read: Array<{ key: string; version: string; rec: DeltaRecord }> = [];
    for (const key of await listDeltaRecordKeys(this.store, this.maxRecords, deltaRecordsPrefix(repo))) {
      const r = await readDeltaRecord(this.store, key).catch(() => null);
      if (r?.record && (r.record.state === 'queued' || r.record.state === 'running')) read.push({ key, version: r.version, rec: r.record });
    }
    if (read.length === 0) return;
    const current = await heads();
    for (const { key, version, rec } of read) {
      if (current.has(rec.to)) continue;
      const automatic = AUTOMATIC.has(rec.source);
      const now = new Date().toISOString();
      const cancelled: DeltaRecord = { ...rec, state: 'cancelled', error: { code: 'OBSOLETE', message: `${rec.to} is no longer the head of a ref of ${repo}` }, updatedAt: now, finishedAt: now };
      let next: DeltaRecord | undefined;
      if (rec.state === 'queued' && automatic) next = cancelled;
      else if (rec.state === 'queued' && rec.priority < PRIORITY_DEMOTED) next = { ...rec, priority: PRIORITY_DEMOTED, updatedAt: now };
      else if (rec.state === 'running' && opts.cancelRunning && automatic && rec.from === null && rec.owner !== this.replica) next = cancelled;
      if (!next) continue;
      const v = await swapDeltaRecord(this.store, key, next, version).catch(() => null);
      if (v !== null) this.log.info(`obsolete delta job record ${next.state === 'cancelled' ? 'cancelled' : 'demoted'}`, { repo, delta: key, source: rec.source, owner: rec.owner });
    }
  }

  /** A record for a job queued here whose record is missing (its enqueue could not write it, or it was removed): under the job's id. */
  private fresh(key: string, p: DeltaJobParams, job: { id: string; source?: string; priority: number }, now: string): DeltaRecord {
    const id = isDeltaJobId(job.id) ? job.id : deltaJobId(key);
    return { repo: p.repo, from: p.from, to: p.to, priority: job.priority, source: job.source ?? 'unknown', state: 'queued', attempts: 0, job: id, createdAt: now, updatedAt: now };
  }

  /** Notes `version` of `key`; returns since when it has been seen unchanged. */
  private observe(key: string, version: string): { version: string; since: number } {
    let o = this.observed.get(key);
    if (!o || o.version !== version) {
      o = { version, since: Date.now() };
      this.observed.set(key, o);
    }
    return o;
  }

  private hold(key: string, rec: DeltaRecord, version: string): Lease {
    const abort = new AbortController();
    let cur = { rec, version };
    let lost: 'taken' | 'cancelled' | null = null;
    let stopped = false;
    let chain: Promise<void> = Promise.resolve();
    this.held.add(key);
    const renew = (): void => {
      chain = chain.then(async () => {
        if (stopped || lost) return;
        const next = { ...cur.rec, renewals: (cur.rec.renewals ?? 0) + 1, updatedAt: new Date().toISOString() };
        let v: string | null;
        try {
          v = await swapDeltaRecord(this.store, key, next, cur.version);
        } catch {
          return; // the store unreachable: again at the next beat (the lease may run out meanwhile)
        }
        if (v !== null) {
          cur = { rec: next, version: v };
          return;
        }
        const now = await readDeltaRecord(this.store, key).catch(() => undefined);
        if (now === undefined) return;
        lost = now?.record?.state === 'cancelled' ? 'cancelled' : 'taken';
        clearInterval(timer);
        this.log.warn(lost === 'cancelled' ? 'delta job cancelled by another replica' : 'delta job lease lost', { repo: rec.repo, delta: key, replica: this.replica, owner: now?.record?.owner });
        abort.abort();
      });
    };
    const timer = setInterval(renew, this.renewMs);
    timer.unref();
    return {
      signal: abort.signal,
      lost: () => lost,
      finish: async (outcome) => {
        stopped = true;
        clearInterval(timer);
        await chain;
        this.held.delete(key);
        if (lost) return;
        const now = new Date().toISOString();
        const next: DeltaRecord = { ...cur.rec, state: outcome.state, updatedAt: now, error: 'error' in outcome ? outcome.error : undefined, result: 'result' in outcome ? outcome.result : undefined };
        if (outcome.state === 'queued') {
          next.owner = undefined;
          next.startedAt = undefined;
        } else next.finishedAt = now;
        const v = await swapDeltaRecord(this.store, key, next, cur.version).catch((e: unknown) => {
          this.log.warn('delta job record not updated', { repo: rec.repo, delta: key, state: outcome.state, err: errText(e) });
          return null;
        });
        if (v !== null && outcome.state === 'queued') this.log.info('delta job handed back', { repo: rec.repo, delta: key, replica: this.replica });
      },
    };
  }

  private async scan(): Promise<void> {
    const keys = await listDeltaRecordKeys(this.store, this.maxRecords);
    const seen = new Set<string>();
    let room = true;
    for (const key of keys) {
      if (this.stopped) return;
      const r = await readDeltaRecord(this.store, key).catch(() => null);
      if (!r) continue;
      seen.add(key);
      const age = Date.now() - this.observe(key, r.version).since;
      const rec = r.record;
      if (!rec || FINISHED.has(rec.state)) {
        // Finished (or unreadable) and left alone long enough: gone. A replica that
        // queues the delta again meanwhile writes it anew (its claim does if need be).
        if (age >= this.keepFinishedMs) {
          await this.store.remove(key).catch(() => undefined);
          this.observed.delete(key);
        }
        continue;
      }
      const p = { repo: rec.repo, from: rec.from, to: rec.to };
      if (!room || this.hooks.isActive(p) || this.held.has(key)) continue;
      if (rec.state === 'running' && age < this.leaseMs) continue;
      if (rec.state === 'running') this.log.warn('delta job lease expired', { repo: rec.repo, delta: key, owner: rec.owner, unchanged_ms: age, replica: this.replica });
      const got = this.hooks.submit(rec);
      if (got === 'no-room') room = false;
      else if (got === 'queued' && rec.state === 'queued') this.log.info('delta job picked up from the store', { repo: rec.repo, delta: key, replica: this.replica });
    }
    for (const k of this.observed.keys()) if (!seen.has(k)) this.observed.delete(k);
  }
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
