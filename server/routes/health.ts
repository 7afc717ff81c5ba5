import { Router } from 'express';
import type { RepoRegistry } from '../../storage/repo/registry';

/** `GET /healthz`: liveness plus a cheap sign that the data folder is readable. */
export function healthRoutes(registry: RepoRegistry): Router {
  const router = Router({ strict: true, caseSensitive: true });
  router.get('/healthz', async (_req, res) => {
    res.locals.route = 'healthz';
    const repos = (await registry.list()).length;
    res.setHeader('Cache-Control', 'no-store');
    res.json({ status: 'ok', repos });
  });
  return router;
}
