import type { Request, Response } from 'express';
import { listDeltas } from '../../storage/deltas/inventory';
import { CairnError } from '../../storage/errors';
import { isChecksum } from '../../storage/objects/checksum';
import { ObjectType } from '../../storage/objects/types';
import type { Repo } from '../../storage/repo/repo';
import { claimsOf } from '../auth/middleware';
import { allows } from '../auth/tokens';
import type { ServerContext } from '../context';
import type { DeltaJobService } from '../jobs/service';
import type { Job, JobState } from '../jobs/queue';
import { reply, route, type AnyRoute } from './route';
import { ref, type DeltaRequestBody } from './schema';

const STATES: readonly JobState[] = ['queued', 'running', 'done', 'failed'];

/**
 * Background jobs and static deltas: job status, the deltas of a repository,
 * and asking for one. Jobs of private repositories are visible only to
 * readers of those repositories, and so are they in the queue counts
 * (queued, running, deciding count only the jobs the caller may see). Jobs
 * are this replica's queue merged with the delta jobs' records every replica
 * shares (server/jobs/shared-view.ts): a delta job's id, its state, owner and
 * outcome are the same on every replica; positions and the queue counts are
 * this replica's queue. Deltas
 * are asked for only in repositories Cairn owns (403 NOT_OWNED). The delta
 * jobs' logger and metrics are hooked in by createApp.
 */
export const jobRoutes: AnyRoute[] = [
  route<Record<string, never>, { repo?: string; state?: JobState; limit: number }>({
    method: 'get',
    path: '/api/jobs',
    label: 'api_jobs',
    summary:
      "Recent background jobs, newest first (jobs of private repositories only with a read token): this replica's and the delta jobs every replica on the store knows of (queued, running elsewhere with their owner, finished), and this replica's queue: queued, running, limits, deciding (publishes and 404s whose deltas are still being worked out), replica (its id, as jobs name their owner)",
    access: { public: true },
    query: {
      type: 'object',
      properties: {
        repo: { type: 'string', maxLength: 200 },
        state: { enum: [...STATES] },
        limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
      },
    },
    responses: {
      200: {
        description: 'jobs and queue counts (null without background jobs)',
        schema: {
          type: 'object',
          properties: {
            jobs: { type: 'array', items: ref('Job') },
            queue: {
              type: ['object', 'null'],
              properties: {
                queued: { type: 'integer' },
                running: { type: 'integer' },
                maxQueued: { type: 'integer' },
                maxConcurrent: { type: 'integer' },
                deciding: { type: 'integer' },
                replica: { type: ['string', 'null'], description: "this replica's id (jobs' owner); null without durable delta job records" },
              },
            },
          },
        },
      },
    },
    async handler({ ctx, req, res, query }) {
      const deltas = ctx.jobs;
      const seen: Job[] = [];
      for (const job of (await deltas?.list({ repo: query.repo, state: query.state })) ?? []) {
        if (!(await mayRead(ctx, req, res, job.repo))) continue;
        seen.push(job);
        if (seen.length >= query.limit) break;
      }
      const positions = seen.some((j) => j.state === 'queued') ? await visiblePositions(ctx, deltas!, req, res) : new Map<string, number>();
      // `deciding`: publishes and 404s whose deltas are still being worked out (not queued yet).
      return { jobs: seen.map((j) => publicJob(j, positions)), queue: deltas ? await visibleStats(ctx, deltas, req, res) : null };
    },
  }),
  route<{ id: string }>({
    method: 'get',
    path: '/api/jobs/:id',
    label: 'api_job',
    summary: 'One job, by an id any replica answered (delta jobs: the id of their durable record, the same on every replica)',
    access: { public: true },
    params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 200 } } },
    responses: { 200: { description: 'the job', schema: ref('Job') } },
    errors: [404],
    async handler({ ctx, req, res, params }) {
      const deltas = ctx.jobs;
      const job = await deltas?.get(params.id);
      // A job the caller may not see answers like one that does not exist.
      if (!job || !(await mayRead(ctx, req, res, job.repo))) throw new CairnError('NOT_FOUND', 'no such job');
      return publicJob(job, job.state === 'queued' ? await visiblePositions(ctx, deltas!, req, res) : undefined);
    },
  }),
  route({
    method: 'get',
    path: '/api/repos/:repo/deltas',
    label: 'api_deltas',
    summary: 'Static deltas present: name (FROM-TO or TO, hex), from, to, digest (SHA-256 of the superblock), size (bytes of superblock and parts), parts',
    access: { repo: 'read' },
    responses: { 200: { description: 'deltas', schema: { type: 'object', properties: { deltas: { type: 'array', items: ref('Delta') } } } } },
    async handler({ repo }) {
      return { deltas: await listDeltas(repo) };
    },
  }),
  route<Record<string, never>, Record<string, never>, DeltaRequestBody>({
    method: 'post',
    path: '/api/repos/:repo/deltas',
    label: 'api_deltas_create',
    summary: 'Queue the generation of one static delta (push); deltas are immutable: an existing one answers 200 {status: "exists"}',
    description:
      '`to` and `from` are commit checksums or ref names of the repository; `from` null or absent means from scratch. 202 {status: "queued"|"duplicate", job} with Location /api/jobs/{id}; 503 QUEUE_FULL (Retry-After) when the bounded queue is full.',
    access: { repo: 'push', owned: true },
    body: {
      limit: '16kb',
      json: {
        type: 'object',
        required: ['to'],
        additionalProperties: false,
        properties: { from: { oneOf: [{ type: 'string', minLength: 1, maxLength: 1024 }, { type: 'null' }] }, to: { type: 'string', minLength: 1, maxLength: 1024 } },
      },
    },
    responses: {
      200: { description: 'exists', schema: { type: 'object', properties: { status: { const: 'exists' }, name: { type: 'string' } } } },
      202: { description: 'queued', schema: { type: 'object', properties: { status: { enum: ['queued', 'duplicate'] }, job: ref('Job') } } },
    },
    errors: [404, 501, 503],
    async handler({ ctx, req, res, repo, body }) {
      const deltas = ctx.jobs;
      if (!deltas) throw new CairnError('UNSUPPORTED', 'background delta generation is not enabled on this server');
      const to = await resolveCommit(repo, body.to, 'to');
      const from = body.from === null || body.from === undefined ? null : await resolveCommit(repo, body.from, 'from');
      if (from === to) throw new CairnError('INVALID_ARGUMENT', 'from and to are the same commit');
      const r = await deltas.request(repo, from, to, { source: 'api', retryFailed: true });
      switch (r.status) {
        case 'exists':
          return { status: 'exists', name: from ? `${from}-${to}` : to };
        case 'queued':
        case 'duplicate':
          return reply(202, { status: r.status, job: publicJob(r.job, r.job.state === 'queued' ? await visiblePositions(ctx, deltas, req, res) : undefined) }, { Location: `/api/jobs/${r.job.id}` });
        case 'full':
        case 'closed':
          // Not a CairnError code: the request is fine, the server is busy. Retry later.
          return reply(
            503,
            {
              error: {
                code: r.status === 'full' ? 'QUEUE_FULL' : 'SHUTTING_DOWN',
                message: r.status === 'full' ? `the job queue is full (${r.limit} waiting); try again later` : 'the server is shutting down',
              },
            },
            { 'Retry-After': '60' },
          );
      }
    },
  }),
];

