import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { deltaName, parseDeltaKey } from '../../storage/deltas/format';
import { deltaExists } from '../../storage/deltas/inventory';
import { onDemandEligible, planDeltasForRefMove } from '../../storage/deltas/plan';
import { ObjectType } from '../../storage/objects/types';
import type { RefLogEntry } from '../../storage/repo/reflog';
import type { RepoRegistry } from '../../storage/repo/registry';
import type { Repo } from '../../storage/repo/repo';
import { assertOwned, type SettingsStore } from '../../storage/repo/settings';
import { deltaRecordKey, deltaRecordStore, isDeltaJobId, recordJobId, type DeltaRecord } from '../../storage/jobs/records';
import type { SummarySigner } from '../../storage/repo/summary';
import { createLogger, type Logger } from '../logging';
import { DELTA_JOB, deltaJobKey, deltaJobKind, type DeltaJobDeps, type DeltaJobParams, type DeltaJobResult } from './delta-job';
import { closeWorkers, WorkerTaskError } from './worker';
import { DurableDeltaRecords, type DurableJobsOptions } from './durable';
import { defaultJobConcurrency, JobQueue, PRIORITY_DEMOTED, PRIORITY_NOW, PRIORITY_OLDER, type Job, type JobControl, type JobError, type JobFilter, type JobKind, type JobQueueOptions, type SubmitOutcome } from './queue';
import { mergeJob, mergeJobs, RecordSnapshots } from './shared-view';

/**
 * When static deltas get built, in the background:
 *   - policy: after a ref moves, a from-scratch delta to the new head and
 *     deltas from the ref's previous N commits (per-repository settings);
 *   - on demand: a host asked for a from→to superblock that is not there, both
 *     commits are here, `to` is the head of a ref and `from` a commit that ref
 *     held (its log) or one of `to`'s first deltas.previousCommits parents
 *     (storage/deltas/plan.ts onDemandEligible) — it got its 404 (and falls
 *     back to objects), and the delta is queued for the next host, at most
 *     `onDemandLimit.perHour` per repository per hour (a token bucket);
 *   - on request: the API and operators.
 * Everything goes through one bounded, deduplicated, prioritised JobQueue
 * (what hosts need now first: see `priorityOf` and planDeltasForRefMove), and a
 * newer move of a ref makes the jobs it superseded go (see `dropObsolete`).
 * Each job is also a durable record in the state store (server/jobs/durable.ts:
 * leases, so that of several replicas on one store exactly one builds each
 * delta, a crashed replica's job is taken over and jobs survive restarts):
 * the queue decides when a job runs here, its record whether it runs here;
 * existing deltas are never rebuilt (immutable). Nothing is ever queued for a repository
 * Cairn does not own (RepoSettings.owned): `request` throws NOT_OWNED, the
 * policy and on-demand paths do nothing, and the job itself refuses.
 *
 * On demand matters less than it sounds for stock clients: Cairn's summary sets
 * indexed-deltas, and a 2022.7 client then asks only for superblocks its index
 * lists (FORMATS.md §5), so a missing from→to superblock is requested by
 * clients without a summary or index (older libostree, custom tools, or a
 * client whose cached index names a delta since pruned).
 *
 * Events: 'ondemand' (result: OnDemandResult) and 'claim' (ClaimOutcome: what a
 * job's durable record decided when the job started here) for metrics.
 */

/** `limited`: the repository's on-demand rate limit is spent; `ineligible` also covers repositories Cairn does not own. */
/** On-demand decisions running at once at most; more 404s meanwhile are ignored. */
const MAX_DECIDING = 16;
/** How long a pair decided as not to build is not looked at again (a ref move forgets it sooner). */
const RECENT_MS = 60_000;

/**
 * The from→to superblock a missing key names, if it is one an on-demand
 * delta could answer (a plain object 404 is not): the one filter, used
 * where the 404 happens (a cluster worker sends nothing else to the primary).
 */
export function onDemandCandidate(key: string): { from: string; to: string } | null {
  if (!key.endsWith('/superblock')) return null;
  const k = parseDeltaKey(key);
  return k && k.from !== null ? { from: k.from, to: k.to } : null;
}

