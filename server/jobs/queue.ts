import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';

/**
 * One bounded, in-process queue for background work (static deltas today).
 *
 * - Bounded: at most `maxQueued` jobs wait; beyond that `submit` refuses with
 *   status 'full' instead of growing without limit — callers decide what a
 *   refusal means (on-demand deltas just skip, the API answers 503).
 * - Deduplicated by key: submitting a key that is already queued or running
 *   returns that job ('duplicate'), and a key whose last run failed is not
 *   retried for `failedCooldownMs` unless asked (so a delta that cannot be
 *   built is not rebuilt on every request).
 * - Records (id, kind, key, state, timestamps, progress, result/error) stay
 *   for `keepFinishedMs` (and at most `keepFinished` of them) for the status API.
 * - Prioritised: each job has a priority (an integer, lower runs first; the
 *   delta jobs use PRIORITY_*); when a slot frees, the most urgent queued job
 *   starts, first in first out within a priority. Queued jobs carry their
 *   1-based `position` in that run order. A queued job can be re-prioritised,
 *   and a queued or running one cancelled (`cancel`: dropped, or its signal
 *   aborted) — the callers decide when (server/jobs/deltas.ts: obsolete deltas).
 *
 * The queue only schedules: a job kind's `run` decides where the work runs
 * (CPU-heavy parts go to worker threads, see worker.ts), so the queue itself
 * never blocks the event loop.
 */

export type JobState = 'queued' | 'running' | 'done' | 'failed';

export interface JobProgress {
  /** Units of work done so far (objects, bytes, steps: the kind decides). */
  done: number;
  total?: number;
  /** Current phase, e.g. 'compiling', 'summary'. */
  phase?: string;
}

export interface JobError {
  code: string;
  message: string;
}

export interface Job<P = unknown, R = unknown> {
  id: string;
  kind: string;
  /** Deduplication key (e.g. `delta:REPO:FROM-TO`). */
  key: string;
  /** Repository the job works on, for filtering. */
  repo?: string;
  /** Who asked: 'policy', 'on-demand', 'api', 'cli', a test… */
  source?: string;
  params: P;
  state: JobState;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  progress?: JobProgress;
  result?: R;
  error?: JobError;
  /** Lower runs first (see PRIORITY_*); FIFO within a priority. */
  priority: number;
  /** While queued: 1-based place in the run order (1 starts next). */
  position?: number;
  /**
   * The replica that runs or ran the job (delta jobs: the owner of its durable
   * record, server/jobs/shared-view.ts); set only on the views the jobs API
   * shows, never by the queue.
   */
  owner?: string;
}

/**
 * The priorities of delta jobs (any integer works for the queue): what hosts
 * need now first. storage/deltas/plan.ts and server/jobs/deltas.ts assign them.
 */
/** From the ref's previous head to its new head; explicit requests (on demand, API, CLI) to a current head. */
export const PRIORITY_NOW = 0;
/** From older previous commits of the ref; explicit requests to a commit that is no ref's head. */
export const PRIORITY_OLDER = 1;
/** From scratch (fresh installs: they can also pull objects). */
export const PRIORITY_SCRATCH = 2;
/** Demoted: jobs a newer move of the ref made less useful, after everything else. */
export const PRIORITY_DEMOTED = 3;

/**
 * Jobs at once when nothing says otherwise (`cairn serve`'s
 * CAIRN_JOBS_CONCURRENCY): each delta job keeps a core busy in its worker
 * thread, so leave one core to the requests and half the rest to them too —
 * floor((cpus - 1) / 2), at least 1 (1 on 1 to 4 cores, 3 on 8) — and at most
 * 8, since each compile holds its own memory and a repository's summary
 * updates are serialised anyway.
 */
export function defaultJobConcurrency(cpus: number): number {
  if (!Number.isFinite(cpus) || cpus < 1) return 1;
  return Math.min(8, Math.max(1, Math.floor((Math.floor(cpus) - 1) / 2)));
}

/** What a running job may use. */
export interface JobControl {
  readonly id: string;
  /** Aborted when the queue shuts down or the job is cancelled (`cancel`); kinds pass it on to their worker. */
  readonly signal: AbortSignal;
  progress(p: JobProgress): void;
}

export interface JobKind<P = unknown, R = unknown> {
  name: string;
  run(params: P, ctl: JobControl): Promise<R>;
}

