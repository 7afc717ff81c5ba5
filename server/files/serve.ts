import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Backend, BlobInfo, ByteRange } from '../../storage/backends/backend';
import { CairnError } from '../../storage/errors';
import type { RepoFileClass } from '../../storage/repo/layout';
import type { Metrics } from '../metrics';
import type { FileCache } from './cache';
import { pump, type FileRange } from './pump';
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
 * What to send for a GET or HEAD of one file, independent of the transport:
 * the express routes and the node:http fast path write it with writeHead
 * (writeAnswer), the HTTP/1.1 front (server/http1/front.ts) serializes it.
 */
export interface FileAnswer {
  status: number;
  headers: OutgoingHttpHeaders;
  /** The bytes to send, already cut to the range; none for HEAD, 304 and 416. */
  body?: Buffer;
  /** A large file's bytes (or range) from an open reader, to send with pump(); whoever gives up on it must close the reader. */
  file?: FileRange;
  /** The same from a driver without readers, as a stream; whoever gives up on it must destroy it. */
  stream?: Readable;
}

/** The request as far as answering a file goes. */
export interface FileRequest {
  method: string;
  headers: IncomingHttpHeaders;
}

/**
 * The answer for `key`, or null when the file does not exist (the caller
 * sends 404).
 */
export async function answerFile(req: FileRequest, backend: Backend, key: string, cls: RepoFileClass, opts: ServeFileOptions): Promise<FileAnswer | null> {
  // Content-addressed objects cannot change: a copy the backend confirmed a
  // moment ago is served without a stat (bounded by the cache's trustMs, so a
  // deleted object stops being served soon after). Delta parts are not
  // content-addressed (a regenerated delta rewrites them) and always stat.
  if (opts.trustObjects && cls.contentId && opts.cache) {
    const hit = opts.cache.trusted(backend, key, Date.now());
    if (hit) {
      opts.metrics?.cacheHit(CACHE_NAME);
      return buffered(req, cls, hit.info, hit.data, opts);
    }
  }
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const info = backend.statNow ? backend.statNow(key) : await backend.stat(key);
    if (!info) return null;
    const answer = await answerVersion(req, backend, key, cls, info, opts);
    if (answer !== 'changed') return answer;
  }
  // Replaced between our stat and open several times in a row: let the client retry (libostree retries 500).
  throw new CairnError('IO', `file ${key} kept changing while being read`);
}

/**
 * Answers the request for `key` on node:http objects; false when the file
 * does not exist (the caller sends 404).
 */
export async function serveFile(req: IncomingMessage, res: ServerResponse, backend: Backend, key: string, cls: RepoFileClass, opts: ServeFileOptions): Promise<boolean> {
  const answer = await answerFile({ method: req.method ?? 'GET', headers: req.headers }, backend, key, cls, opts);
  if (!answer) return false;
  writeAnswer(res, answer);
  return true;
}

/** Writes an answer with one writeHead (dropping stale headers a middleware may have set). */
export function writeAnswer(res: ServerResponse, answer: FileAnswer): void {
  for (const name of ['Last-Modified', 'Content-Range', 'Content-Length']) {
    if (answer.headers[name] === undefined) res.removeHeader(name);
  }
  res.writeHead(answer.status, answer.headers);
  if (answer.file) {
    const stop = pump(answer.file, res, (err) => {
      res.off('close', stop);
      // After the head, only a cut connection tells the client the body is short.
      if (err) res.destroy();
      else if (!res.destroyed) res.end();
    });
    res.once('close', stop);
    return;
  }
  const stream = answer.stream;
  if (!stream) {
    res.end(answer.body);
    return;
  }
  // pipeline destroys the file stream (closing its descriptor) when the
  // client goes away; an error after the headers can only cut the connection
  // so the client sees a short body, never a complete-looking wrong one.
  pipeline(stream, res, (err) => {
    if (err && !res.destroyed) res.destroy();
  });
}

async function answerVersion(req: FileRequest, backend: Backend, key: string, cls: RepoFileClass, info: BlobInfo, opts: ServeFileOptions): Promise<FileAnswer | null | 'changed'> {
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
      if (!got) return null;
      if (got.info.version !== info.version) return 'changed';
      cache.set(backend, key, got.data, got.info);
      data = got.data;
    }
    return buffered(req, cls, info, data, opts);
  }
  const d = decide(req, cls, info, opts);
  if (d.status === 304 || d.status === 416 || req.method === 'HEAD') return d;
  // Large files: sent from an open handle, never read whole.
  const start = d.range?.start ?? 0;
  const end = d.range?.end ?? info.size - 1;
  if (backend.openReader) {
    const reader = await backend.openReader(key);
    if (!reader) return null;
    if (reader.info.version !== info.version) {
      await reader.close();
      return 'changed';
    }
    return { status: d.status, headers: d.headers, file: { reader, start, end } };
  }
  const opened = await backend.openRead(key, d.range);
  if (!opened) return null;
  if (opened.info.version !== info.version) {
    opened.stream.destroy();
    return 'changed';
  }
  return { status: d.status, headers: d.headers, stream: opened.stream };
}

