import { CairnError } from '../../storage/errors';
import { parseTimeOrAge } from '../../storage/maintenance/duration';
import { fsck } from '../../storage/maintenance/fsck';
import { DEFAULT_GRACE_MS, gc } from '../../storage/maintenance/gc';
import { prune } from '../../storage/maintenance/prune';
import { readRecoveryStatus } from '../../storage/repo/recovery';
import { assertOwned } from '../../storage/repo/settings';
import { route, type AnyRoute } from './route';
import { refName } from './schema';

/**
 * Maintenance of one repository (admin tokens of it): prune, garbage
 * collection, fsck. Each runs synchronously within the request (no job
 * queue: the answer is the report), one operation of a kind per repository
 * at a time in a process (409 CONFLICT while one runs); the work is bounded
 * by the repository (prune: at most 100,000 commits a call; gc and fsck walk
 * every object once, yielding to other requests every few milliseconds).
 * Writes (prune, gc, fsck's repair) only into repositories Cairn owns.
 */

interface PruneBody {
  refs?: string[];
  keep?: number;
  keepYoungerThan?: string;
  dryRun?: boolean;
}
interface GcBody {
  graceSeconds?: number;
  dryRun?: boolean;
}
interface FsckBody {
  repair?: boolean;
}

const running = new Set<string>();
async function once<T>(key: string, what: string, fn: () => Promise<T>): Promise<T> {
  if (running.has(key)) throw new CairnError('CONFLICT', `${what} is already running on this repository`);
  running.add(key);
  try {
    return await fn();
  } finally {
    running.delete(key);
  }
}

const report = { 200: { description: 'the report', schema: { type: 'object' } } };

export const maintenanceRoutes: AnyRoute[] = [
  route<Record<string, never>, Record<string, never>, PruneBody>({
    method: 'post',
    path: '/api/repos/:repo/prune',
    label: 'api_prune',
    summary: 'Prune the history of refs: keep the last N commits and/or those younger than T (admin)',
    description:
      'From each head (all refs, or `refs`), commits are kept while among the last `keep` (the head counts) or younger than `keepYoungerThan` (an age such as 30d, or an ISO 8601 date); that commit and all older ones go otherwise (unless another ref keeps them), with their detached metadata, a tombstone when the config says core.tombstone-commits=true, and the deltas from or to them. `dryRun` reports what would go and how many bytes. Objects only pruned commits reached are left to gc (`exclusiveBytes`).',
    access: { repo: 'admin', owned: true },
    body: {
      limit: '256kb',
      json: {
        type: 'object',
        additionalProperties: false,
        properties: {
          refs: { type: 'array', maxItems: 1000, items: refName },
          keep: { type: 'integer', minimum: 1, maximum: 1_000_000 },
          keepYoungerThan: { type: 'string', minLength: 1, maxLength: 40 },
          dryRun: { type: 'boolean' },
        },
      },
    },
    responses: report,
    errors: [409],
    async handler({ ctx, repo, body }) {
      const keepYoungerThan = body.keepYoungerThan !== undefined ? parseTimeOrAge(body.keepYoungerThan) : undefined;
      return once(`prune:${repo.name}`, 'a prune', async () =>
        prune(repo, { refs: body.refs, keep: body.keep, keepYoungerThan, dryRun: body.dryRun === true, signer: body.dryRun ? undefined : (await ctx.signerFor(repo))?.signSummary }),
      );
    },
  }),
  route<Record<string, never>, Record<string, never>, GcBody>({
    method: 'post',
    path: '/api/repos/:repo/gc',
    label: 'api_gc',
    summary: 'Delete objects no ref (nor its history) reaches and older than the grace window (admin)',
    description:
      'Safe while publishers push: objects younger than `graceSeconds` (default 3600) are kept, deletions run in rounds of at most 0.1 s under the ref lock, each first marking refs that moved. `dryRun` reports what would go.',
    access: { repo: 'admin', owned: true },
    body: {
      limit: '16kb',
      json: {
        type: 'object',
        additionalProperties: false,
        properties: { graceSeconds: { type: 'integer', minimum: 0, maximum: 100 * 365 * 86400 }, dryRun: { type: 'boolean' } },
      },
    },
    responses: report,
    errors: [409],
    async handler({ ctx, repo, body }) {
      return once(`gc:${repo.name}`, 'a garbage collection', async () =>
        gc(repo, {
          graceMs: body.graceSeconds !== undefined ? body.graceSeconds * 1000 : DEFAULT_GRACE_MS,
          dryRun: body.dryRun === true,
          signer: body.dryRun ? undefined : (await ctx.signerFor(repo))?.signSummary,
        }),
      );
    },
  }),
  route<Record<string, never>, Record<string, never>, FsckBody>({
    method: 'post',
    path: '/api/repos/:repo/fsck',
    label: 'api_fsck',
    summary: 'Verify every object and every ref closure; `repair` quarantines corrupt objects (admin)',
    description: 'Answers the report (`ok` false when anything is corrupt, missing or damaged). `repair` (owned repositories only) moves corrupt objects to state/cairn/quarantine/, so the next push restores them.',
    access: { repo: 'admin' },
    body: { limit: '16kb', json: { type: 'object', additionalProperties: false, properties: { repair: { type: 'boolean' } } } },
    responses: report,
    errors: [409],
    async handler({ ctx, repo, body }) {
      if (body.repair) assertOwned(ctx.settings.current(repo.name), repo.name);
      const r = await once(`fsck:${repo.name}`, 'an fsck', () => fsck(repo, { repair: body.repair === true, maxFileSize: ctx.ingestLimits.maxFileSize }));
      if (!r.ok) ctx.webhooks?.emit({ event: 'fsck.damage', repo: repo.name, data: { corrupt: r.corrupt.slice(0, 100), corruptCount: r.corruptCount, missing: r.missing.slice(0, 100), missingCount: r.missingCount, damagedRefs: r.damagedRefs.slice(0, 100), partialCommits: r.partialCommits.slice(0, 100), quarantined: r.quarantined.slice(0, 100) } });
      return r;
    },
  }),
  route({
    method: 'get',
    path: '/api/repos/:repo/recovery',
    label: 'api_recovery',
    summary: "What the last start-up recovery of the repository repaired and what it found wrong (admin)",
    description:
      'Written by the start-up recovery (storage/repo/recovery.ts, docs/publishing.md) of a repository Cairn owns: journals rolled forward, temporary files and stale locks swept, damaged refs restored from the ref log, summaries regenerated (`repaired`), and what it could not repair (`problems`, e.g. a truncated ref the ref log does not know). `report` is null when no recovery ran or it found nothing to say.',
    access: { repo: 'admin' },
    responses: {
      200: {
        description: 'the last recovery report',
        schema: {
          type: 'object',
          required: ['report'],
          properties: {
            report: {
              type: ['object', 'null'],
              properties: { repo: { type: 'string' }, time: { type: 'string' }, repaired: { type: 'array', items: { type: 'string' } }, problems: { type: 'array', items: { type: 'string' } } },
            },
          },
        },
      },
    },
    async handler({ res, repo }) {
      res.setHeader('Cache-Control', 'no-store');
      return { report: await readRecoveryStatus(repo) };
    },
  }),
];
