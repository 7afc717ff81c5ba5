import type { RequestHandler, Response } from 'express';
import type { Logger } from './logging';
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
    const start = process.hrtime.bigint();
    const counter = countBodyBytes(res);
    res.once('close', () => {
      const durationMs = Number(process.hrtime.bigint() - start) / 1e6;
      const route = typeof res.locals.route === 'string' ? res.locals.route : 'unmatched';
      const aborted = !res.writableFinished;
      const status = res.statusCode;
      const bytes = counter();
      metrics?.observeRequest({ route, method: req.method, status, bytes, durationMs });
      log.request({
        method: req.method,
        path: req.originalUrl.split('?', 1)[0],
        status,
        bytes,
        durationMs,
        repo: typeof res.locals.repo === 'string' ? res.locals.repo : undefined,
        aborted,
      });
    });
    next();
  };
}

/** Wraps write/end to count body bytes (HEAD bodies are discarded by node, so they count 0). */
function countBodyBytes(res: Response): () => number {
  let bytes = 0;
  const add = (chunk: unknown, encoding: unknown) => {
    if (typeof chunk === 'string') bytes += Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
    else if (chunk instanceof Uint8Array) bytes += chunk.byteLength;
  };
  const write = res.write;
  const end = res.end;
  res.write = function (this: Response, chunk: unknown, ...rest: unknown[]) {
    add(chunk, rest[0]);
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as Response['write'];
  res.end = function (this: Response, chunk?: unknown, ...rest: unknown[]) {
    if (typeof chunk !== 'function') add(chunk, rest[0]);
    return (end as (...a: unknown[]) => Response).call(this, chunk, ...rest);
  } as Response['end'];
  return () => (res.req.method === 'HEAD' ? 0 : bytes);
}
