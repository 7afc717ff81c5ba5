import type { IncomingHttpHeaders } from 'node:http';
import { LRUCache } from 'lru-cache';
import { Counter } from 'prom-client';
import type { Backend } from '../../storage/backends/backend';
import { MAX_PRESIGN_SECONDS, presignedReads, type PresignedReads } from '../../storage/backends/s3';
import type { RepoFileClass } from '../../storage/repo/layout';
import type { Metrics } from '../metrics';
import type { TrafficSink } from '../observe';
import type { FileAnswer } from './serve';

/**
 * Reads redirected to the store (issue #13, `cairn serve --s3-redirect`): a
 * GET of a content-addressed file (objects, delta superblocks and parts,
 * flatpak's content-named subsummaries) of a repository on S3 is answered
 * `307` to a presigned GET URL of the S3 object, so the bytes go from the
 * store to the client, not through Cairn. Everything that must be consistent
 * with something else — summary, summary.sig, refs, config, delta indexes,
 * commitmeta — is still served by Cairn (those are `mutable`), and so are
 * HEAD requests and requests with validators (Cairn answers their `304`
 * itself: the store's ETag is not Cairn's).
 *
 * The object is statted first (one HEAD of the store, as when Cairn streams
 * it): a missing file is Cairn's own `404` (empty body; the on-demand delta
 * hook sees it), never a redirect to the store's XML error. The redirect comes
 * after the private-repository check (answer.ts decides that before any
 * file answer); the URL is the capability, so it is short-lived (`expiresSec`,
 * default 5 min) and never stored by a cache (`Cache-Control: no-store`).
 *
 * A URL and the size the HEAD found are kept for a while (REUSE_MAX_MS, at
 * most half the expiry, so a client always gets at least half of it): the
 * next GET of the file — many hosts pulling the same update — is answered
 * from memory, without the HEAD (~3 ms) and the signature (~0.5–1 ms of CPU
 * with the SDK). Content-addressed files never change; one deleted meanwhile
 * (gc, delta prune) is then the store's 404 for that while, which the stock
 * client handles as Cairn's (libostree 2022.7 with libcurl: "Server returned
 * HTTP 404" either way).
 */
export interface S3RedirectOptions {
  /** How long a presigned URL is valid (seconds; default DEFAULT_REDIRECT_SECONDS). */
  expiresSec?: number;
  /** The store's URL as clients reach it (default: the endpoint Cairn uses, CAIRN_S3_ENDPOINT). */
  publicEndpoint?: string;
}

export const DEFAULT_REDIRECT_SECONDS = 300;

/**
 * A public endpoint as redirects may name it: an http(s) origin (scheme, host,
 * optional port), returned without a trailing slash. No path (a signature is
 * over the path the store receives, so a path-rewriting proxy cannot be
 * presigned for), no credentials, query or fragment. Throws a message.
 */
export function checkPublicEndpoint(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error('not a URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('use an http:// or https:// URL');
  if (u.username || u.password || u.search || u.hash || (u.pathname !== '/' && u.pathname !== '')) throw new Error('use an origin only (scheme, host and port), e.g. https://s3.example.com');
  return u.origin;
}

const REDIRECTS_METRIC = 'cairn_s3_redirects_total';
/** How long a presigned URL is handed out again (and its file taken as present), at most half its expiry. */
const REUSE_MAX_MS = 60_000;
const REUSE_ENTRIES = 10_000;

export interface Redirects {
  /** The presigned reads of `backend` when a GET of this file is redirected, else null (served by Cairn). */
  of(method: string, headers: IncomingHttpHeaders, backend: Backend, cls: RepoFileClass): PresignedReads | null;
  /** The redirect for `key` (null: absent, 404), or a promise of it. */
  answer(backend: Backend, reads: PresignedReads, key: string): Redirect | Promise<Redirect | null>;
}

/** A redirect answer; `size`: the file's, for update traffic (its bytes go from the store). */
export interface Redirect extends FileAnswer {
  redirectedSize: number;
}

export function createRedirects(opts: S3RedirectOptions, metrics: Metrics | undefined): Redirects {
  const expiresSec = opts.expiresSec ?? DEFAULT_REDIRECT_SECONDS;
  if (!Number.isInteger(expiresSec) || expiresSec < 1 || expiresSec > MAX_PRESIGN_SECONDS) throw new RangeError(`redirect expiry must be 1-${MAX_PRESIGN_SECONDS} s`);
  const publicEndpoint = opts.publicEndpoint === undefined ? undefined : checkPublicEndpoint(opts.publicEndpoint);
  const reused = new LRUCache<string, { url: string; size: number }>({ max: REUSE_ENTRIES, ttl: Math.min(REUSE_MAX_MS, Math.floor((expiresSec * 1000) / 2)) });
  // Registered on the app's own registry (with --workers, /metrics sums every worker's).
  const counter = metrics
    ? ((metrics.registry.getSingleMetric(REDIRECTS_METRIC) as Counter | undefined) ??
      new Counter({ name: REDIRECTS_METRIC, help: 'GETs answered with a redirect to a presigned URL of the S3 store (--s3-redirect)', registers: [metrics.registry] }))
    : undefined;
  const redirect = (url: string, size: number): Redirect => {
    counter?.inc();
    return { status: 307, headers: { Location: url, 'Content-Length': 0, 'Cache-Control': 'no-store' }, redirectedSize: size };
  };
  return {
    of(method, headers, backend, cls) {
      if (method !== 'GET' || cls.kind !== 'immutable' || hasValidators(headers)) return null;
      return presignedReads(backend);
    },
    answer(backend, reads, key) {
      const id = `${backend.location}\0${key}`;
      const hit = reused.get(id);
      if (hit) return redirect(hit.url, hit.size);
      return (async () => {
        const info = await backend.stat(key);
        if (!info) return null;
        const url = await reads.presignGet(key, expiresSec, publicEndpoint);
        reused.set(id, { url, size: info.size });
        return redirect(url, info.size);
      })();
    },
  };
}

/**
 * What update traffic (storage/browse/traffic.ts) is told of a redirected
 * GET: the file as served whole (the store sends it), not a 307 of no bytes.
 */
export function redirectedTraffic(sink: TrafficSink, size: number): TrafficSink {
  return { record: (repo, relPath, _bytes, status, client) => sink.record(repo, relPath, size, status === 307 ? 200 : status, client) };
}

function hasValidators(h: IncomingHttpHeaders): boolean {
  return h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined;
}
