import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream';
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { type Backend, type BlobInfo, type ByteRange, isNow, nowOf } from '../../storage/backends/backend';
import { CairnError } from '../../storage/errors';
import type { RepoFileClass } from '../../storage/repo/layout';
import type { Metrics } from '../metrics';
import type { CacheEntry, FileCache } from './cache';
import { pump, type FileRange } from './pump';
import { decideRange, httpDate, isNotModified, lastModifiedUsable, type Validators } from './conditional';
import { REQUEST_ID_HEADER } from '../observe';

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
}

/**
 * What to send for a GET or HEAD of one file, independent of the transport:
 * node's server writes it with writeHead (writeAnswer), the HTTP/1.1 front
 * (server/http1/front.ts) serializes it.
 */
export interface FileAnswer {
  status: number;
  headers: OutgoingHttpHeaders;
  /** The same headers, prebuilt once per cached object (a content-addressed object's plain 200). */
  fixed?: FixedHead;
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
 * sends 404). Every request stats the file first, so what is served is what
 * the disk holds when the request is answered; a file small enough for the
 * cache is answered from memory only when the cached copy is of exactly the
 * version just statted. (On remote storage a GET the cache cannot answer
 * skips the stat: one GET gives the bytes and their version, see oneGet.) With a driver that has blocking stat and read (the
 * filesystem), a file the cache holds or that is small enough to read at once
 * is answered synchronously (no promise); large files need an open reader.
 */
export function answerFile(req: FileRequest, backend: Backend, key: string, cls: RepoFileClass, opts: ServeFileOptions): FileAnswer | null | Promise<FileAnswer | null> {
  if (!backend.blocking) return oneGet(req, backend, key, opts) ? answerFromGet(req, backend, key, cls, opts) : answerFileAsync(req, backend, key, cls, opts, 1);
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const info = nowOf(backend.statFast(key));
    if (!info) return null;
    const answer = answerVersionNow(req, backend, key, cls, info, opts, readNowOf(backend, key));
    if (answer === 'async') return answerVersion(req, backend, key, cls, info, opts).then((a) => (a === 'changed' ? answerFileAsync(req, backend, key, cls, opts, attempt + 1) : a));
    if (answer !== 'changed') return answer;
  }
  throw changing(key);
}

async function answerFileAsync(req: FileRequest, backend: Backend, key: string, cls: RepoFileClass, opts: ServeFileOptions, firstAttempt: number): Promise<FileAnswer | null> {
  for (let attempt = firstAttempt; attempt <= ATTEMPTS; attempt++) {
    const got = backend.statFast(key);
    const info = isNow(got) ? got : await got;
    if (!info) return null;
    const answer = await answerVersion(req, backend, key, cls, info, opts);
    if (answer !== 'changed') return answer;
  }
  throw changing(key);
}

/**
 * On remote storage (S3) a stat is a request of its own, as long as a GET:
 * a GET of a file the cache holds no copy of (of any version) is answered
 * from one GET of the whole file, whose answer gives the info of exactly the
 * bytes it carries. Stat first, as on local storage: a HEAD (no bytes), a
 * cache hit (the stat validates the copy, so gc's deletions and replaced
 * mutable files show at once) and a range (a large file's would cost a whole
 * GET cut short; ostree clients rarely ask one).
 */
function oneGet(req: FileRequest, backend: Backend, key: string, opts: ServeFileOptions): boolean {
  return req.method === 'GET' && req.headers.range === undefined && opts.cache?.holds(backend, key) !== true;
}