/** What a delta job's record decided when it started here (server/jobs/durable.ts Claim). */
export type ClaimOutcome = 'claimed' | 'taken-over' | 'exists' | 'elsewhere' | 'cancelled' | 'failed';
export type OnDemandResult = 'queued' | 'duplicate' | 'full' | 'exists' | 'ineligible' | 'limited' | 'busy' | 'error';
export type RequestOutcome = SubmitOutcome<DeltaJobParams, DeltaJobResult> | { status: 'exists' };

export interface DeltaJobsDeps {
  dataDir: string;
  registry: RepoRegistry;
  settings: SettingsStore;
  summarySigner(repo: Repo): Promise<SummarySigner | undefined>;
}

export interface DeltaJobsOptions extends JobQueueOptions {
  /** Queue deltas hosts ask for (default true). */
  onDemand?: boolean;
  /**
   * On-demand deltas queued per repository: a token bucket holding `burst`
   * (default `perHour`) tokens, refilled at `perHour` (default 10) per hour;
   * one token per delta actually queued. Beyond it: 'limited'. `now`: the
   * bucket's clock in ms (tests).
   */
  onDemandLimit?: { perHour?: number; burst?: number; now?: () => number };
  compileOptions?: DeltaJobDeps['compileOptions'];
  /** For tests: see DeltaJobDeps.beforeCompile. */
  beforeCompile?: DeltaJobDeps['beforeCompile'];
  /** Durable records and leases (server/jobs/durable.ts): their timings; false: this process's queue only. */
  durable?: DurableJobsOptions | false;
}

/**
 * Queue limits from the environment, for `cairn serve`: CAIRN_JOBS_CONCURRENCY
 * (jobs at once, default defaultJobConcurrency(cpus): 1 on up to 4 cores, each
 * delta job keeps a core busy),
 * CAIRN_JOBS_MAX_QUEUED (default 100), CAIRN_ONDEMAND_PER_HOUR (on-demand
 * deltas queued per repository per hour, default 10; 0: none) and
 * CAIRN_JOBS_LEASE_MS (a running job's lease in the store, default 20 s:
 * another replica takes a job over once its record stayed unchanged that long;
 * renewed every quarter of it). A test hook, read only when set:
 * CAIRN_TEST_DELTA_JOB_DELAY_MS holds every delta job that long, lease held,
 * just before it compiles (test/s3/replicas kills a replica meanwhile).
 */
export function deltaJobsOptionsFromEnv(env: NodeJS.ProcessEnv = process.env, cpus: number = availableParallelism()): DeltaJobsOptions {
  const int = (name: string, min: number): number | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    if (!/^\d+$/.test(v) || Number(v) < min) throw new Error(`${name} must be an integer ≥ ${min}, not "${v}"`);
    return Number(v);
  };
  const perHour = int('CAIRN_ONDEMAND_PER_HOUR', 0);
  const leaseMs = int('CAIRN_JOBS_LEASE_MS', 100);
  const delayMs = int('CAIRN_TEST_DELTA_JOB_DELAY_MS', 0);
  return {
    maxConcurrent: int('CAIRN_JOBS_CONCURRENCY', 1) ?? defaultJobConcurrency(cpus),
    maxQueued: int('CAIRN_JOBS_MAX_QUEUED', 0),
    ...(perHour === undefined ? {} : { onDemandLimit: { perHour } }),
    ...(leaseMs === undefined ? {} : { durable: { leaseMs } }),
    ...(delayMs === undefined ? {} : { beforeCompile: (_p: DeltaJobParams, signal: AbortSignal) => delay(delayMs, signal) }),
  };
}

/** Resolves after `ms`, rejects (CANCELLED) when `signal` aborts first. */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const stop = () => {
      clearTimeout(t);
      reject(new WorkerTaskError('CANCELLED', 'the job was cancelled before it compiled'));
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', stop);
      resolve();
    }, ms);
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
  });
}

export class DeltaJobs extends EventEmitter {
  readonly queue: JobQueue;
  private readonly onDemandEnabled: boolean;
  private readonly bucket: { perMs: number; burst: number; now: () => number; byRepo: Map<string, { tokens: number; at: number }> };
  private log: Logger = createLogger({ level: 'silent' });
  /** Policy and on-demand checks still deciding what to queue (see settled()), with their repository. */
  private readonly pending = new Map<Promise<unknown>, string>();
  /** On-demand decisions running, by repository, from and to. */
  private readonly onDemandInFlight = new Set<string>();
  /** On-demand pairs decided lately as not to build (ineligible, existing): the result, and until when it stands. */
  private readonly recentlyDecided = new Map<string, { result: OnDemandResult; until: number }>();
  /** The jobs' durable records (undefined: this process's queue only). */
  readonly durable: DurableDeltaRecords | undefined;
  /** The records as the jobs API lists them (server/jobs/shared-view.ts). */
  private readonly snapshots: RecordSnapshots | undefined;
  private closing = false;

