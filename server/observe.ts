import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import type { Logger, RequestLogFields } from './logging';
import type { Metrics } from './metrics';

/**
 * First middleware of the app: times every request and counts the body bytes
 * actually written, then writes the request log line and the metrics once the
 * response is over (finished, or cut short by the client: `close` fires either way).
 * Routes name themselves in `res.locals.route` (bounded labels) and
 * `res.locals.repo`.
 */
export function observeRequests(log: Logger, metrics: Metrics | undefined): RequestHandler {
  return (req, res, next) => {
    observe(log, metrics, req, res, res.locals as ObservedLabels, process.hrtime.bigint(), req.originalUrl);
    next();
  };
}

export interface ObservedLabels {
  route?: unknown;
  repo?: unknown;
}

export interface Observation {
  /** Forget this request (it is handed to another handler that observes it itself). */
  cancel(): void;
}

/**
 * The same for a plain node:http request (the fast path): one log line and
 * one observation when `res` closes, with the labels read at that moment.
 */
export function observe(log: Logger, metrics: Metrics | undefined, req: IncomingMessage, res: ServerResponse, labels: ObservedLabels, start: bigint, url = req.url ?? ''): Observation {
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
export type RecordedRequest = RequestLogFields & { route: string };

/** The one accounting of an answered request, whichever transport wrote it: the metrics and the request log line. */
export function recordRequest(log: Logger, metrics: Metrics | undefined, r: RecordedRequest): void {
  metrics?.observeRequest({ route: r.route, method: r.method, status: r.status, bytes: r.bytes, durationMs: r.durationMs });
  log.request({ method: r.method, path: r.path, status: r.status, bytes: r.bytes, durationMs: r.durationMs, repo: r.repo, aborted: r.aborted });
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
