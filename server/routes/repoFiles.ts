import type { RequestHandler } from 'express';
import { type Backend, validateKey } from '../../storage/backends/backend';
import { FsBackend } from '../../storage/backends/fs';
import { classifyNestedKey, classifyRepoKey, type RepoFileClass } from '../../storage/repo/layout';
import type { RepoRegistry } from '../../storage/repo/registry';
import { sendNotFound } from '../errors';
import type { FileCache } from '../files/cache';
import { decodePathSegments } from '../files/paths';
import { serveFile } from '../files/serve';
import type { Metrics } from '../metrics';

/**
 * GET/HEAD of the files of a repository (or of any folder), the routes the
 * ostree client pulls from. The handler only translates: URL → backend key,
 * backend blob → response. It reads `req.path` raw (still percent-encoded)
 * and decodes it exactly once itself, so `+` stays a plus and encoded
 * separators cannot sneak past the checks.
 */

export interface FileTarget {
  backend: Backend;
  /** The backend key, '/'-separated, not yet validated. */
  key: string;
  /** For logs and metrics. */
  repo?: string;
}

/** Maps the decoded segments below the prefix to a backend and key; null means "no such thing" (404). */
export type TargetResolver = (segments: string[]) => Promise<FileTarget | null> | FileTarget | null;

export interface FileRouteOptions {
  /** URL prefix, e.g. `/repo` or `/` (a trailing slash is implied). */
  prefix: string;
  resolve: TargetResolver;
  /** Metrics label stem: routes are `${label}_object`, `${label}_delta`, `${label}_file`. */
  label: string;
  /** How keys are classified (default: keys at a repository's top). */
  classify?: (key: string) => RepoFileClass;
  cache?: FileCache;
  metrics?: Metrics;
  /** See ServeFileOptions.trustObjects: only for the data folder's repositories. */
  trustObjects?: boolean;
  /** Told (after the fact, never awaited) about a 404 for an existing repository's file; e.g. on-demand deltas. */
  onMissing?: (repo: string, key: string) => void;
}

export function fileRoutes(opts: FileRouteOptions): RequestHandler {
  const prefix = opts.prefix.endsWith('/') ? opts.prefix : opts.prefix + '/';
  const bare = prefix.slice(0, -1);
  return async (req, res, next) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    const path = req.path;
    if (!path.startsWith(prefix)) {
      if (path === bare) {
        res.locals.route = `${opts.label}_file`;
        return sendNotFound(req, res); // a folder: no listings
      }
      return next();
    }
    res.locals.route = `${opts.label}_file`;
    try {
      const rest = path.slice(prefix.length);
      const segments = decodePathSegments(rest);
      // A trailing slash names a folder: validate the rest, then 404 (no listings).
      const isDir = segments[segments.length - 1] === '';
      if (isDir) segments.pop();
      if (segments.length > 0) validateKey(segments.join('/'));
      if (isDir || segments.length === 0) return sendNotFound(req, res);

      const target = await opts.resolve(segments);
      if (!target) return sendNotFound(req, res);
      const key = validateKey(target.key);
      if (target.repo !== undefined) res.locals.repo = target.repo;
      const cls = (opts.classify ?? classifyRepoKey)(key);
      res.locals.route = `${opts.label}_${cls.area}`;
      if (cls.kind === 'local') return sendNotFound(req, res);
      const found = await serveFile(req, res, target.backend, key, cls, { cache: opts.cache, metrics: opts.metrics, privateRepo: res.locals.privateRepo === true, trustObjects: opts.trustObjects });
      if (!found) {
        sendNotFound(req, res);
        if (target.repo !== undefined) opts.onMissing?.(target.repo, key);
      }
    } catch (e) {
      next(e);
    }
  };
}

/** `/repo/NAME/…`: the repositories of the data folder, looked up on every request (new ones appear at once). */
export function repoFileRoutes(registry: RepoRegistry, shared: Pick<FileRouteOptions, 'cache' | 'metrics' | 'onMissing'>): RequestHandler {
  return fileRoutes({
    ...shared,
    prefix: '/repo/',
    label: 'repo',
    trustObjects: true,
    resolve: async ([name, ...rest]) => {
      if (rest.length === 0) return null;
      const repo = await registry.open(name);
      return repo ? { backend: repo.backend, key: rest.join('/'), repo: name } : null;
    },
  });
}

/** Any folder at any prefix, with the same rules (e.g. libostree's test repositories). */
export function folderFileRoutes(prefix: string, dir: string, shared: Pick<FileRouteOptions, 'cache' | 'metrics'>): RequestHandler {
  const backend = new FsBackend(dir);
  return fileRoutes({ ...shared, prefix, label: 'mount', classify: classifyNestedKey, resolve: (segments) => ({ backend, key: segments.join('/') }) });
}