/** Whether the caller may see jobs of `repo` (public, or a read token for it); memoized per request. */
async function mayRead(ctx: ServerContext, req: Request, res: Response, repo: string | undefined): Promise<boolean> {
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
}

/** Queue counts made of the jobs (and pending decisions) the caller may see, so they reveal nothing of private repositories. */
async function visibleStats(ctx: ServerContext, q: DeltaJobService, req: Request, res: Response) {
  const count = async (repos: Array<string | undefined>) => {
    let n = 0;
    for (const r of repos) if (await mayRead(ctx, req, res, r)) n++;
    return n;
  };
  const { maxQueued, maxConcurrent, replica } = await q.stats();
  return {
    queued: await count((await q.list({ state: 'queued', local: true })).map((j) => j.repo)),
    running: await count((await q.list({ state: 'running', local: true })).map((j) => j.repo)),
    maxQueued,
    maxConcurrent,
    deciding: await count(await q.decidingRepos()),
    replica: replica ?? null,
  };
}

/**
 * Queued job id → 1-based place in the run order among the queued jobs the
 * caller may see (the queue's own `position` counts every repository's jobs,
 * which would reveal how many private ones wait ahead).
 */
async function visiblePositions(ctx: ServerContext, q: DeltaJobService, req: Request, res: Response): Promise<Map<string, number>> {
  const queued = (await q.list({ state: 'queued', local: true })).filter((j) => j.position !== undefined).sort((a, b) => a.position! - b.position!);
  const out = new Map<string, number>();
  for (const j of queued) if (await mayRead(ctx, req, res, j.repo)) out.set(j.id, out.size + 1);
  return out;
}

/**
 * A job as the API shows it (params hold only repo and commit names, never
 * paths). `position`: while queued, its place among the queued jobs the caller
 * may see (`positions`, see visiblePositions: this replica's queue; a job
 * queued on another replica has none); null otherwise. `owner`: the replica
 * that runs or ran it.
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
    owner: j.owner ?? null,
    createdAt: j.createdAt,
    startedAt: j.startedAt ?? null,
    finishedAt: j.finishedAt ?? null,
    progress: j.progress ?? null,
    result: j.result ?? null,
    error: j.error ?? null,
  };
}

/** A commit checksum or a ref name of `repo`, which must hold that commit. */
async function resolveCommit(repo: Repo, v: string, field: string): Promise<string> {
  const commit = isChecksum(v) ? v : await repo.readRef(v);
  if (!commit) throw new CairnError('NOT_FOUND', `${field}: no ref ${v.slice(0, 200)} in ${repo.name}`);
  if (!(await repo.hasObject(commit, ObjectType.Commit))) throw new CairnError('NOT_FOUND', `${field}: commit ${commit} is not in ${repo.name}`, { commit });
  return commit;
}