export type SubmitOutcome<P = unknown, R = unknown> =
  | { status: 'queued'; job: Job<P, R> }
  /** The same key is queued or running (or failed recently): that job. */
  | { status: 'duplicate'; job: Job<P, R> }
  /** `maxQueued` jobs are already waiting. */
  | { status: 'full'; queued: number; limit: number }
  /** The queue is shutting down. */
  | { status: 'closed' };

export interface SubmitOptions {
  /**
   * The job's id (default a random UUID): delta jobs take their durable
   * record's (server/jobs/durable.ts), the same on every replica. A finished
   * record of this queue with that id is replaced (the same job queued again,
   * say handed back by a stopping replica).
   */
  id?: string;
  repo?: string;
  source?: string;
  /** Run again even if the last run of this key failed within the cooldown. */
  retryFailed?: boolean;
  /**
   * Lower runs first; default PRIORITY_NOW. A duplicate submission with a more
   * urgent priority promotes the queued job.
   */
  priority?: number;
}

export interface JobQueueOptions {
  /** Jobs waiting to run (not counting running ones); default 100. */
  maxQueued?: number;
  /** Jobs running at once; default 1 (each delta job occupies a core). */
  maxConcurrent?: number;
  /** Finished records kept at most; default 1000. */
  keepFinished?: number;
  /** How long finished records stay visible; default 1 h. */
  keepFinishedMs?: number;
  /** A failed key is not re-run within this time unless `retryFailed`; default 60 s. */
  failedCooldownMs?: number;
  /** For tests. */
  now?: () => number;
}

export interface JobFilter {
  repo?: string;
  state?: JobState;
  kind?: string;
  limit?: number;
}

/**
 * Events: 'submitted' (job), 'refused' (kind, outcome status), 'started' (job),
 * 'progress' (job), 'finished' (job, durationMs). Metrics listen to these.
 */
export class JobQueue extends EventEmitter {
  readonly maxQueued: number;
  readonly maxConcurrent: number;
  private readonly keepFinished: number;
  private readonly keepFinishedMs: number;
  private readonly failedCooldownMs: number;
  private readonly now: () => number;

  private readonly kinds = new Map<string, JobKind<any, any>>();
  /** Every known record by id, oldest first (Map keeps insertion order). */
  private readonly jobs = new Map<string, Job>();
  /** Queued or running job by key. */
  private readonly active = new Map<string, Job>();
  /** Last failure by key: the job and when it finished. */
  private readonly failures = new Map<string, { job: Job; at: number }>();
  /** Queued jobs in run order: by priority, then submission order (`seq`). */
  private readonly waiting: Job[] = [];
  private readonly seq = new Map<string, number>();
  private nextSeq = 0;
  private readonly running = new Map<string, { abort: AbortController; done: Promise<void>; cancelled?: JobError }>();
  private closed = false;
  private idleWaiters: Array<() => void> = [];

  constructor(opts: JobQueueOptions = {}) {
    super();
    this.maxQueued = positive(opts.maxQueued ?? 100, 'maxQueued', true);
    this.maxConcurrent = positive(opts.maxConcurrent ?? 1, 'maxConcurrent', false);
    this.keepFinished = opts.keepFinished ?? 1000;
    this.keepFinishedMs = opts.keepFinishedMs ?? 60 * 60 * 1000;
    this.failedCooldownMs = opts.failedCooldownMs ?? 60 * 1000;
    this.now = opts.now ?? Date.now;
  }

  register<P, R>(kind: JobKind<P, R>): this {
    if (this.kinds.has(kind.name)) throw new Error(`job kind ${kind.name} is already registered`);
    this.kinds.set(kind.name, kind);
    return this;
  }

  hasKind(name: string): boolean {
    return this.kinds.has(name);
  }