  constructor(
    private readonly deps: DeltaJobsDeps,
    opts: DeltaJobsOptions = {},
  ) {
    super();
    this.onDemandEnabled = opts.onDemand ?? true;
    const perHour = opts.onDemandLimit?.perHour ?? 10;
    const burst = opts.onDemandLimit?.burst ?? perHour;
    if (!(perHour >= 0) || !(burst >= 0)) throw new Error('onDemandLimit: perHour and burst must be ≥ 0');
    this.bucket = { perMs: perHour / 3_600_000, burst, now: opts.onDemandLimit?.now ?? Date.now, byRepo: new Map() };
    this.queue = new JobQueue(opts);
    const kind = deltaJobKind({
      dataDir: deps.dataDir,
      openRepo: (name) => deps.registry.open(name),
      owned: (name) => deps.settings.owned(name),
      summarySigner: deps.summarySigner,
      compileOptions: opts.compileOptions,
      beforeCompile: opts.beforeCompile,
    });
    if (opts.durable !== false) {
      this.durable = new DurableDeltaRecords(
        deltaRecordStore(deps.dataDir),
        {
          deltaExists: async (p) => {
            const repo = await deps.registry.open(p.repo);
            return !!repo && (await deltaExists(repo, p.from, p.to));
          },
          isActive: (p) => this.queue.activeJob(deltaJobKey(p.repo, p.from, p.to)) !== undefined,
          submit: (r) => this.submitRecord(r),
          log: () => this.log,
        },
        opts.durable,
      );
      this.snapshots = new RecordSnapshots(deltaRecordStore(deps.dataDir), this.durable.maxRecords);
    }
    this.queue.register(this.durable ? this.durableKind(kind, this.durable) : kind);
    this.durable?.start();
    this.queue.on('finished', (job, ms: number) => {
      if (job.kind !== DELTA_JOB) return;
      const fields = { job: job.id, repo: job.repo, delta: (job.result as DeltaJobResult | undefined)?.name ?? job.key, source: job.source, duration_ms: ms };
      const ranBy = (job.result as DeltaJobResult | undefined)?.ranBy;
      if (job.state === 'done' && ranBy) this.log.info('delta job left to another replica', { ...fields, owner: ranBy });
      else if (job.state === 'done') this.log.info('delta job done', { ...fields, existed: (job.result as DeltaJobResult).existed, pruned: (job.result as DeltaJobResult).pruned });
      else if (job.error?.code === 'OBSOLETE') this.log.info('delta job obsolete', { ...fields, error: job.error });
      else this.log.warn('delta job failed', { ...fields, error: job.error });
    });
  }

  /**
   * The delta kind run under a durable record: claimed first (server/jobs/durable.ts
   * claim), then compiled with a signal that also aborts when the lease is lost,
   * and the outcome recorded. A job another replica runs (or ran) ends 'done'
   * here with `ranBy`; one a replica cancelled, or whose run failed there, fails
   * with that error.
   */
  private durableKind(inner: JobKind<DeltaJobParams, DeltaJobResult>, durable: DurableDeltaRecords): JobKind<DeltaJobParams, DeltaJobResult> {
    return {
      name: inner.name,
      run: async (p, ctl) => {
        const job = this.queue.get(ctl.id);
        const claim = await durable.claim(p, { id: ctl.id, source: job?.source, priority: job?.priority ?? PRIORITY_NOW });
        this.emit('claim', claim.kind === 'run' ? (claim.takeover ? 'taken-over' : 'claimed') : claim.kind);
        switch (claim.kind) {
          case 'elsewhere':
            return { name: deltaName(p.from, p.to), from: p.from, to: p.to, existed: false, pruned: [], ranBy: claim.owner };
          case 'cancelled':
          case 'failed':
            throw new WorkerTaskError(claim.error.code, claim.error.message);
          case 'exists':
            return inner.run(p, ctl); // nothing to compile: prunes and answers existed
        }
        const lease = claim.lease;
        const leased: JobControl = { id: ctl.id, signal: AbortSignal.any([ctl.signal, lease.signal]), progress: (pr) => ctl.progress(pr) };
        try {
          const result = await inner.run(p, leased);
          await lease.finish({ state: 'done', result: { existed: result.existed, digest: result.digest, totalSize: result.totalSize, parts: result.parts } });
          return result;
        } catch (e) {
          const lost = lease.lost();
          if (lost === 'taken') return { name: deltaName(p.from, p.to), from: p.from, to: p.to, existed: false, pruned: [], ranBy: 'another replica' };
          if (lost === 'cancelled') throw new WorkerTaskError('OBSOLETE', `${p.to} is no longer the head of a ref of ${p.repo} (cancelled by another replica)`);
          // Aborted by this queue: shutting down (hand the job back to the store) or obsolete.
          if (ctl.signal.aborted) await lease.finish(this.closing ? { state: 'queued' } : { state: 'cancelled', error: { code: 'OBSOLETE', message: `${p.to} is no longer the head of a ref of ${p.repo}` } });
          else await lease.finish({ state: 'failed', error: jobError(e) });
          throw e;
        }
      },
    };
  }

