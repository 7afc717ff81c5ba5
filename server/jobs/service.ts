import type { RefLogEntry } from '../../storage/repo/reflog';
import type { RepoRegistry } from '../../storage/repo/registry';
import type { Repo } from '../../storage/repo/repo';
import { CairnError, type ErrorCode } from '../../storage/errors';
import { onDemandCandidate, type DeltaJobs, type RequestOutcome } from './deltas';
import type { Job, JobFilter } from './queue';

/**
 * What a process answering requests needs of the delta jobs, whether the
 * queue runs in this process (single-process `cairn serve`, tests) or in the
 * cluster's primary (`--workers N`, server/cluster.ts): the same calls, the
 * local one direct, the remote one as messages. The routes and hooks use only
 * this, so both modes share every decision (the queue's own, in DeltaJobs).
 */
export interface DeltaJobService {
  /**
   * Refs moved: queue the policy's deltas. Resolves once the decision is
   * registered with the queue (counted in `deciding` until its jobs are
   * queued), so that a publish acknowledged after it is never followed by a
   * jobs listing that misses its deltas; never rejects, never waits for the
   * decision itself.
   */
  onPublished(repo: Repo, changes: RefLogEntry[]): Promise<void>;
  /** A file of `repo` was missing (on-demand deltas). Never throws, never blocks. */
  onMissing(repo: string, key: string): void;
  request(repo: Repo, from: string | null, to: string, opts: { source: string; retryFailed?: boolean }): Promise<RequestOutcome>;
  /**
   * Jobs, newest first: this replica's queue merged with the delta jobs'
   * records that every replica shares (server/jobs/shared-view.ts), or with
   * `local` this replica's queue only (its counts and positions).
   */
  list(filter?: JobListFilter): Promise<Job[]>;
  /** One job by id, as `list` merges it (a delta job any replica queued). */
  get(id: string): Promise<Job | undefined>;
  /** This replica's queue; `replica`: its id (the owner name in delta job records), absent without records. */
  stats(): Promise<{ queued: number; running: number; maxQueued: number; maxConcurrent: number; replica?: string }>;
  /** The repositories of policy and on-demand decisions still running (one entry per decision). */
  decidingRepos(): Promise<Array<string | undefined>>;
}

export interface JobListFilter extends JobFilter {
  /** This replica's queue only. */
  local?: boolean;
}

/** The service over this process's own queue. */
export function localDeltaJobService(jobs: DeltaJobs): DeltaJobService {
  return {
    onPublished: async (repo, changes) => jobs.onPublished(repo, changes),
    onMissing: (repo, key) => jobs.onMissing(repo, key),
    request: (repo, from, to, opts) => jobs.request(repo, from, to, opts),
    list: async (filter) => {
      const { local, ...f } = filter ?? {};
      return local ? jobs.queue.list(f) : jobs.jobs(f);
    },
    get: async (id) => jobs.job(id),
    stats: async () => ({ ...jobs.queue.stats(), ...(jobs.replica === undefined ? {} : { replica: jobs.replica }) }),
    decidingRepos: async () => jobs.decidingRepos(),
  };
}

/** Calls one method of the service in another process; the reply's error keeps its code. */
export type ServiceCall = (method: string, args: unknown[]) => Promise<unknown>;

/**
 * The service of the cluster's primary, for a worker: repositories travel as
 * names, results as plain data (jobs are plain records). Fire-and-forget
 * hooks lose nothing but their own decision if the primary is gone (as a
 * restart loses queued jobs).
 */
export function remoteDeltaJobService(call: ServiceCall): DeltaJobService {
  const lift = (e: unknown): never => {
    const code = (e as { code?: unknown })?.code;
    if (typeof code === 'string' && code !== 'INTERNAL') throw new CairnError(code as ErrorCode, e instanceof Error ? e.message : String(e));
    throw e;
  };
  const ask = <T>(method: string, args: unknown[]) => (call(method, args) as Promise<T>).catch(lift);
  const tell = (method: string, args: unknown[]) => void call(method, args).catch(() => undefined);
  const told = recentKeys(60_000, 10_000);
  return {
    // Waits for the primary's reply (one IPC round trip), at most REGISTER_WAIT_MS: a primary
    // that is gone or stuck must not hold a publish.
    onPublished: (repo, changes) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, REGISTER_WAIT_MS);
        void call('onPublished', [repo.name, changes])
          .catch(() => undefined)
          .then(() => {
            clearTimeout(timer);
            resolve();
          });
      }),
    // Only what could start an on-demand delta travels to the primary; each key once a minute at most.
    onMissing: (repo, key) => {
      if (!onDemandCandidate(key) || told.seen(`${repo}\0${key}`)) return;
      tell('onMissing', [repo, key]);
    },
    request: (repo, from, to, opts) => ask('request', [repo.name, from, to, opts]),
    list: (filter) => ask('list', [filter ?? {}]),
    get: (id) => ask<Job | null>('get', [id]).then((j) => j ?? undefined),
    stats: () => ask('stats', []),
    decidingRepos: () => ask('decidingRepos', []),
  };
}

/** How long a worker's publish waits for the primary to register its delta decision. */
const REGISTER_WAIT_MS = 5_000;

/** Keys seen within `ms` (at most `max` remembered; when full, forgets them all). */
function recentKeys(ms: number, max: number): { seen(key: string): boolean } {
  const until = new Map<string, number>();
  return {
    seen(key) {
      const now = Date.now();
      const t = until.get(key);
      if (t !== undefined && t > now) return true;
      if (until.size >= max) until.clear();
      until.set(key, now + ms);
      return false;
    },
  };
}

/** The primary's side: answers a worker's call with the local service. */
export function serveDeltaJobCalls(service: DeltaJobService, registry: RepoRegistry): ServiceCall {
  const repo = async (name: unknown): Promise<Repo> => {
    const r = typeof name === 'string' ? await registry.open(name) : null;
    if (!r) throw new CairnError('NOT_FOUND', `no repository named ${String(name).slice(0, 80)}`);
    return r;
  };
  return async (method, args) => {
    switch (method) {
      case 'onPublished':
        await service.onPublished(await repo(args[0]), args[1] as RefLogEntry[]);
        return null;
      case 'onMissing':
        service.onMissing(String(args[0]), String(args[1]));
        return null;
      case 'request':
        return service.request(await repo(args[0]), args[1] as string | null, String(args[2]), args[3] as { source: string; retryFailed?: boolean });
      case 'list':
        return service.list(args[0] as JobListFilter);
      case 'get':
        return (await service.get(String(args[0]))) ?? null;
      case 'stats':
        return service.stats();
      case 'decidingRepos':
        return service.decidingRepos();
      default:
        throw new CairnError('INVALID_ARGUMENT', `no job service method ${method.slice(0, 40)}`);
    }
  };
}