  submit<P, R>(kindName: string, key: string, params: P, opts: SubmitOptions = {}): SubmitOutcome<P, R> {
    if (!this.kinds.has(kindName)) throw new Error(`unknown job kind ${kindName}`);
    if (this.closed) return this.refuse(kindName, { status: 'closed' });
    const priority = opts.priority ?? PRIORITY_NOW;
    if (!Number.isInteger(priority)) throw new Error('priority must be an integer');
    const existing = this.active.get(key);
    if (existing) {
      if (priority < existing.priority) this.reprioritize(existing.id, priority);
      return { status: 'duplicate', job: existing as Job<P, R> };
    }
    const failed = this.failures.get(key);
    if (failed && !opts.retryFailed && this.now() - failed.at < this.failedCooldownMs) return { status: 'duplicate', job: failed.job as Job<P, R> };
    if (this.waiting.length >= this.maxQueued) return this.refuse(kindName, { status: 'full', queued: this.waiting.length, limit: this.maxQueued });
    const id = opts.id ?? randomUUID();
    const old = this.jobs.get(id);
    if (old && !old.finishedAt) return { status: 'duplicate', job: old as Job<P, R> };
    if (old) this.jobs.delete(id);

    const job: Job<P, R> = {
      id,
      kind: kindName,
      key,
      repo: opts.repo,
      source: opts.source,
      params,
      state: 'queued',
      createdAt: new Date(this.now()).toISOString(),
      priority,
    };
    this.jobs.set(job.id, job as Job);
    this.active.set(key, job as Job);
    this.seq.set(job.id, this.nextSeq++);
    this.enqueue(job as Job);
    this.emit('submitted', job);
    this.trim();
    // Start on the next tick: the caller gets its answer (202, a log line) before any work begins.
    queueMicrotask(() => this.pump());
    return { status: 'queued', job };
  }

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  /** Whether `submit` of `key` would queue a new job now (no job of the key active or failed within the cooldown, room, open); changes nothing. */
  wouldQueue(key: string, opts: { retryFailed?: boolean } = {}): boolean {
    if (this.closed || this.active.has(key) || this.waiting.length >= this.maxQueued) return false;
    const failed = this.failures.get(key);
    return !(failed && !opts.retryFailed && this.now() - failed.at < this.failedCooldownMs);
  }

  /** Newest first. */
  list(filter: JobFilter = {}): Job[] {
    this.trim();
    const out: Job[] = [];
    const all = [...this.jobs.values()].reverse();
    for (const j of all) {
      if (filter.repo !== undefined && j.repo !== filter.repo) continue;
      if (filter.state !== undefined && j.state !== filter.state) continue;
      if (filter.kind !== undefined && j.kind !== filter.kind) continue;
      out.push(j);
      if (filter.limit !== undefined && out.length >= filter.limit) break;
    }
    return out;
  }

  /** Queued jobs in the order they will start (the next first). */
  queued(): Job[] {
    return [...this.waiting];
  }

  /**
   * Moves a queued job to `priority`, placed among that priority's jobs by
   * submission order (first in, first out). False if the job is not queued.
   */
  reprioritize(id: string, priority: number): boolean {
    if (!Number.isInteger(priority)) throw new Error('priority must be an integer');
    const i = this.waiting.findIndex((j) => j.id === id);
    if (i < 0) return false;
    const [job] = this.waiting.splice(i, 1);
    job!.priority = priority;
    this.enqueue(job!);
    return true;
  }

  /**
   * Cancels a job with `error` (its code says why, e.g. OBSOLETE): a queued one
   * is dropped at once ('dropped'); a running one has its signal aborted
   * ('aborted') and fails with `error` when its kind gives up (a kind that
   * ignores the signal may still finish 'done'). Neither counts as a failure
   * of the key: submitting it again runs at once, no cooldown. False for a job
   * that is not queued or running.
   */
  cancel(id: string, error: JobError): 'dropped' | 'aborted' | false {
    const i = this.waiting.findIndex((j) => j.id === id);
    if (i >= 0) {
      const [job] = this.waiting.splice(i, 1);
      this.renumber();
      this.finish(job!, undefined, error, 0, false);
      queueMicrotask(() => this.pump());
      return 'dropped';
    }
    const r = this.running.get(id);
    if (!r) return false;
    if (!r.cancelled) {
      r.cancelled = { ...error };
      r.abort.abort();
    }
    return 'aborted';
  }

  /** The job of `key` if it is queued or running. */
  activeJob(key: string): Job | undefined {
    return this.active.get(key);
  }

  stats(): { queued: number; running: number; maxQueued: number; maxConcurrent: number } {
    return { queued: this.waiting.length, running: this.running.size, maxQueued: this.maxQueued, maxConcurrent: this.maxConcurrent };
  }

