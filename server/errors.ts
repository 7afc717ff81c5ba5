import type { ErrorRequestHandler, Request, Response } from 'express';
import { CairnError, type ErrorCode } from '../storage/errors';
import type { Logger } from './logging';

/**
 * The one place where an error becomes an HTTP status and a body.
 *
 * API routes (`/api/…`, `/healthz`, `/metrics`) answer JSON
 * `{ "error": { "code", "message" } }`; repository files answer a plain status
 * with a one-line text body (the ostree client only looks at the status).
 * Stack traces and internal messages never reach the client: 5xx bodies are
 * generic, and the details go to the log.
 */

const STATUS: Record<ErrorCode, number> = {
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  INVALID_ARGUMENT: 400,
  INVALID_PATH: 400,
  INVALID_REF: 400,
  INVALID_CHECKSUM: 400,
  INVALID_GVARIANT: 400,
  INVALID_OBJECT: 400,
  CHECKSUM_MISMATCH: 400,
  TOO_LARGE: 413,
  CONFLICT: 409,
  MISSING_OBJECTS: 422,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_OWNED: 403,
  // 501 rather than 422: the request may be fine, Cairn just does not
  // implement it (e.g. a repository mode). libostree does not retry 501,
  // which is right since retrying cannot help.
  UNSUPPORTED: 501,
  // 507 (RFC 4918): the server is out of space (ENOSPC/EDQUOT). Nothing was
  // left half-written; the same request succeeds once space is freed.
  INSUFFICIENT_STORAGE: 507,
  IO: 500,
};

export function statusForCode(code: string): number {
  return (STATUS as Record<string, number | undefined>)[code] ?? 500;
}

/** The codes used for statuses that do not come from a CairnError. */
function codeForStatus(status: number): string {
  if (status === 404) return 'NOT_FOUND';
  if (status === 405) return 'METHOD_NOT_ALLOWED';
  if (status === 413) return 'TOO_LARGE';
  if (status === 416) return 'RANGE_NOT_SATISFIABLE';
  if (status >= 500) return 'INTERNAL';
  return 'BAD_REQUEST';
}

export interface HttpErrorInfo {
  status: number;
  code: string;
  message: string;
  /** Structured facts for API clients (conflicting refs, missing objects, the object at fault). */
  details?: Record<string, unknown>;
}

/** What the client is told about `err`. */
export function describeError(err: unknown): HttpErrorInfo {
  if (err instanceof CairnError) {
    const status = statusForCode(err.code);
    // IO messages name storage internals; keep them in the log only.
    if (err.code === 'INSUFFICIENT_STORAGE') return { status, code: err.code, message: 'not enough storage space on the server; nothing was written' };
    if (status >= 500) return { status, code: err.code, message: 'internal storage error' };
    return { status, code: err.code, message: err.message, details: err.details };
  }
  // Errors from express/body-parser/multer carry a 4xx `status` and `expose`.
  const e = err as { status?: unknown; statusCode?: unknown; expose?: unknown; message?: unknown; type?: unknown } | null;
  const status = Number(e?.status ?? e?.statusCode);
  if (Number.isInteger(status) && status >= 400 && status < 500) {
    const message = e?.expose === true && typeof e.message === 'string' ? e.message : httpReason(status);
    return { status, code: codeForStatus(status), message };
  }
  return { status: 500, code: 'INTERNAL', message: 'internal server error' };
}

/** Routes whose errors are JSON. Everything else is a file route. */
export function isApiPath(path: string): boolean {
  return path === '/api' || path.startsWith('/api/') || path === '/healthz' || path === '/metrics';
}

/** Sends an error response in the form the route calls for. */
export function sendError(req: Request, res: Response, info: HttpErrorInfo): void {
  if (res.headersSent) {
    // Mid-body: the only honest signal left is a broken connection (the
    // client then retries) rather than a short body that looks complete.
    res.destroy();
    return;
  }
  // Validators and cache headers set for a file must not describe the error.
  for (const h of ['etag', 'last-modified', 'cache-control', 'content-range', 'accept-ranges', 'content-encoding']) res.removeHeader(h);
  res.statusCode = info.status;
  let body: string;
  if (isApiPath(req.originalUrl.split('?', 1)[0])) {
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    body = JSON.stringify({ error: { code: info.code, message: info.message, ...(info.details ? { details: info.details } : {}) } });
  } else {
    for (const [name, value] of Object.entries(fileErrorHeaders(info))) if (name !== 'Content-Length') res.setHeader(name, value);
    body = '';
  }
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(req.method === 'HEAD' ? undefined : body);
}

/**
 * The headers of an error answer for a repository or mount file, whose body is
 * empty: libostree 2022.7's curl fetcher keeps the bytes of a failed mirror's
 * response and prepends them to the next mirror's file (ostreedev/ostree#3546),
 * so any body here corrupts the object the client gets from the mirror that
 * has it. The reason still reaches humans (curl -i) in a header.
 */
export function fileErrorHeaders(info: HttpErrorInfo): Record<string, string | number> {
  const detail = info.status < 500 && info.message && info.message !== 'not found' ? info.message : httpReason(info.status);
  return {
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    'X-Cairn-Error': detail.replace(/[^\x20-\x7e]+/g, ' ').slice(0, 300),
    'Content-Length': 0,
  };
}

/**
 * What a request that names a repository Cairn does not have is told on the
 * API and key routes (404 NOT_FOUND); a private repository the caller may not
 * read gets exactly this answer too (GitHub's rule: its name cannot be probed).
 */
export function noSuchRepository(name: string): CairnError {
  return new CairnError('NOT_FOUND', `no repository named ${name.slice(0, 80)} (or it is private and the request's credentials may not read it)`);
}

export function sendNotFound(req: Request, res: Response, message = 'not found'): void {
  sendError(req, res, { status: 404, code: 'NOT_FOUND', message });
}

/** The last middleware of the app. */
export function errorMiddleware(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const info = describeError(err);
    if (info.status >= 500) {
      log.error('request failed', {
        method: req.method,
        path: req.path,
        err: err instanceof Error ? err.message : String(err),
        code: (err as { code?: unknown })?.code,
        stack: err instanceof Error ? err.stack : undefined,
      });
    }
    sendError(req, res, info);
  };
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  416: 'Range Not Satisfiable',
  422: 'Unprocessable Content',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
  507: 'Insufficient Storage',
};

function httpReason(status: number): string {
  return REASONS[status] ?? (status >= 500 ? 'Server Error' : 'Client Error');
}
