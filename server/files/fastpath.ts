import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Backend } from '../../storage/backends/backend';
import { FsBackend } from '../../storage/backends/fs';
import { classifyNestedKey, classifyRepoKey, type RepoFileClass } from '../../storage/repo/layout';
import type { Mount } from '../app';
import type { RepoRegistry } from '../../storage/repo/registry';
import type { SettingsStore } from '../../storage/repo/settings';
import type { Logger } from '../logging';
import type { Metrics } from '../metrics';
import { observe } from '../observe';
import type { FileCache } from './cache';
import { sendTrustedObject, serveFile } from './serve';

/**
 * The hot path of a pull on plain node:http objects, before express (under
 * `cairn serve` the HTTP/1.1 front answers these first, see frontAnswer.ts;
 * this one serves connections handed to node and apps run without the front,
 * such as supertest's): GET/HEAD
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
/** An empty, `.` or `..` segment. */
const BAD_SEGMENT = /(?:^|\/)\.{0,2}(?:\/|$)/;

/**
 * Whether validateKey accepts a PLAIN key (ASCII, so bytes are characters),
 * without its split per request: the segment-length scan runs only for keys
 * long enough to hold a segment over 255 characters.
 */
export function isPlainKey(key: string): boolean {
  if (BAD_SEGMENT.test(key)) return false;
  if (key.length > 255) {
    for (const seg of key.split('/')) if (seg.length > 255) return false;
  }
  return true;
}

/** A request the fast paths may answer: a file of a public repository (or a `--mount` folder), by a plain path. */
export interface RoutedFile {
  backend: Backend;
  key: string;
  cls: RepoFileClass;
  /** The repository's name, for the log; none for a mount. */
  repo?: string;
  /** Content-addressed objects may be served from memory without a stat (ServeFileOptions.trustObjects). */
  trustObjects: boolean;
  /** A missing file may start work in the app (on-demand deltas): its 404 is the app's to give. */
  missingIsApps: boolean;
  /** The URL without its query, for the log. */
  path: string;
  /** The route label of metrics. */
  route: string;
}

/**
 * Finds the repository file `url` names, or null when the request is for
 * the full pipeline (see above). Shared by the node:http fast path and the
 * HTTP/1.1 front (./frontAnswer.ts), so both take exactly the same requests.
 */
export function fileRouter(opts: Pick<FastPathOptions, 'registry' | 'settings'>): (url: string) => RoutedFile | null {
  const { registry } = opts;
  const isPrivate = opts.settings ? privacyPerTurn(opts.settings) : () => false;
  return (url) => {
    if (!url.startsWith('/repo/')) return null;
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const m = PLAIN.exec(path);
    if (!m) return null;
    const name = m[1]!;
    const key = m[2]!;
    if (!isPlainKey(key)) return null; // express answers 400
    const cls = classifyRepoKey(key);
    if (cls.kind === 'local' || key.startsWith('keys/')) return null;
    // A repository confirmed within the last second is good enough here: the
    // file itself is still statted (or is content-addressed), see RepoRegistry.open.
    const repo = registry.openNow(name, 1000);
    if (!repo || isPrivate(name)) return null;
    return { backend: repo.backend, key, cls, repo: name, trustObjects: true, missingIsApps: cls.area === 'delta', path, route: `repo_${cls.area}` };
  };
}

/**
 * The same for the `--mount` folders (server/app.ts serves them after the
 * built-in routes, with the repository-file rules but keys classified at any
 * depth, and never trusted without a stat): null for the built-in routes'
 * paths and anything not plain.
 */
export function mountRouter(mounts: readonly Mount[]): (url: string) => RoutedFile | null {
  const folders = mounts.map((m) => ({ prefix: m.prefix.endsWith('/') ? m.prefix : `${m.prefix}/`, backend: new FsBackend(m.dir) }));
  return (url) => {
    if (folders.length === 0) return null;
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (BUILT_IN.test(path) || !PLAIN_PATH.test(path)) return null;
    // As in express, the first mount whose prefix matches answers (or 404s,
    // also for its bare prefix: that one is left to the app).
    const folder = folders.find((f) => path.startsWith(f.prefix) || path === f.prefix.slice(0, -1));
    if (!folder || !path.startsWith(folder.prefix)) return null;
    const key = path.slice(folder.prefix.length);
    if (key === '' || !isPlainKey(key)) return null;
    const cls = classifyNestedKey(key);
    if (cls.kind === 'local') return null;
    return { backend: folder.backend, key, cls, trustObjects: false, missingIsApps: false, path, route: `mount_${cls.area}` };
  };
}

/** Paths the app's own routes take before any mount. */
const BUILT_IN = /^\/(?:repo|api)(?:\/|$)|^\/(?:healthz|metrics)$/;
const PLAIN_PATH = /^\/[A-Za-z0-9._+\-/]{1,4096}$/;

export function createFastPath(opts: FastPathOptions): FastPath {
  const { cache, metrics, logger } = opts;
  const route = fileRouter(opts);
  return (req, res, fallback) => {
    const method = req.method;
    const url = req.url;
    if ((method !== 'GET' && method !== 'HEAD') || url === undefined) return fallback();
    const start = process.hrtime.bigint();
    let file;
    try {
      file = route(url);
    } catch {
      return fallback();
    }
    if (!file) return fallback();
    // The commonest answer of all, a content-addressed object the cache holds,
    // is written and accounted for synchronously: no promise, no close listener.
    const sent = cache ? sendTrustedObject(req, res, file.backend, file.key, file.cls, cache, metrics) : -1;
    if (sent >= 0) {
      const durationMs = Number(process.hrtime.bigint() - start) / 1e6;
      metrics?.observeRequest({ route: file.route, method, status: 200, bytes: sent, durationMs });
      logger.request({ method, path: file.path, status: 200, bytes: sent, durationMs, repo: file.repo });
      return;
    }
    void serve(opts, req, res, file, url, start, fallback);
  };
}

async function serve(opts: FastPathOptions, req: IncomingMessage, res: ServerResponse, file: RoutedFile, url: string, start: bigint, fallback: Fallback): Promise<void> {
  let observation;
  try {
    observation = observe(opts.logger, opts.metrics, req, res, { route: file.route, repo: file.repo }, start, url);
    if (await serveFile(req, res, file.backend, file.key, file.cls, { cache: opts.cache, metrics: opts.metrics, trustObjects: file.trustObjects })) return;
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

/**
 * Whether a repository is private, read from the settings at most once per
 * event-loop turn and repository (a stat each time was the largest single
 * cost of a cached object). The requests a turn answers were sent before it
 * began (their sockets were ready then), and the memo is filled during the
 * turn, so each still sees every settings change made before it was sent, as
 * with a stat per request. (The exception would be bytes arriving mid-turn on
 * a connection already being read, within microseconds of a change.) The memo
 * is dropped in the turn's check phase.
 */
function privacyPerTurn(settings: SettingsStore): (name: string) => boolean {
  const memo = new Map<string, boolean>();
  const forget = () => memo.clear();
  return (name) => {
    let v = memo.get(name);
    if (v === undefined) {
      v = settings.current(name).private;
      if (memo.size === 0) setImmediate(forget);
      memo.set(name, v);
    }
    return v;
  };
}