  /** The scanner's way into the local queue (a record queued by another replica, or left by one that stopped or died). */
  private submitRecord(r: DeltaRecord): 'queued' | 'skipped' | 'no-room' {
    const s = this.queue.stats();
    if (s.queued >= s.maxQueued) return 'no-room';
    const id = recordJobId(deltaRecordKey(r.repo, r.from, r.to), r);
    const outcome = this.queue.submit<DeltaJobParams, DeltaJobResult>(DELTA_JOB, deltaJobKey(r.repo, r.from, r.to), { repo: r.repo, from: r.from, to: r.to }, { id, repo: r.repo, source: r.source, priority: r.priority });
    return outcome.status === 'queued' ? 'queued' : outcome.status === 'duplicate' ? 'skipped' : 'no-room';
  }

  /** Logs go where the app's go (createApp calls this through the jobs routes). */
  setLogger(log: Logger): void {
    this.log = log;
  }

  /**
   * Queues the delta `from → to` of `repo` unless it exists. Callers check
   * that the commits exist when they need a precise answer; the job checks again.
   * NOT_OWNED for a repository Cairn does not own. `priority`: the policy's
   * (planDeltasForRefMove); otherwise `priorityOf`.
   */
  async request(repo: Repo, from: string | null, to: string, opts: { source: string; retryFailed?: boolean; priority?: number }): Promise<RequestOutcome> {
    assertOwned(this.deps.settings.current(repo.name), repo.name);
    if (await deltaExists(repo, from, to)) return { status: 'exists' };
    const priority = opts.priority ?? (await this.priorityOf(repo, to));
    const key = deltaJobKey(repo.name, from, to);
    // A job the queue takes gets its record first, and the record's job id: the
    // same on every replica. What the queue answers otherwise (duplicate, full,
    // closed) it answers at once, and no record is written for it.
    const id = this.durable && this.queue.wouldQueue(key, opts) ? await this.durable.enqueue({ repo: repo.name, from, to }, priority, opts.source) : undefined;
    const outcome = this.queue.submit<DeltaJobParams, DeltaJobResult>(DELTA_JOB, key, { repo: repo.name, from, to }, {
      id,
      repo: repo.name,
      source: opts.source,
      retryFailed: opts.retryFailed,
      priority,
    });
    if (outcome.status === 'full') this.log.warn('delta queue full', { repo: repo.name, from, to, source: opts.source, limit: outcome.limit });
    return outcome;
  }

  /** This replica's id (its durable records' owner name), if jobs have records. */
  get replica(): string | undefined {
    return this.durable?.replica;
  }

  /**
   * The jobs the API lists: this queue's merged with the records every replica
   * shares (server/jobs/shared-view.ts; the records as listed at most a second
   * before), newest first.
   */
  async jobs(filter: JobFilter = {}): Promise<Job[]> {
    const local = this.queue.list({ repo: filter.repo, kind: filter.kind });
    if (!this.durable || !this.snapshots || filter.kind === 'maintenance') return mergeJobs(local, [], '', filter);
    const snap = await this.snapshots.recent().catch((e: unknown) => this.listingFailed(e));
    return mergeJobs(local, snap?.entries ?? [], this.durable.replica, filter);
  }