/** A GET answered from one read of the store: small files through the cache (buffered), larger ones streamed from that read. */
async function answerFromGet(req: FileRequest, backend: Backend, key: string, cls: RepoFileClass, opts: ServeFileOptions): Promise<FileAnswer | null> {
  const opened = await backend.openRead(key);
  if (!opened) return null;
  const { stream, info } = opened;
  const cache = opts.cache;
  if (cache?.accepts(info.size)) {
    opts.metrics?.cacheMiss(CACHE_NAME);
    const data = await collect(stream, info.size, key);
    const entry = cache.set(backend, key, data, info) ?? { version: info.version, info, data };
    return buffered(req, cls, entry, opts);
  }
  const d = decide(req, cls, info, opts);
  // No range was asked: a 200, or a 304 that sends nothing.
  if (d.status !== 200) {
    stream.destroy();
    return d;
  }
  return { status: 200, headers: d.headers, stream };
}

/** The `size` bytes of a small file's open read (size within the cache's entry bound): never more, nor fewer. */
async function collect(stream: Readable, size: number, key: string): Promise<Buffer> {
  const data = Buffer.allocUnsafe(size);
  let got = 0;
  try {
    // Leaving the loop early (a throw) destroys the stream.
    for await (const chunk of stream) {
      const c = chunk as Buffer;
      if (c.length > size - got) throw new CairnError('IO', `the store sent more of ${key} than its ${size} bytes`);
      c.copy(data, got);
      got += c.length;
    }
  } catch (e) {
    if (e instanceof CairnError) throw e;
    throw new CairnError('IO', `reading ${key}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (got !== size) throw new CairnError('IO', `the store sent ${got} of the ${size} bytes of ${key}`);
  return data;
}

/** Replaced between our stat and open several times in a row: let the client retry (libostree retries 500). */
function changing(key: string): CairnError {
  return new CairnError('IO', `file ${key} kept changing while being read`);
}

/**
 * Writes an answer with one writeHead (dropping stale headers a middleware may
 * have set), the request's id last, where the HTTP/1.1 front puts it too.
 */
export function writeAnswer(res: ServerResponse, answer: FileAnswer, requestId: string): void {
  if (answer.fixed) res.writeHead(answer.status, [...answer.fixed.list, REQUEST_ID_HEADER, requestId]);
  else {
    for (const name of ['Last-Modified', 'Content-Range', 'Content-Length']) {
      if (answer.headers[name] === undefined) res.removeHeader(name);
    }
    res.writeHead(answer.status, { ...answer.headers, [REQUEST_ID_HEADER]: requestId });
  }
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

/** Releases what an answer holds open, for an answer that will not be sent. */
export function releaseAnswer(answer: FileAnswer): void {
  answer.stream?.destroy();
  void answer.file?.reader.close().catch(() => undefined);
}

type Got = { data: Buffer; info: BlobInfo } | null;

/**
 * The synchronous part of answerVersion: everything but opening a reader
 * ('async'). `read` reads a file small enough for the cache that the cache
 * does not hold at this version.
 */
function answerVersionNow(req: FileRequest, backend: Backend, key: string, cls: RepoFileClass, info: BlobInfo, opts: ServeFileOptions, read: () => Got): FileAnswer | null | 'changed' | 'async' {
  const cache = opts.cache;
  if (wantsCached(req, info, opts)) {
    let entry = cache!.get(backend, key, info.version);
    if (entry) opts.metrics?.cacheHit(CACHE_NAME);
    else {
      opts.metrics?.cacheMiss(CACHE_NAME);
      const got = read();
      if (!got) return null;
      if (got.info.version !== info.version) return 'changed';
      entry = cache!.set(backend, key, got.data, got.info) ?? { version: info.version, info, data: got.data };
    }
    return buffered(req, cls, entry, opts);
  }
  const d = decide(req, cls, info, opts);
  if (d.status === 304 || d.status === 416 || req.method === 'HEAD') return d;
  return 'async';
}

/** A GET of a file small enough for the cache: answered from (or into) it. */
function wantsCached(req: FileRequest, info: BlobInfo, opts: ServeFileOptions): boolean {
  return req.method !== 'HEAD' && opts.cache?.accepts(info.size) === true;
}

/**
 * Files small enough to cache are read in one blocking go where the driver
 * is blocking (see Backend.readFast): from the page cache that is a few
 * microseconds, where four thread-pool round trips (open, fstat, read,
 * close) added up to most of a small file's latency.
 */
function readNowOf(backend: Backend, key: string): () => Got {
  return () => nowOf(backend.readFast(key));
}

async function answerVersion(req: FileRequest, backend: Backend, key: string, cls: RepoFileClass, info: BlobInfo, opts: ServeFileOptions): Promise<FileAnswer | null | 'changed'> {
  let read: () => Got;
  if (backend.blocking) read = readNowOf(backend, key);
  else {
    const got = wantsCached(req, info, opts) && !opts.cache!.get(backend, key, info.version) ? await backend.read(key) : null;
    read = () => got;
  }
  const now = answerVersionNow(req, backend, key, cls, info, opts, read);
  if (now !== 'async') return now;
  const d = decide(req, cls, info, opts);
  // Large files: sent from an open handle, never read whole.
  const start = d.range?.start ?? 0;
  const end = d.range?.end ?? info.size - 1;
  // Local storage: an open reader (one reused buffer); remote storage: one streamed GET, not a request per read.
  if (backend.blocking) {
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

/** The answer for a file whose bytes (of one version) the caller holds: validators, 304, ranges, HEAD. */
export function answerEntry(req: FileRequest, cls: RepoFileClass, entry: CacheEntry, opts: ServeFileOptions): FileAnswer {
  return buffered(req, cls, entry, opts);
}

/**
 * A file whose bytes we hold. The commonest answer of a pull, a
 * content-addressed object of a public repository asked for without
 * validators or a range, is fixed by the object's version: its head is built
 * once per cache entry.
 */
function buffered(req: FileRequest, cls: RepoFileClass, entry: CacheEntry, opts: ServeFileOptions): FileAnswer {
  if (cls.contentId && !opts.privateRepo && !hasValidatorsOrRange(req.headers)) {
    const fixed = fixedHead(cls, entry);
    if (fixed) return { status: 200, headers: fixed.headers, fixed, body: req.method === 'HEAD' ? undefined : entry.data };
  }
  const d = decide(req, cls, entry.info, opts);
  if (d.status === 304 || d.status === 416 || req.method === 'HEAD') return d;
  return { status: d.status, headers: d.headers, body: d.range ? entry.data.subarray(d.range.start, d.range.end + 1) : entry.data };
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
 * and as a writeHead list, built once per cache entry (the entry is of one
 * version of the file). Undefined until the file's second is over: its
 * Last-Modified is not usable before (see conditional.ts).
 */
export interface FixedHead {
  headers: OutgoingHttpHeaders;
  /** `Name: value\r\n` lines, for the HTTP/1.1 front. */
  lines: string;
  /** Flat [name, value, …], for writeHead. */
  list: string[];
}

function fixedHead(cls: RepoFileClass, entry: CacheEntry): FixedHead | undefined {
  if (entry.head) return entry.head;
  const now = Date.now();
  if (!lastModifiedUsable(entry.info.mtimeMs, now)) return undefined;
  const headers = fileHeaders(cls, entry.info, { etag: etagFor(cls, entry.info), mtimeMs: entry.info.mtimeMs, nowMs: now }, false);
  headers['Content-Length'] = entry.info.size;
  const list = Object.entries(headers).flatMap(([k, v]) => [k, String(v)]);
  let lines = '';
  for (let i = 0; i < list.length; i += 2) lines += `${list[i]}: ${list[i + 1]}\r\n`;
  entry.head = { headers, lines, list };
  return entry.head;
}

/** Whether a request carries a validator or a range (which the fixed answer does not consider). */
function hasValidatorsOrRange(h: IncomingHttpHeaders): boolean {
  return h.range !== undefined || h['if-range'] !== undefined || h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined;
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
