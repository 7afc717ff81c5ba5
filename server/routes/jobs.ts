import express, { Router, type Request, type Response } from 'express';
import { listDeltas } from '../../storage/deltas/inventory';
import { CairnError } from '../../storage/errors';
import { isChecksum } from '../../storage/objects/checksum';
import { ObjectType } from '../../storage/objects/types';
import type { Repo } from '../../storage/repo/repo';
import { requireAccess, claimsOf } from '../auth/middleware';
import { allows } from '../auth/tokens';
import { repoParam, requireOwned, type ServerContext } from '../context';
import { sendError } from '../errors';
import { instrumentDeltaJobs } from '../jobs/metrics';
import type { Job, JobState } from '../jobs/queue';
import type { Logger } from '../logging';
import type { Metrics } from '../metrics';
import { requireRepoRead } from './access';

const STATES: readonly JobState[] = ['queued', 'running', 'done', 'failed'];

/**
 * Background jobs and static deltas: job status, the deltas of a repository,
 * and asking for one. Jobs of private repositories are visible only to
 * readers of those repositories, and so are they in the queue counts
 * (queued, running, deciding count only the jobs the caller may see). Deltas
 * are asked for only in repositories Cairn owns (403 NOT_OWNED). Also hooks the delta jobs into the app's
 * logger and metrics.
 */
export function jobRoutes(ctx: ServerContext, app: { logger: Logger; metrics?: Metrics }): Router {
  // The queue itself runs here (one process) or in the cluster's primary (workers): routes use only the service.
  const local = ctx.deltaJobs;
  if (local) {
    local.setLogger(app.logger);
    if (app.metrics) instrumentDeltaJobs(app.metrics.registry, local);
  }
  const deltas = ctx.jobs;
  const router = Router({ strict: true, caseSensitive: true });

  /** Whether the caller may see jobs of `repo` (public, or a read token for it); memoized per request. */
  const mayRead = async (req: Request, res: Response, repo: string | undefined): Promise<boolean> => {
    if (repo === undefined) return true;
    const memo: Map<string, boolean> = (res.locals.jobRepoAccess ??= new Map());
    let ok = memo.get(repo);
    if (ok === undefined) {
      // Settings that cannot be read fail closed: such a repository's jobs are nobody's to see.
      const settings = await ctx.settings.get(repo).catch(() => null);
      const claims = settings?.private ? await claimsOf(ctx.auth, req, res) : null;
      ok = !!settings && (!settings.private || (!!claims && allows(claims, { scope: 'read', repo })));
      memo.set(repo, ok);
    }
    return ok;
  };

  router.get('/api/jobs', async (req, res) => {
    res.locals.route = 'api_jobs';
    const repo = typeof req.query.repo === 'string' ? req.query.repo : undefined;
    const state = typeof req.query.state === 'string' ? req.query.state : undefined;
    if (state !== undefined && !STATES.includes(state as JobState)) throw new CairnError('INVALID_ARGUMENT', `state must be one of ${STATES.join(', ')}`);
    const limit = Math.min(1000, Math.max(1, Number(req.query.limit ?? 100) || 100));
    const seen: Job[] = [];
    for (const job of (await deltas?.list({ repo, state: state as JobState | undefined })) ?? []) {
      if (!(await mayRead(req, res, job.repo))) continue;
      seen.push(job);
      if (seen.length >= limit) break;
    }
    const positions = seen.some((j) => j.state === 'queued') ? await visiblePositions(req, res) : new Map<string, number>();
    const out = seen.map((j) => publicJob(j, positions));
    res.setHeader('Cache-Control', 'no-store');
    // `deciding`: publishes and 404s whose deltas are still being worked out (not queued yet).
    res.json({ jobs: out, queue: deltas ? await visibleStats(req, res) : null });
  });

  /** Queue counts made of the jobs (and pending decisions) the caller may see, so they reveal nothing of private repositories. */
  const visibleStats = async (req: Request, res: Response) => {
    const q = deltas!;
    const count = async (repos: Array<string | undefined>) => {
      let n = 0;
      for (const r of repos) if (await mayRead(req, res, r)) n++;
      return n;
    };
    const { maxQueued, maxConcurrent } = await q.stats();
    return {
      queued: await count((await q.list({ state: 'queued' })).map((j) => j.repo)),
      running: await count((await q.list({ state: 'running' })).map((j) => j.repo)),
      maxQueued,
      maxConcurrent,
      deciding: await count(await q.decidingRepos()),
    };
  };

  /**
   * Queued job id → 1-based place in the run order among the queued jobs the
   * caller may see (the queue's own `position` counts every repository's jobs,
   * which would reveal how many private ones wait ahead).
   */
  const visiblePositions = async (req: Request, res: Response): Promise<Map<string, number>> => {
    const queued = (await deltas!.list({ state: 'queued' })).filter((j) => j.position !== undefined).sort((a, b) => a.position! - b.position!);
    const out = new Map<string, number>();
    for (const j of queued) if (await mayRead(req, res, j.repo)) out.set(j.id, out.size + 1);
    return out;
  };

  router.get('/api/jobs/:id', async (req, res) => {
    res.locals.route = 'api_job';
    const job = await deltas?.get(String(req.params.id));
    // A job the caller may not see answers like one that does not exist.
    if (!job || !(await mayRead(req, res, job.repo))) throw new CairnError('NOT_FOUND', 'no such job');
    res.setHeader('Cache-Control', 'no-store');
    res.json(publicJob(job, job.state === 'queued' ? await visiblePositions(req, res) : undefined));
  });

  router.get('/api/repos/:repo/deltas', async (req, res) => {
    res.locals.route = 'api_deltas';
    const repo = await repoParam(ctx, req);
    await requireRepoRead(ctx, req, res, repo.name);
    res.setHeader('Cache-Control', 'no-store');
    res.json({ deltas: await listDeltas(repo) });
  });

  router.post('/api/repos/:repo/deltas', express.json({ limit: '16kb' }), async (req, res) => {
    res.locals.route = 'api_deltas_create';
    const repo = await repoParam(ctx, req);
    await requireAccess(ctx.auth, req, res, { scope: 'push', repo: repo.name });
    requireOwned(ctx, repo);
    if (!deltas) throw new CairnError('UNSUPPORTED', 'background delta generation is not enabled on this server');
    const body = req.body as { from?: unknown; to?: unknown } | undefined;
    const to = await resolveCommit(repo, body?.to, 'to');
    const from = body?.from === null || body?.from === undefined ? null : await resolveCommit(repo, body.from, 'from');
    if (from === to) throw new CairnError('INVALID_ARGUMENT', 'from and to are the same commit');
    const r = await deltas.request(repo, from, to, { source: 'api', retryFailed: true });
    res.setHeader('Cache-Control', 'no-store');
    switch (r.status) {
      case 'exists':
        res.status(200).json({ status: 'exists', name: from ? `${from}-${to}` : to });
        return;
      case 'queued':
      case 'duplicate':
        res.setHeader('Location', `/api/jobs/${r.job.id}`);
        res.status(202).json({ status: r.status, job: publicJob(r.job, r.job.state === 'queued' ? await visiblePositions(req, res) : undefined) });
        return;
      case 'full':
      case 'closed':
        // Not a CairnError code: the request is fine, the server is busy. Retry later.
        res.setHeader('Retry-After', '60');
        sendError(req, res, {
          status: 503,
          code: r.status === 'full' ? 'QUEUE_FULL' : 'SHUTTING_DOWN',
          message: r.status === 'full' ? `the job queue is full (${r.limit} waiting); try again later` : 'the server is shutting down',
        });
        return;
    }
  });

  return router;
}