  /**
   * One job by id, merged as `jobs` does. A delta job id found neither here
   * nor in the records as listed before this call began is looked for in a
   * listing begun after it (at most one a second: it may wait that long), so
   * an id another replica answered before is found.
   */
  async job(id: string): Promise<Job | undefined> {
    const local = this.queue.get(id);
    if (!this.durable || !this.snapshots || !isDeltaJobId(id)) return local;
    const asked = Date.now();
    let snap = await this.snapshots.recent().catch((e: unknown) => this.listingFailed(e));
    if (snap && !local && !snap.byId.has(id) && snap.startedAt < asked) snap = await this.snapshots.since(asked).catch((e: unknown) => this.listingFailed(e));
    return mergeJob(local, snap?.byId.get(id), this.durable.replica);
  }

  /** A listing of the records failed (the store unreachable): the jobs API shows this queue alone meanwhile (and lists again a second later at the earliest). */
  private listingFailed(e: unknown): undefined {
    this.log.warn('delta job records not listed', { err: e instanceof Error ? e.message : String(e) });
    return undefined;
  }

  /**
   * The priority of an explicit request (on demand, API, CLI) for a delta to
   * `to`: PRIORITY_NOW when `to` is the head of a ref (hosts may be asking for
   * it right now: the same group as the policy's delta from the previous head),
   * PRIORITY_OLDER otherwise (a downgrade, a pinned commit).
   */
  private async priorityOf(repo: Repo, to: string): Promise<number> {
    return (await heads(repo)).has(to) ? PRIORITY_NOW : PRIORITY_OLDER;
  }

  /** The `onPublished` hook: never throws, never blocks the publish. */
  onPublished(repo: Repo, changes: RefLogEntry[]): void {
    // Heads moved: pairs found ineligible before may be eligible now.
    for (const id of this.recentlyDecided.keys()) if (id.startsWith(`${repo.name}\0`)) this.recentlyDecided.delete(id);
    this.track(
      (async () => {
        const settings = await this.deps.settings.get(repo.name);
        if (!settings.owned) return; // never for a repository Cairn does not own (the publish itself was refused)
        // Queued ones before queuing (room in a full queue); everything after, so the
        // slot of a cancelled running job goes to this move's jobs, and jobs a racing
        // decision queued for an older head go too.
        await this.dropObsolete(repo, { cancelRunning: false });
        plans: for (const c of changes) {
          if (!c.new) continue; // a deleted ref needs no delta
          const plan = await planDeltasForRefMove(repo, c.ref, c.new, settings.deltas, { old: c.old });
          // Already superseded by a newer move (quick pushes): nothing to queue for it.
          if (plan.length && !(await heads(repo)).has(c.new)) continue;
          for (const d of plan) {
            const r = await this.request(repo, d.from, d.to, { source: 'policy', priority: d.priority });
            if (r.status === 'full' || r.status === 'closed') break plans; // later ones would be refused too
          }
        }
        await this.dropObsolete(repo);
      })(),
      'delta policy failed',
      { repo: repo.name },
      repo.name,
    );
  }

  /**
   * After refs of `repo` moved: what happens to the delta jobs of `repo` whose
   * `to` is no longer the head of any ref of `repo` (hosts update to heads and
   * fresh installs install heads, so such a delta is of little use now):
   *   - automatic jobs (source 'policy' or 'on-demand'): a queued one is
   *     dropped (state 'failed', error OBSOLETE; not a failure of the delta: a
   *     ref moved back to `to` queues it again at once); a running
   *     from-scratch one is cancelled the same way — the costliest kind, and
   *     fresh installs get the new head: its compile stops cooperatively at
   *     its next object, part or xz chunk (worker.ts; what it wrote is
   *     removed, no superblock was written) and its slot goes to the new
   *     head's jobs; a running from→to one runs on (partly done, and hosts
   *     pinned to `to`, or still updating to it from an index they fetched,
   *     may use it);
   *   - explicit jobs (source 'api', 'cli', anything else: someone asked for
   *     this very delta): a queued one is demoted to PRIORITY_DEMOTED (behind
   *     every job still useful), a running one runs on.
   * A job whose `to` is the head of any ref (this one or another: a promotion)
   * is never touched, whatever its `from`: hosts may use it now. Only jobs
   * already active before the heads were read are judged, so a decision that
   * races a newer move never judges that move's jobs by stale heads.
   * `cancelRunning: false` leaves running jobs alone.
   */
  private async dropObsolete(repo: Repo, opts: { cancelRunning?: boolean } = {}): Promise<void> {
    await this.dropObsoleteHere(repo, opts);
    // …and the records in the store: jobs other replicas queued or run.
    await this.durable?.dropObsolete(repo.name, () => heads(repo), { cancelRunning: opts.cancelRunning !== false });
  }

