import { randomBytes } from 'node:crypto';
import { stateStore } from '../../storage/backends/factory';
import { CairnError } from '../../storage/errors';
import type { RepoRegistry } from '../../storage/repo/registry';
import { SettingsStore } from '../../storage/repo/settings';
import { reply, route, type AnyRoute } from './route';

/** Liveness, readiness, metrics: anonymous, served with or without the publishing API. */

/** The key written and removed by each readiness probe, at the root of the data folder. */
export const READY_PROBE_KEY = 'readyz-probe';
/** A probe that has not finished by then fails (a hung disk is not ready). */
const READY_TIMEOUT_MS = 5000;

const settingsOf = new WeakMap<RepoRegistry, SettingsStore>();

export const healthRoutes: AnyRoute[] = [
  route({
    method: 'get',
    path: '/healthz',
    label: 'healthz',
    summary: 'Liveness, and the number of public repositories',
    description: 'Anonymous, so `repos` counts public repositories only: private ones are nobody\'s business here (GET /api/repos lists them to their readers).',
    access: { public: true },
    needs: 'none',
    responses: { 200: { description: 'alive', schema: { type: 'object', properties: { status: { const: 'ok' }, repos: { type: 'integer' } } } } },
    async handler({ env }) {
      let settings = settingsOf.get(env.registry);
      if (!settings) settingsOf.set(env.registry, (settings = new SettingsStore(env.registry.dataDir)));
      let repos = 0;
      for (const name of await env.registry.list()) {
        try {
          if (!settings.current(name).private) repos++;
        } catch {
          // unreadable settings: not known to be public, so not counted
        }
      }
      return { status: 'ok', repos };
    },
  }),
  route({
    method: 'get',
    path: '/readyz',
    label: 'readyz',
    summary: 'Readiness: the data folder can be listed and written',
    description:
      'Lists the repositories and writes then removes a small file (`readyz-probe`) at the root of the data folder through its storage backend (temporary file, fsync, rename), within 5 s. 200 `{status: "ready"}`, else 503 with error code NOT_READY (take the process out of a load balancer, do not restart it).',
    access: { public: true },
    needs: 'none',
    responses: { 200: { description: 'ready', schema: { type: 'object', properties: { status: { const: 'ready' } } } } },
    errors: [503],
    async handler({ env }) {
      const backend = stateStore(env.registry.dataDir);
      const probe = async () => {
        await env.registry.list();
        await backend.write(READY_PROBE_KEY, randomBytes(16));
        await backend.remove(READY_PROBE_KEY);
      };
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          probe(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
          }),
        ]);
      } catch (e) {
        const why = e instanceof CairnError ? e.code : e instanceof Error ? e.message : String(e);
        env.logger.warn('not ready', { err: e instanceof Error ? e.message : String(e) });
        return reply(503, { error: { code: 'NOT_READY', message: `storage is not writable (${why.slice(0, 100)})` } });
      } finally {
        clearTimeout(timer);
      }
      return { status: 'ready' };
    },
  }),
  route({
    method: 'get',
    path: '/metrics',
    label: 'metrics',
    summary: 'Prometheus metrics (text exposition format)',
    description:
      'Requests by route, method and status; durations; bytes; cache hits and misses; front hand-overs; ref updates by repository; objects refused by reason; repository sizes (refreshed at most once a minute); delta jobs by state and their durations. With `--workers`, the sum over every process.',
    access: { public: true },
    needs: 'metrics',
    responses: { 200: { description: 'metrics', contentType: 'text/plain; version=0.0.4', schema: { type: 'string' } } },
    async handler({ env, res }) {
      const metrics = env.metrics!;
      const body = await metrics.registry.metrics();
      res.setHeader('Content-Type', metrics.registry.contentType);
      res.setHeader('Cache-Control', 'no-store');
      res.end(body);
    },
  }),
];
