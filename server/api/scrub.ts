import { readScrubStatus } from '../../storage/maintenance/scrub';
import { route, type AnyRoute } from './route';

/**
 * The background scrub of a repository (storage/maintenance/scrub.ts, run by
 * server/jobs/maintenance-job.ts where the job queue runs): its rate, where
 * the current pass is, the last pass and the corrupt objects found (each
 * quarantined). Read from the repository's state/cairn/scrub.json, so any
 * process answers it.
 */
export const scrubRoutes: AnyRoute[] = [
  route({
    method: 'get',
    path: '/api/repos/:repo/scrub',
    label: 'api_scrub',
    summary: 'Background scrub status: rate, position in the current pass, the last pass, findings (corrupt objects found and quarantined)',
    access: { repo: 'read' },
    responses: {
      200: {
        description: 'scrub status',
        schema: {
          type: 'object',
          properties: {
            enabled: { type: 'boolean' },
            rate: { type: ['object', 'null'], properties: { objectsPerSecond: { type: 'number' }, bytesPerSecond: { type: 'integer' } } },
            position: { type: ['string', 'null'], description: 'the last object key verified in the current pass' },
            passStartedAt: { type: ['string', 'null'] },
            passObjects: { type: 'integer' },
            passBytes: { type: 'integer' },
            passCorrupt: { type: 'integer' },
            lastPass: { type: ['object', 'null'] },
            passes: { type: 'integer' },
            totalObjects: { type: 'integer' },
            totalCorrupt: { type: 'integer' },
            findings: { type: 'array', items: { type: 'object', properties: { object: { type: 'string' }, error: { type: 'string' }, at: { type: 'string' }, quarantinedTo: { type: 'string' } } } },
            updatedAt: { type: ['string', 'null'] },
          },
        },
      },
    },
    async handler({ ctx, repo }) {
      const s = ctx.settings.current(repo.name);
      const rate = s.owned && s.maintenance.scrub ? s.maintenance.scrub : null;
      return { enabled: rate !== null, rate, ...(await readScrubStatus(repo)) };
    },
  }),
];
