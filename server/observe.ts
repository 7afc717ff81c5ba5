import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import type { Logger, RequestLogFields } from './logging';
import type { Metrics } from './metrics';

/**
 * First middleware of the app: gives the request its id (X-Request-Id, see
 * requestIdOf), times it and counts the body bytes actually written, then
 * writes the request log line and the metrics once the response is over
 * (finished, or cut short by the client: `close` fires either way).
 * Routes name themselves in `res.locals.route` (bounded labels) and
 * `res.locals.repo`.
 */
export function observeRequests(log: Logger, metrics: Metrics | undefined): RequestHandler {
  return (req, res, next) => {
    const id = requestIdOf(req.headers['x-request-id']);
    res.locals.requestId = id;
    res.setHeader(REQUEST_ID_HEADER, id);
    observe(log, metrics, req, res, res.locals as ObservedLabels, process.hrtime.bigint(), id, req.originalUrl);
    next();
  };
}

/** The response header that carries a request's id (also in its log line, as `request_id`). */
export const REQUEST_ID_HEADER = 'X-Request-Id';

/** What a client may send as its own request id: 1 to 64 of [A-Za-z0-9._-] (safe in a header and a log line as it is). */
const SANE_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;
/** Generated ids: a random prefix per process, then a counter (base 36): unique across workers and restarts in practice, and cheap. */
const ID_PREFIX = randomBytes(6).toString('base64url').replace(/[-_]/g, 'x');
let idCounter = 0;

/**
 * The id of a request, whichever transport answers it: the client's own
 * `X-Request-Id` when it is sane (a proxy in front keeps its ids), else a new
 * one. Echoed in the answer's `X-Request-Id` and written in its log line.
 */
export function requestIdOf(header: string | string[] | undefined): string {
  if (typeof header === 'string' && SANE_REQUEST_ID.test(header)) return header;
  return ID_PREFIX + '-' + (++idCounter).toString(36);
}

export interface ObservedLabels {
  route?: unknown;
  repo?: unknown;
  /** A repository file: what the update-traffic recorder is told once the answer is over. */
  served?: ServedFile;
}

/** Where update traffic goes: storage/browse TrafficRecorder, or its forwarder to a cluster's primary (server/api/traffic.ts). */
export interface TrafficSink {
  record(repo: string, relPath: string, bytes: number, status: number, client?: string): void;
}

/** A repository file answered: its repository, its path inside it, the client's address, and the sink to tell. */
export interface ServedFile {
  traffic: TrafficSink;
  repo: string;
  key: string;
  client?: string;
}

export interface Observation {
  /** Forget this request (it is handed to another handler that observes it itself). */
  cancel(): void;
}

/**
 * The same for a plain node:http request (the fast path): one log line and
 * one observation when `res` closes, with the labels read at that moment.
 */
export function observe(log: Logger, metrics: Metrics | undefined, req: IncomingMessage, res: ServerResponse, labels: ObservedLabels, start: bigint, requestId: string, url = req.url ?? ''): Observation {
  const counter = countBodyBytes(req, res);
  const onClose = () => {
    const durationMs = Number(process.hrtime.bigint() - start) / 1e6;
    const route = typeof labels.route === 'string' ? labels.route : 'unmatched';
    const aborted = !res.writableFinished;
    recordRequest(log, metrics, {
      route,
      method: req.method ?? 'GET',
      path: url.indexOf('?') === -1 ? url : url.slice(0, url.indexOf('?')),
      status: res.statusCode,
      bytes: counter.bytes(),
      durationMs,
      repo: typeof labels.repo === 'string' ? labels.repo : undefined,
      aborted,
      requestId,
      served: labels.served,
    });
  };
  res.once('close', onClose);
  return {
    cancel() {
      res.off('close', onClose);
      counter.restore();
    },
  };
}

/** A request answered: its log line's fields and its metrics route label. */
export type RecordedRequest = RequestLogFields & { route: string; served?: ServedFile };

/** The one accounting of an answered request, whichever transport wrote it: the metrics, the request log line, and update traffic (GETs of repository files). */
export function recordRequest(log: Logger, metrics: Metrics | undefined, r: RecordedRequest): void {
  metrics?.observeRequest({ route: r.route, method: r.method, status: r.status, bytes: r.bytes, durationMs: r.durationMs });
  log.request({ method: r.method, path: r.path, status: r.status, bytes: r.bytes, durationMs: r.durationMs, repo: r.repo, aborted: r.aborted, requestId: r.requestId });
  if (r.served && r.method === 'GET') r.served.traffic.record(r.served.repo, r.served.key, r.bytes, r.status, r.served.client);
}

/** Wraps write/end to count body bytes (HEAD bodies are discarded by node, so they count 0). */
function countBodyBytes(req: IncomingMessage, res: ServerResponse): { bytes(): number; restore(): void } {
  let bytes = 0;
  const add = (chunk: unknown, encoding: unknown) => {
    if (typeof chunk === 'string') bytes += Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
    else if (chunk instanceof Uint8Array) bytes += chunk.byteLength;
  };
  const hadOwnWrite = Object.prototype.hasOwnProperty.call(res, 'write');
  const hadOwnEnd = Object.prototype.hasOwnProperty.call(res, 'end');
  const write = res.write;
  const end = res.end;
  res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
    add(chunk, rest[0]);
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as ServerResponse['write'];
  res.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
    if (typeof chunk !== 'function') add(chunk, rest[0]);
    return (end as (...a: unknown[]) => ServerResponse).call(this, chunk, ...rest);
  } as ServerResponse['end'];
  return {
    bytes: () => (req.method === 'HEAD' ? 0 : bytes),
    restore() {
      if (hadOwnWrite) res.write = write;
      else delete (res as { write?: unknown }).write;
      if (hadOwnEnd) res.end = end;
      else delete (res as { end?: unknown }).end;
    },
  };
}
