import express, { type Express, type RequestHandler } from 'express';
import type { RepoRegistry } from '../storage/repo/registry';
import { errorMiddleware, sendError, sendNotFound } from './errors';
import { createFiles, type Files, type Mount } from './files/answer';
import { FileCache, type FileCacheOptions } from './files/cache';
import type { S3RedirectOptions } from './files/redirect';
import type { FrontOptions } from './http1/front';
import { createLogger, type Logger } from './logging';
import { createMetrics, repoLabel, type Metrics, type RepoSizeSource } from './metrics';
import { repoStats } from '../storage/browse/stats';
import { isPrivate } from './api/refs';
import { observeRequests } from './observe';
import { buildApiRouter } from './api/router';
import { ROUTES } from './api/routes';
import type { ServerContext } from './context';
import { instrumentDeltaJobs } from './jobs/metrics';

export type { Mount } from './files/answer';

export interface AppOptions {
  registry: RepoRegistry;
  /** Extra folders (or repositories at other URL prefixes) served with the repository-file rules, after the built-in routes. */
  mounts?: Mount[];
  /** Defaults to a stdout logger at the CAIRN_LOG level. */
  logger?: Logger;
  /** An existing metrics set, or false for none (no /metrics route). Defaults to a fresh one. */
  metrics?: Metrics | false;
  /** Publishing API, auth, private repositories and keys; without it Cairn serves read-only and public. */
  context?: ServerContext;
  /** In-memory cache of small files; false disables it. */
  fileCache?: FileCacheOptions | false;
  /** Redirect reads of content-addressed files on S3 to presigned URLs (server/files/redirect.ts). */
  s3Redirect?: S3RedirectOptions;
}

export interface CairnApp extends Express {
  locals: Express['locals'] & { cairn: { logger: Logger; metrics?: Metrics; cache?: FileCache; files: Files; front: FrontOptions } };
}

/**
 * Assembles the request handling of one process. GET and HEAD of files
 * (repositories and mounts) are decided in one place, server/files/answer.ts,
 * before express: node's server asks it first (hooked on app.handle, so every
 * way of running the app — listen, supertest — gets it), and the HTTP/1.1
 * front (`locals.cairn.front`, for listen) asks the same. Everything else is
 * express: the routes of one table (server/api/routes.ts: the API, health,
 * metrics, key files), then the error handler.
 */
export function createApp(opts: AppOptions): CairnApp {
  const logger = opts.logger ?? createLogger();
  const metrics = opts.metrics === false ? undefined : (opts.metrics ?? createMetrics());
  const cache = opts.fileCache === false ? undefined : new FileCache(opts.fileCache);
  const ctx = opts.context;
  const files = createFiles({
    registry: opts.registry,
    settings: ctx?.settings,
    auth: ctx?.auth,
    mounts: opts.mounts,
    cache,
    metrics,
    logger,
    onMissing: ctx?.jobs && ((repo, key) => ctx.jobs!.onMissing(repo, key)),
    traffic: ctx?.traffic,
    s3Redirect: opts.s3Redirect,
  });

  const app = express() as unknown as CairnApp;
  app.disable('x-powered-by');
  app.set('strict routing', true);
  app.set('case sensitive routing', true);
  app.set('etag', false); // file answers set their own validators; JSON answers are not cached
  app.locals.cairn = { logger, metrics, cache, files, front: { answer: files.answerer, onHandOver: metrics && (() => metrics.frontHandOver()), onRefused: metrics && (() => metrics.frontRefused()) } };

  app.use(observeRequests(logger, metrics));
  // The delta job queue, when it runs in this process (not in a cluster worker): the app's logger and metrics.
  if (ctx?.deltaJobs) {
    ctx.deltaJobs.setLogger(logger);
    if (metrics) instrumentDeltaJobs(metrics.registry, ctx.deltaJobs);
  }
  if (metrics) metrics.setRepositorySizes(repositorySizes(opts.registry, ctx));
  app.use(buildApiRouter({ registry: opts.registry, logger, metrics, ctx }, ROUTES));
  app.use('/api', apiNotFound);
  app.use((req, res) => sendNotFound(req, res));
  app.use(errorMiddleware(logger));

  const handle = (app as unknown as { handle: (req: unknown, res: unknown, next?: unknown) => void }).handle.bind(app);
  (app as unknown as { handle: typeof handle }).handle = (req, res, next) => {
    if (!files.handleNode(req as Parameters<Files['handleNode']>[0], res as Parameters<Files['handleNode']>[1])) handle(req, res, next);
  };
  return app;
}

/** Unknown API routes get the JSON error shape, never a mount's files. */
const apiNotFound: RequestHandler = (req, res) => {
  res.locals.route = 'api';
  sendError(req, res, { status: 404, code: 'NOT_FOUND', message: `no such API route: ${req.method} ${req.originalUrl.split('?', 1)[0].slice(0, 200)}` });
};

/**
 * The sizes /metrics shows (objects and deltas as stored), from the storage's
 * repository statistics; private repositories together (see repoLabel).
 * Without a server context every repository is public, as for the files.
 */
function repositorySizes(registry: RepoRegistry, ctx: ServerContext | undefined): RepoSizeSource {
  return async () => {
    const out = [];
    for (const name of await registry.list()) {
      const repo = await registry.open(name);
      if (!repo) continue;
      const stats = await repoStats(repo);
      out.push({ repo: repoLabel(name, ctx ? isPrivate(ctx, name) : false), bytes: stats.objectsTotal.bytes + stats.deltas.bytes, objects: stats.objectsTotal.count });
    }
    return out;
  };
}
