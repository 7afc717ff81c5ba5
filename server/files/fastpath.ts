import type { IncomingMessage, ServerResponse } from 'node:http';
import { validateKey } from '../../storage/backends/backend';
import { classifyRepoKey } from '../../storage/repo/layout';
import type { RepoRegistry } from '../../storage/repo/registry';
import type { SettingsStore } from '../../storage/repo/settings';
import type { Logger } from '../logging';
import type { Metrics } from '../metrics';
import { observe } from '../observe';
import type { FileCache } from './cache';
import { serveFile } from './serve';

/**
 * The hot path of a pull, on plain node:http objects before express: GET/HEAD
 * of an existing file of a public repository, `/repo/NAME/KEY`. It answers
 * exactly as the express route (server/routes/repoFiles.ts) would — the same
 * serveFile, the same labels, one log line, the same metrics — and hands
 * everything else to `fallback` untouched (nothing written, nothing read from
 * the request) so the full pipeline decides:
 * - anything but a plain path (percent-encoding, `.`/`..`/empty segments,
 *   odd characters, a query is fine): express decodes and answers 400/404;
 * - unknown repositories, private ones (auth), `/repo/NAME/keys/…` (key routes),
 *   local-only files;
 * - a missing file (404 with X-Cairn-Error, and the on-demand delta hook);
 * - any error before the response started (express's error handler answers).
 */

export interface FastPathOptions {
  registry: RepoRegistry;
  /** Repository settings (private repositories go to the full pipeline); absent when the app has no context. */
  settings?: SettingsStore;
  cache?: FileCache;
  metrics?: Metrics;
  logger: Logger;
}

export type Fallback = () => void;
export type FastPath = (req: IncomingMessage, res: ServerResponse, fallback: Fallback) => void;

/** Plain names only: anything needing decoding or validation beyond this takes the full pipeline. */
const PLAIN = /^\/repo\/([A-Za-z0-9._-]{1,255})\/([A-Za-z0-9._+\-/]{1,4096})$/;

export function createFastPath(opts: FastPathOptions): FastPath {
  return (req, res, fallback) => {
    const method = req.method;
    const url = req.url;
    if ((method !== 'GET' && method !== 'HEAD') || url === undefined || !url.startsWith('/repo/')) return fallback();
    const q = url.indexOf('?');
    const m = PLAIN.exec(q === -1 ? url : url.slice(0, q));
    if (!m) return fallback();
    void serve(opts, req, res, m[1]!, m[2]!, url, fallback);
  };
}

async function serve(opts: FastPathOptions, req: IncomingMessage, res: ServerResponse, name: string, key: string, url: string, fallback: Fallback): Promise<void> {
  const start = process.hrtime.bigint();
  try {
    validateKey(key); // rejects '', '.', '..' segments and over-long names (→ express's 400)
  } catch {
    return fallback();
  }
  const cls = classifyRepoKey(key);
  if (cls.kind === 'local' || key.startsWith('keys/')) return fallback();
  let observation;
  try {
    // A repository confirmed within the last second is good enough here: the
    // file itself is still statted (or is content-addressed), see RepoRegistry.open.
    const repo = await opts.registry.open(name, 1000);
    if (!repo) return fallback();
    if (opts.settings && (await opts.settings.get(name)).private) return fallback();
    observation = observe(opts.logger, opts.metrics, req, res, { route: `repo_${cls.area}`, repo: name }, start, url);
    if (await serveFile(req, res, repo.backend, key, cls, { cache: opts.cache, metrics: opts.metrics, trustObjects: true })) return;
  } catch {
    // An error before anything was written: the full pipeline repeats the request and reports it.
    if (res.headersSent) {
      res.destroy();
      return;
    }
  }
  observation?.cancel();
  fallback();
}
