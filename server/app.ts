import express, { type Express, type RequestHandler } from 'express';
import type { RepoRegistry } from '../storage/repo/registry';
import { errorMiddleware, sendError, sendNotFound } from './errors';
import { FileCache, type FileCacheOptions } from './files/cache';
import { createFastPath, type FastPath } from './files/fastpath';
import { createFrontAnswerer } from './files/frontAnswer';
import type { FrontOptions } from './http1/front';
import { createLogger, type Logger } from './logging';
import { createMetrics, type Metrics } from './metrics';
import { observeRequests } from './observe';
import { healthRoutes } from './routes/health';
import { metricsRoutes } from './routes/metrics';
import { folderFileRoutes, repoFileRoutes } from './routes/repoFiles';
import type { ServerContext } from './context';
import { privateRepoGuard } from './routes/access';
import { keyRoutes } from './routes/keys';
import { jobRoutes } from './routes/jobs';
import { objectRoutes } from './routes/objects';
import { openapiRoutes } from './routes/openapi';
import { refRoutes } from './routes/refs';
import { repoRoutes } from './routes/repos';
import { tokenRoutes } from './routes/tokens';

export interface Mount {
  /** URL prefix, e.g. `/` or `/httpd`. */
  prefix: string;
  /** Folder served below it. */
  dir: string;
}

export interface AppOptions {
  registry: RepoRegistry;
  /** Extra folders served with the repository-file rules, after the built-in routes. */
  mounts?: Mount[];
  /** Defaults to a stdout logger at the CAIRN_LOG level. */
  logger?: Logger;
  /** An existing metrics set, or false for none (no /metrics route). Defaults to a fresh one. */
  metrics?: Metrics | false;
  /** Publishing API, auth, private repositories and keys; without it Cairn serves read-only and public. */
  context?: ServerContext;
  /** In-memory cache of small files; false disables it. */
  fileCache?: FileCacheOptions | false;
  /** The raw GET/HEAD path for public repository files in front of express (server/files/fastpath.ts); on by default. */
  fastPath?: boolean;
}

export interface CairnApp extends Express {
  locals: Express['locals'] & { cairn: { logger: Logger; metrics?: Metrics; cache?: FileCache; fastPath?: FastPath; front?: FrontOptions } };
}

/**
 * Assembles the HTTP server. Order matters: built-in routes (`/healthz`,
 * `/metrics`, `/repo/`, `/api/`) come before mounts so a mount at `/` cannot
 * shadow them, and the error handler is last. New resources go in their own
 * file under server/routes/ and are added here.
 */
export function createApp(opts: AppOptions): CairnApp {
  const logger = opts.logger ?? createLogger();
  const metrics = opts.metrics === false ? undefined : (opts.metrics ?? createMetrics());
  const cache = opts.fileCache === false ? undefined : new FileCache(opts.fileCache);
  const files = { cache, metrics };

  const app = express() as unknown as CairnApp;
  app.disable('x-powered-by');
  app.set('strict routing', true);
  app.set('case sensitive routing', true);
  app.set('etag', false); // file routes set their own validators; JSON answers are not cached
  app.locals.cairn = { logger, metrics, cache };

  app.use(observeRequests(logger, metrics));
  app.use(healthRoutes(opts.registry));
  if (metrics) app.use(metricsRoutes(metrics));
  const ctx = opts.context;
  if (ctx) {
    app.use(openapiRoutes());
    app.use(repoRoutes(ctx));
    app.use(objectRoutes(ctx));
    app.use(refRoutes(ctx));
    app.use(tokenRoutes(ctx));
    app.use('/repo/:repo', privateRepoGuard(ctx));
    app.use(keyRoutes(ctx));
    app.use(jobRoutes(ctx, { logger, metrics }));
  }
  app.use(repoFileRoutes(opts.registry, { ...files, onMissing: ctx?.deltaJobs && ((repo, key) => ctx.deltaJobs!.onMissing(repo, key)) }));
  app.use('/api', apiNotFound);
  for (const m of opts.mounts ?? []) app.use(folderFileRoutes(m.prefix, m.dir, files));
  app.use((req, res) => sendNotFound(req, res));
  app.use(errorMiddleware(logger));

  // Pulls are thousands of small GETs: the ones for existing files of public
  // repositories skip express (routing, param parsing, the guard's settings
  // read) and go straight to serveFile; everything else, and anything the fast
  // path is not sure about, takes the pipeline above untouched. Hooked on
  // app.handle so that every way of running the app (listen, supertest, a
  // parent express app) gets it.
  if (opts.fastPath !== false) {
    const fastOptions = { registry: opts.registry, settings: ctx?.settings, cache, metrics, logger };
    const fast = createFastPath(fastOptions);
    app.locals.cairn.fastPath = fast;
    // For a server that puts the HTTP/1.1 front before the app (listen's `front`).
    app.locals.cairn.front = { answer: createFrontAnswerer({ ...fastOptions, mounts: opts.mounts }), onHandOver: metrics && (() => metrics.frontHandOver()) };
    const handle = (app as unknown as { handle: (req: unknown, res: unknown, next?: unknown) => void }).handle.bind(app);
    (app as unknown as { handle: typeof handle }).handle = (req, res, next) =>
      fast(req as Parameters<FastPath>[0], res as Parameters<FastPath>[1], () => handle(req, res, next));
  }
  return app;
}

/** Unknown API routes get the JSON error shape, never a mount's files. */
const apiNotFound: RequestHandler = (req, res) => {
  res.locals.route = 'api';
  sendError(req, res, { status: 404, code: 'NOT_FOUND', message: `no such API route: ${req.method} ${req.originalUrl.split('?', 1)[0].slice(0, 200)}` });
};