/**
 * A job as the API shows it (params hold only repo and commit names, never
 * paths). `position`: while queued, its place among the queued jobs the caller
 * may see (`positions`, see visiblePositions); null otherwise.
 */
function publicJob(j: Job, positions?: Map<string, number>) {
  return {
    id: j.id,
    kind: j.kind,
    key: j.key,
    repo: j.repo ?? null,
    source: j.source ?? null,
    params: j.params,
    state: j.state,
    priority: j.priority ?? null,
    position: j.state === 'queued' ? (positions?.get(j.id) ?? null) : null,
    createdAt: j.createdAt,
    startedAt: j.startedAt ?? null,
    finishedAt: j.finishedAt ?? null,
    progress: j.progress ?? null,
    result: j.result ?? null,
    error: j.error ?? null,
  };
}

/** A commit checksum or a ref name of `repo`, which must hold that commit. */
async function resolveCommit(repo: Repo, v: unknown, field: string): Promise<string> {
  if (typeof v !== 'string' || v.length === 0) throw new CairnError('INVALID_ARGUMENT', `${field} must be a commit checksum or a ref name`);
  const commit = isChecksum(v) ? v : await repo.readRef(v);
  if (!commit) throw new CairnError('NOT_FOUND', `${field}: no ref ${v.slice(0, 200)} in ${repo.name}`);
  if (!(await repo.hasObject(commit, ObjectType.Commit))) throw new CairnError('NOT_FOUND', `${field}: commit ${commit} is not in ${repo.name}`, { commit });
  return commit;
}