/** A file whose bytes we hold. */
function buffered(req: FileRequest, cls: RepoFileClass, info: BlobInfo, data: Buffer, opts: ServeFileOptions): FileAnswer {
  const d = decide(req, cls, info, opts);
  if (d.status === 304 || d.status === 416 || req.method === 'HEAD') return d;
  return { status: d.status, headers: d.headers, body: d.range ? data.subarray(d.range.start, d.range.end + 1) : data };
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
 * A cached content-addressed object's complete 200 answer, as header lines
 * and as a writeHead list, built once per cache entry (objects cannot
 * change). Undefined until the file's second is over: its Last-Modified is
 * not usable before (see conditional.ts).
 */
export interface FixedHead {
  /** `Name: value\r\n` lines, for the HTTP/1.1 front. */
  lines: string;
  /** Flat [name, value, …], for writeHead. */
  list: string[];
}

/**
 * The hot case of pulls and mirrors: a content-addressed object of a public
 * repository that the cache holds (confirmed by the backend within trustMs),
 * asked for without validators or a range (see hasValidatorsOrRange). Its
 * whole answer is fixed by the object. Undefined when the request needs
 * answerFile.
 */
export function trustedObject(backend: Backend, key: string, cls: RepoFileClass, cache: FileCache, metrics: Metrics | undefined): { head: FixedHead; data: Buffer } | undefined {
  if (!cls.contentId) return undefined;
  const now = Date.now();
  const hit = cache.trusted(backend, key, now);
  if (!hit) return undefined;
  if (!hit.head) {
    if (!lastModifiedUsable(hit.info.mtimeMs, now)) return undefined;
    const headers = fileHeaders(cls, hit.info, { etag: etagFor(cls, hit.info), mtimeMs: hit.info.mtimeMs, nowMs: now }, false);
    headers['Content-Length'] = hit.info.size;
    const list = Object.entries(headers).flatMap(([k, v]) => [k, String(v)]);
    let lines = '';
    for (let i = 0; i < list.length; i += 2) lines += `${list[i]}: ${list[i + 1]}\r\n`;
    hit.head = { lines, list };
  }
  metrics?.cacheHit(CACHE_NAME);
  return { head: hit.head, data: hit.data };
}

/**
 * trustedObject on node:http objects. Returns the body bytes written, or -1
 * when the request needs serveFile.
 */
export function sendTrustedObject(req: IncomingMessage, res: ServerResponse, backend: Backend, key: string, cls: RepoFileClass, cache: FileCache, metrics: Metrics | undefined): number {
  if (hasValidatorsOrRange(req.rawHeaders)) return -1;
  const hit = trustedObject(backend, key, cls, cache, metrics);
  if (!hit) return -1;
  res.writeHead(200, hit.head.list);
  if (req.method === 'HEAD') {
    res.end();
    return 0;
  }
  res.end(hit.data);
  return hit.data.length;
}

/** Whether a request carries a validator or a range, from its raw [name, value, …] list (req.headers is built on first use). */
export function hasValidatorsOrRange(raw: readonly string[]): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    const len = raw[i]!.length;
    if (len !== 5 && len !== 8 && len !== 13 && len !== 17) continue;
    const name = raw[i]!.toLowerCase();
    if (name === 'range' || name === 'if-range' || name === 'if-none-match' || name === 'if-modified-since') return true;
  }
  return false;
}

/**
 * Status and headers for `info` (validators, 304, ranges, 416); for a 200 or
 * 206 the caller adds the body (none for HEAD).
 */
function decide(req: FileRequest, cls: RepoFileClass, info: BlobInfo, opts: ServeFileOptions): { status: number; headers: OutgoingHttpHeaders; range?: ByteRange } {
  const v: Validators = { etag: etagFor(cls, info), mtimeMs: info.mtimeMs, nowMs: Date.now() };
  const headers = fileHeaders(cls, info, v, opts.privateRepo === true);
  if (isNotModified(req.headers, v)) return { status: 304, headers };
  const decision = decideRange(req.headers, info.size, v);
  if (decision.kind === 'unsatisfiable') {
    headers['Content-Range'] = `bytes */${info.size}`;
    headers['Content-Length'] = 0;
    return { status: 416, headers };
  }
  const range = decision.kind === 'partial' ? decision.range : undefined;
  if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${info.size}`;
  headers['Content-Length'] = range ? range.end - range.start + 1 : info.size;
  return { status: range ? 206 : 200, headers, range };
}

/** Strong ETags: the content identity for objects, else the backend's version. */
function etagFor(cls: RepoFileClass, info: BlobInfo): string {
  if (cls.contentId) return `"${cls.contentId}"`;
  const v = /^[A-Za-z0-9._-]{1,128}$/.test(info.version) ? info.version : createHash('sha256').update(info.version).digest('hex').slice(0, 32);
  return `"${v}"`;
}