  private async dropObsoleteHere(repo: Repo, opts: { cancelRunning?: boolean }): Promise<void> {
    const candidates = this.queue
      .list({ repo: repo.name, kind: DELTA_JOB })
      .filter((j) => j.state === 'queued' || (j.state === 'running' && opts.cancelRunning !== false));
    if (candidates.length === 0) return;
    const current = await heads(repo);
    for (const job of candidates) {
      const p = job.params as DeltaJobParams;
      if (current.has(p.to) || (job.state !== 'queued' && job.state !== 'running')) continue;
      const automatic = job.source === 'policy' || job.source === 'on-demand';
      const error = { code: 'OBSOLETE', message: `${p.to} is no longer the head of a ref of ${repo.name}` };
      let action: string;
      if (job.state === 'queued' && automatic) action = this.queue.cancel(job.id, error) ? 'dropped' : 'kept';
      else if (job.state === 'queued') action = job.priority < PRIORITY_DEMOTED && this.queue.reprioritize(job.id, PRIORITY_DEMOTED) ? 'demoted' : 'kept';
      else if (automatic && p.from === null) action = this.queue.cancel(job.id, error) ? 'cancelled' : 'kept';
      else action = 'kept';
      if (action !== 'kept') this.log.info(`obsolete delta job ${action}`, { job: job.id, repo: repo.name, delta: job.key, source: job.source });
    }
  }

  /**
   * The repository-file routes' hook for a 404: acts only on from→to
   * superblocks. Answers nothing; the checks run after the 404 went out.
   */
  onMissing(repoName: string, key: string): void {
    const k = this.onDemandEnabled ? onDemandCandidate(key) : null;
    if (!k) return;
    const { from, to } = k;
    // Every anonymous 404 of a superblock lands here: the work it may cause is
    // bounded before anything is looked at. A pair recently found ineligible
    // or existing is not looked at again for RECENT_MS (a move of a ref of the
    // repository forgets it); one decision per (repository, from, to) at a
    // time; at most MAX_DECIDING at once ('busy' beyond); and an empty token
    // bucket answers before any disk access.
    const id = `${repoName}\0${from}\0${to}`;
    const recent = this.recentlyDecided.get(id);
    if (recent !== undefined && recent.until > this.bucket.now()) return void this.emit('ondemand', recent.result);
    if (this.onDemandInFlight.has(id)) return void this.emit('ondemand', 'duplicate');
    if (this.onDemandInFlight.size >= MAX_DECIDING) return void this.emit('ondemand', 'busy');
    if (!this.hasToken(repoName)) return void this.emit('ondemand', 'limited');
    this.onDemandInFlight.add(id);
    this.track(
      (async () => {
        const result = await this.onDemand(repoName, from, to).catch((e: unknown) => {
          this.log.warn('on-demand delta failed', { repo: repoName, from, to, err: e instanceof Error ? e.message : String(e) });
          return 'error' as const;
        });
        this.onDemandInFlight.delete(id);
        if (result === 'ineligible' || result === 'exists') this.remember(id, result);
        this.emit('ondemand', result);
        if (result === 'queued') this.log.info('on-demand delta queued', { repo: repoName, from, to });
      })(),
      'on-demand delta failed',
      { repo: repoName },
      repoName,
    );
  }

  private remember(id: string, result: OnDemandResult): void {
    if (this.recentlyDecided.size >= 10_000) this.recentlyDecided.clear();
    this.recentlyDecided.set(id, { result, until: this.bucket.now() + RECENT_MS });
  }

  /** Whether `repo`'s on-demand bucket holds a token now (nothing taken). */
  private hasToken(repo: string): boolean {
    const b = this.bucket;
    const cur = b.byRepo.get(repo);
    if (!cur) return b.burst >= 1;
    return Math.min(b.burst, cur.tokens + Math.max(0, b.now() - cur.at) * b.perMs) >= 1 - 1e-9;
  }

