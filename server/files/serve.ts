import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Backend, BlobInfo, ByteRange } from '../../storage/backends/backend';
import { CairnError } from '../../storage/errors';
import type { RepoFileClass } from '../../storage/repo/layout';
import type { Metrics } from '../metrics';
import type { FileCache } from './cache';
import { decideRange, httpDate, isNotModified, lastModifiedUsable, type Validators } from './conditional';

/**
 * Sends one file of a backend, byte for byte: the HTTP side of static
 * serving, with no knowledge of where the bytes live (fs today, S3 later), so
 * never express.static or res.sendFile.
 *
 * Cache-Control:
 * - content-addressed files: a year, immutable; their bytes cannot change.
 * - everything else (summary, summary.sig, refs, config, delta indexes,
 *   commitmeta): `no-cache`, i.e. a cache may keep a copy but must revalidate
 *   it on every use. With a max-age, a proxy or CDN could hand out a summary
 *   and a summary.sig of different ages (a signature failure), or a stale
 *   summary for up to max-age after a publish; revalidation costs one 304.
 */

const IMMUTABLE = 'public, max-age=31536000, immutable';
const REVALIDATE = 'no-cache';
const CACHE_NAME = 'files';
/** How often a file that keeps changing under us is re-tried before giving up. */
const ATTEMPTS = 3;

export interface ServeFileOptions {
  cache?: FileCache;
  metrics?: Metrics;
  /** A private repository's file: `Cache-Control: private`. */
  privateRepo?: boolean;
  /**
   * Serve cached content-addressed objects without a stat for the cache's
   * trustMs. Only for Cairn's own data folder, whose objects are written once
   * by Cairn or ostree and at most deleted (prune); never for `--mount`
   * folders, which may be anything (libostree's tests corrupt and delete
   * objects in place and expect to see it at once).
   */
  trustObjects?: boolean;
}

/**
 * Answers the request for `key`; false when the file does not exist (the
 * caller sends 404). Works on plain node:http objects, so that both the
 * express routes and the raw fast path (server/files/fastpath.ts) use it.
 */
export async function serveFile(req: IncomingMessage, res: ServerResponse, backend: Backend, key: string, cls: RepoFileClass, opts: ServeFileOptions): Promise<boolean> {
  // Content-addressed objects cannot change: a copy the backend confirmed a
  // moment ago is served without a stat (bounded by the cache's trustMs, so a
  // deleted object stops being served soon after). Delta parts are not
  // content-addressed (a regenerated delta rewrites them) and always stat.
  if (opts.trustObjects && cls.contentId && opts.cache) {
    const hit = opts.cache.trusted(backend, key, Date.now());
    if (hit) {
      opts.metrics?.cacheHit(CACHE_NAME);
      sendBuffered(req, res, cls, hit.info, hit.data, opts);
      return true;
    }
  }
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const info = backend.statNow ? backend.statNow(key) : await backend.stat(key);
    if (!info) return false;
    const outcome = await serveVersion(req, res, backend, key, cls, info, opts);
    if (outcome !== 'changed') return outcome === 'sent';
  }
  // Replaced between our stat and open several times in a row: let the client retry (libostree retries 500).
  throw new CairnError('IO', `file ${key} kept changing while being read`);
}

type Outcome = 'sent' | 'absent' | 'changed';

async function serveVersion(req: IncomingMessage, res: ServerResponse, backend: Backend, key: string, cls: RepoFileClass, info: BlobInfo, opts: ServeFileOptions): Promise<Outcome> {
  const cache = opts.cache;
  if (req.method !== 'HEAD' && cache?.accepts(info.size)) {
    let data = cache.get(backend, key, info.version);
    if (data) opts.metrics?.cacheHit(CACHE_NAME);
    else {
      opts.metrics?.cacheMiss(CACHE_NAME);
      // Files small enough to cache are read in one blocking go where the
      // driver offers it (see Backend.readNow): from the page cache that is a
      // few microseconds, where four thread-pool round trips (open, fstat,
      // read, close) added up to most of a small file's latency.
      const got = backend.readNow ? backend.readNow(key) : await backend.read(key);
      if (!got) return 'absent';
      if (got.info.version !== info.version) return 'changed';
      cache.set(backend, key, got.data, got.info);
      data = got.data;
    }
    sendBuffered(req, res, cls, info, data, opts);
    return 'sent';
  }
  const d = prepare(req, res, cls, info, opts);
  if (d.done) return 'sent';
  if (req.method === 'HEAD') {
    res.end();
    return 'sent';
  }
  return streamFile(res, backend, key, info, d.range);
}

/** A file whose bytes we hold: the whole answer in one writeHead + end. */
function sendBuffered(req: IncomingMessage, res: ServerResponse, cls: RepoFileClass, info: BlobInfo, data: Buffer, opts: ServeFileOptions): void {
  const d = prepare(req, res, cls, info, opts);
  if (d.done) return;
  if (req.method === 'HEAD') res.end();
  else res.end(d.range ? data.subarray(d.range.start, d.range.end + 1) : data);
}

