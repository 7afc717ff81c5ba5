import { Router } from 'express';
import type { RepoRegistry } from '../../storage/repo/registry';
import { SettingsStore } from '../../storage/repo/settings';

/**
 * `GET /healthz`: liveness plus a cheap sign that the data folder is readable.
 * Anonymous, so `repos` counts public repositories only: private ones are
 * nobody's business here (GET /api/repos lists them to their readers).
 */
export function healthRoutes(registry: RepoRegistry): Router {
  const router = Router({ strict: true, caseSensitive: true });
  const settings = new SettingsStore(registry.dataDir);
  router.get('/healthz', async (_req, res) => {
    res.locals.route = 'healthz';
    let repos = 0;
    for (const name of await registry.list()) {
      try {
        if (!settings.current(name).private) repos++;
      } catch {
        // unreadable settings: not known to be public, so not counted
      }
    }
    res.setHeader('Cache-Control', 'no-store');
    res.json({ status: 'ok', repos });
  });
  return router;
}