  private async onDemand(repoName: string, from: string, to: string): Promise<OnDemandResult> {
    const repo = await this.deps.registry.open(repoName);
    if (!repo) return 'ineligible';
    const settings = this.deps.settings.current(repoName);
    // Never written into without an operator's say-so (cairn adopt).
    if (!settings.owned) return 'ineligible';
    if (!(await repo.hasObject(to, ObjectType.Commit)) || !(await repo.hasObject(from, ObjectType.Commit))) return 'ineligible';
    // Only to the head of a ref, from a version hosts of that ref ran (or a recent
    // parent): this keeps strangers from making Cairn compile, and keep, deltas
    // between arbitrary commits.
    if (!(await onDemandEligible(repo, from, to, { ancestors: settings.deltas.previousCommits }))) return 'ineligible';
    if (await deltaExists(repo, from, to)) return 'exists';
    if (this.queue.activeJob(deltaJobKey(repo.name, from, to))) return 'duplicate';
    if (!this.takeToken(repoName)) {
      this.log.warn('on-demand delta rate limit reached', { repo: repoName, from, to });
      return 'limited';
    }
    // Eligible means `to` is the head of a ref: the first group, with the policy's delta from the previous head.
    const r = await this.request(repo, from, to, { source: 'on-demand', priority: PRIORITY_NOW });
    if (r.status !== 'queued') this.returnToken(repoName);
    return r.status === 'closed' ? 'full' : r.status;
  }

  /** One token of `repo`'s on-demand bucket, if there is one. */
  private takeToken(repo: string): boolean {
    const b = this.bucket;
    const now = b.now();
    const cur = b.byRepo.get(repo) ?? { tokens: b.burst, at: now };
    const tokens = Math.min(b.burst, cur.tokens + Math.max(0, now - cur.at) * b.perMs);
    if (tokens < 1 - 1e-9) {
      b.byRepo.set(repo, { tokens, at: now });
      return false;
    }
    if (!b.byRepo.has(repo) && b.byRepo.size >= 4096) b.byRepo.clear();
    b.byRepo.set(repo, { tokens: Math.max(0, tokens - 1), at: now });
    return true;
  }

  private returnToken(repo: string): void {
    const cur = this.bucket.byRepo.get(repo);
    if (cur) cur.tokens = Math.min(this.bucket.burst, cur.tokens + 1);
  }

  /** Policy and on-demand decisions still running (they may queue jobs yet). */
  get deciding(): number {
    return this.pending.size;
  }

  /** The repositories of the decisions still running, one entry per decision (the jobs API counts only what a caller may see). */
  decidingRepos(): string[] {
    return [...this.pending.values()];
  }

  /** Resolves once the policy/on-demand checks running now and any they started are over (jobs may still run). */
  async decided(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending.keys()]);
  }

  /** Resolves once policy/on-demand checks are over and the queue is idle (tests, shutdown). */
  async settled(): Promise<void> {
    for (;;) {
      while (this.pending.size) await Promise.all([...this.pending.keys()]);
      await this.queue.idle();
      if (this.pending.size === 0 && this.queue.stats().queued === 0 && this.queue.stats().running === 0) return;
    }
  }

  /**
   * Stops: decisions finish, queued jobs are dropped here (their records stay
   * queued in the store), running ones are stopped (their records handed back
   * as queued) unless `drain`. Another replica, or this one restarted, runs them.
   */
  async close(opts: { drain?: boolean } = {}): Promise<void> {
    await Promise.all([...this.pending.keys()]);
    await this.durable?.stop();
    this.closing = true;
    await this.queue.close(opts);
    await closeWorkers();
  }

  private track(p: Promise<void>, msg: string, fields: Record<string, unknown>, repo: string): void {
    const guarded = p.catch((e: unknown) => this.log.error(msg, { ...fields, err: e instanceof Error ? e.message : String(e) }));
    this.pending.set(guarded, repo);
    void guarded.finally(() => this.pending.delete(guarded));
  }
}

/** The commits that are the head of some ref of `repo`. */
async function heads(repo: Repo): Promise<Set<string>> {
  return new Set((await repo.listRefs()).values());
}

function jobError(e: unknown): JobError {
  const code = typeof (e as { code?: unknown })?.code === 'string' ? (e as { code: string }).code : 'INTERNAL';
  return { code, message: (e instanceof Error ? e.message : String(e)).slice(0, 2000) };
}