  /** Resolves once nothing is queued or running (tests, `cairn delta`, shutdown). */
  idle(): Promise<void> {
    if (this.waiting.length === 0 && this.running.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stops accepting jobs; queued ones fail with CANCELLED. Running ones are
   * aborted (their workers terminated) unless `drain`, which waits for them.
   */
  async close(opts: { drain?: boolean } = {}): Promise<void> {
    this.closed = true;
    for (const job of this.waiting.splice(0)) this.finish(job, undefined, { code: 'CANCELLED', message: 'the job queue was closed before this job ran' }, 0);
    this.renumber();
    if (!opts.drain) for (const r of this.running.values()) r.abort.abort();
    await Promise.all([...this.running.values()].map((r) => r.done));
  }

  private refuse<P, R>(kind: string, outcome: SubmitOutcome<P, R>): SubmitOutcome<P, R> {
    this.emit('refused', kind, outcome.status);
    return outcome;
  }

  /** Inserts `job` into `waiting` by (priority, submission order), then renumbers positions. */
  private enqueue(job: Job): void {
    const s = this.seq.get(job.id)!;
    let i = this.waiting.length;
    while (i > 0) {
      const prev = this.waiting[i - 1]!;
      if (prev.priority < job.priority || (prev.priority === job.priority && this.seq.get(prev.id)! < s)) break;
      i--;
    }
    this.waiting.splice(i, 0, job);
    this.renumber();
  }

  private renumber(): void {
    this.waiting.forEach((j, i) => (j.position = i + 1));
  }

  private pump(): void {
    let started = false;
    while (this.running.size < this.maxConcurrent && this.waiting.length > 0) {
      const job = this.waiting.shift()!;
      delete job.position;
      started = true;
      this.start(job);
    }
    if (started) this.renumber();
    this.checkIdle();
  }

  private start(job: Job): void {
    const kind = this.kinds.get(job.kind)!;
    const abort = new AbortController();
    const started = this.now();
    job.state = 'running';
    job.startedAt = new Date(started).toISOString();
    this.emit('started', job);
    const ctl: JobControl = {
      id: job.id,
      signal: abort.signal,
      progress: (p) => {
        job.progress = { ...p };
        this.emit('progress', job);
      },
    };
    // In the map before the kind runs: a kind that throws at once still frees its slot.
    const entry: { abort: AbortController; done: Promise<void>; cancelled?: JobError } = { abort, done: Promise.resolve() };
    this.running.set(job.id, entry);
    entry.done = (async () => {
      try {
        const result = await kind.run(job.params, ctl);
        this.finish(job, result, undefined, this.now() - started);
      } catch (e) {
        if (entry.cancelled) this.finish(job, undefined, entry.cancelled, this.now() - started, false);
        else this.finish(job, undefined, toJobError(e, abort.signal.aborted), this.now() - started);
      } finally {
        this.running.delete(job.id);
        this.pump();
      }
    })();
  }

  private finish(job: Job, result: unknown, error: JobError | undefined, durationMs: number, recordFailure = true): void {
    job.finishedAt = new Date(this.now()).toISOString();
    delete job.position;
    this.seq.delete(job.id);
    if (error) {
      job.state = 'failed';
      job.error = error;
      if (recordFailure) this.failures.set(job.key, { job, at: this.now() });
    } else {
      job.state = 'done';
      job.result = result;
      this.failures.delete(job.key);
    }
    if (this.active.get(job.key) === job) this.active.delete(job.key);
    this.emit('finished', job, durationMs);
  }

  private checkIdle(): void {
    if (this.waiting.length > 0 || this.running.size > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Forgets finished records that are too old or too many; active jobs always stay. */
  private trim(): void {
    const cutoff = this.now() - this.keepFinishedMs;
    let finished = 0;
    for (const j of this.jobs.values()) if (j.finishedAt) finished++;
    for (const [id, j] of this.jobs) {
      if (!j.finishedAt) continue;
      if (finished > this.keepFinished || Date.parse(j.finishedAt) < cutoff) {
        this.jobs.delete(id);
        finished--;
      }
    }
    for (const [key, f] of this.failures) if (this.now() - f.at >= this.failedCooldownMs) this.failures.delete(key);
  }
}

function positive(n: number, name: string, allowZero: boolean): number {
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) throw new Error(`${name} must be an integer ≥ ${allowZero ? 0 : 1}`);
  return n;
}

function toJobError(e: unknown, aborted: boolean): JobError {
  if (aborted) return { code: 'CANCELLED', message: 'the job was stopped because the queue closed' };
  const code = typeof (e as { code?: unknown })?.code === 'string' ? (e as { code: string }).code : 'INTERNAL';
  const message = e instanceof Error ? e.message : String(e);
  return { code, message: message.slice(0, 2000) };
}
