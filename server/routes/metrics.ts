import { Router } from 'express';
import type { Metrics } from '../metrics';

/** `GET /metrics` in the Prometheus text format. */
export function metricsRoutes(metrics: Metrics): Router {
  const router = Router({ strict: true, caseSensitive: true });
  router.get('/metrics', async (_req, res) => {
    res.locals.route = 'metrics';
    const body = await metrics.registry.metrics();
    res.setHeader('Content-Type', metrics.registry.contentType);
    res.setHeader('Cache-Control', 'no-store');
    res.end(body);
  });
  return router;
}