/** The headers every answer about this version of the file carries. */
function fileHeaders(cls: RepoFileClass, info: BlobInfo, v: Validators, privateRepo: boolean): OutgoingHttpHeaders {
  const cacheControl = cls.kind === 'immutable' ? IMMUTABLE : REVALIDATE;
  const headers: OutgoingHttpHeaders = {
    'Content-Type': 'application/octet-stream',
    'X-Content-Type-Options': 'nosniff',
    'Accept-Ranges': 'bytes',
    ETag: v.etag,
    // A private repository's files must never sit in a shared cache.
    'Cache-Control': privateRepo ? cacheControl.replace('public', 'private') : cacheControl,
  };
  if (lastModifiedUsable(info.mtimeMs, v.nowMs)) headers['Last-Modified'] = httpDate(info.mtimeMs);
  return headers;
}

/**
 * The hot case of pulls and mirrors: a content-addressed object of a public
 * repository that the cache holds (confirmed by the backend within trustMs),
 * asked for without validators or a range. Its whole answer is fixed by the
 * object, so the header list is built once per cache entry and the answer is
 * written synchronously. Returns the body bytes written, or -1 when the
 * request needs serveFile.
 */
export function sendTrustedObject(req: IncomingMessage, res: ServerResponse, backend: Backend, key: string, cls: RepoFileClass, cache: FileCache, metrics: Metrics | undefined): number {
  if (!cls.contentId || hasValidatorsOrRange(req.rawHeaders)) return -1;
  const now = Date.now();
  const hit = cache.trusted(backend, key, now);
  if (!hit) return -1;
  if (!hit.head) {
    // Until the file's second is over its Last-Modified is not usable yet (see conditional.ts): no fixed answer before that.
    if (!lastModifiedUsable(hit.info.mtimeMs, now)) return -1;
    const headers = fileHeaders(cls, hit.info, { etag: etagFor(cls, hit.info), mtimeMs: hit.info.mtimeMs, nowMs: now }, false);
    headers['Content-Length'] = hit.info.size;
    hit.head = Object.entries(headers).flatMap(([k, v]) => [k, String(v)]);
  }
  metrics?.cacheHit(CACHE_NAME);
  res.writeHead(200, hit.head);
  if (req.method === 'HEAD') {
    res.end();
    return 0;
  }
  res.end(hit.data);
  return hit.data.length;
}

/** Whether a request carries a validator or a range, read from rawHeaders (req.headers is built on first use). */
function hasValidatorsOrRange(raw: string[]): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    const len = raw[i]!.length;
    if (len !== 5 && len !== 8 && len !== 13 && len !== 17) continue;
    const name = raw[i]!.toLowerCase();
    if (name === 'range' || name === 'if-range' || name === 'if-none-match' || name === 'if-modified-since') return true;
  }
  return false;
}

/**
 * Status and headers for `info` (validators, 304, ranges, 416), written with
 * one writeHead. `done` when the answer is complete (304, 416); else the
 * caller sends the body (or none for HEAD).
 */
function prepare(req: IncomingMessage, res: ServerResponse, cls: RepoFileClass, info: BlobInfo, opts: ServeFileOptions): { done: boolean; range?: ByteRange } {
  const v: Validators = { etag: etagFor(cls, info), mtimeMs: info.mtimeMs, nowMs: Date.now() };
  const headers = fileHeaders(cls, info, v, opts.privateRepo === true);
  if (headers['Last-Modified'] === undefined) res.removeHeader('Last-Modified');
  res.removeHeader('Content-Range');

  if (isNotModified(req.headers, v)) {
    res.removeHeader('Content-Length');
    res.writeHead(304, headers);
    res.end();
    return { done: true };
  }

  const decision = decideRange(req.headers, info.size, v);
  if (decision.kind === 'unsatisfiable') {
    headers['Content-Range'] = `bytes */${info.size}`;
    headers['Content-Length'] = 0;
    res.writeHead(416, headers);
    res.end();
    return { done: true };
  }
  const range = decision.kind === 'partial' ? decision.range : undefined;
  if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${info.size}`;
  headers['Content-Length'] = range ? range.end - range.start + 1 : info.size;
  res.writeHead(range ? 206 : 200, headers);
  return { done: false, range };
}

/** Large files: streamed from an open handle, never read whole. */
async function streamFile(res: ServerResponse, backend: Backend, key: string, info: BlobInfo, range: ByteRange | undefined): Promise<Outcome> {
  const opened = await backend.openRead(key, range);
  if (!opened) return 'absent';
  if (opened.info.version !== info.version) {
    opened.stream.destroy();
    return 'changed';
  }
  // pipeline destroys the file stream (closing its descriptor) when the
  // client goes away; an error after the headers can only cut the connection
  // so the client sees a short body, never a complete-looking wrong one.
  pipeline(opened.stream, res, (err) => {
    if (err && !res.destroyed) res.destroy();
  });
  return 'sent';
}

/** Strong ETags: the content identity for objects, else the backend's version. */
function etagFor(cls: RepoFileClass, info: BlobInfo): string {
  if (cls.contentId) return `"${cls.contentId}"`;
  const v = /^[A-Za-z0-9._-]{1,128}$/.test(info.version) ? info.version : createHash('sha256').update(info.version).digest('hex').slice(0, 32);
  return `"${v}"`;
}
