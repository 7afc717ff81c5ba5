import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay, DEFAULT_RETRY, isRetryableStatus, retryAfterMs, type RetryPolicy } from './retry';

/** An answer from the server that is not a success: its status and the `{ error: { code, message, details } }` envelope. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> | undefined,
    readonly request: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The request never got an HTTP answer (refused, reset, DNS, stalled). */
export class TransportError extends Error {
  constructor(
    message: string,
    readonly request: string,
  ) {
    super(message);
    this.name = 'TransportError';
  }
}

/** A request body, built afresh for every attempt (a stream can only be read once). */
export interface RequestBody {
  body: string | Buffer | AsyncIterable<Uint8Array>;
  headers: Record<string, string>;
}

export interface SendOptions {
  /** Builds the body for one attempt; called again before each retry. */
  body?: () => RequestBody;
  /** Statuses that are a success (default: any 2xx). */
  ok?: (status: number) => boolean;
  /** Called when an attempt failed and another one follows (e.g. to take back progress). */
  onRetry?: (err: Error, attempt: number, delayMs: number) => void;
}

export interface ClientOptions {
  apiBase: string;
  token?: string;
  retry?: RetryPolicy;
  /**
   * Give up on an attempt after this long without progress: no body bytes
   * pulled by the connection and no response. A total timeout would kill
   * honest multi-GB uploads; a stall timeout only kills dead connections.
   */
  stallTimeoutMs?: number;
  /** For logs/progress: every retry of any request. */
  onRetry?: (request: string, err: Error, attempt: number, delayMs: number) => void;
}

/**
 * The push side of Cairn's HTTP API: JSON in and out, bearer auth, and retry
 * with backoff for network errors and the retryable statuses. Uses Node's
 * global fetch (undici); bodies may be async iterables, so nothing large is
 * ever buffered.
 */
export class ApiClient {
  readonly retry: RetryPolicy;
  private readonly stallTimeoutMs: number;

  constructor(private readonly opts: ClientOptions) {
    this.retry = opts.retry ?? DEFAULT_RETRY;
    this.stallTimeoutMs = opts.stallTimeoutMs ?? 120_000;
  }

  /** JSON request → parsed JSON answer (throws ApiError for non-success). */
  async json<T>(method: string, path: string, payload?: unknown, opts: Omit<SendOptions, 'body'> = {}): Promise<{ status: number; body: T }> {
    const text = payload === undefined ? undefined : JSON.stringify(payload);
    return this.send<T>(method, path, {
      ...opts,
      body: text === undefined ? undefined : () => ({ body: text, headers: { 'content-type': 'application/json' } }),
    });
  }

  /** Any request, retried per the policy; the answer must be JSON (or empty). */
  async send<T>(method: string, path: string, opts: SendOptions = {}): Promise<{ status: number; body: T }> {
    const label = `${method} ${path}`;
    for (let attempt = 0; ; attempt++) {
      let err: Error;
      let retryAfter: number | undefined;
      try {
        return await this.attempt<T>(method, path, label, opts);
      } catch (e) {
        err = e as Error;
        if (e instanceof ApiError) {
          if (!isRetryableStatus(e.status)) throw e;
          retryAfter = retryAfterMs(e.details?.retryAfter as string | undefined, this.retry);
        } else if (!(e instanceof TransportError)) throw e;
      }
      if (attempt >= this.retry.retries) throw err;
      const delay = retryAfter ?? backoffDelay(attempt, this.retry);
      opts.onRetry?.(err, attempt + 1, delay);
      this.opts.onRetry?.(label, err, attempt + 1, delay);
      await sleep(delay);
    }
  }

  private async attempt<T>(method: string, path: string, label: string, opts: SendOptions): Promise<{ status: number; body: T }> {
    const ctrl = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const stalled = () => {
      clearTimeout(timer);
      // Once answered, a body still being pulled (the server answered early, e.g. 507) arms nothing:
      // a timer armed then would keep the process alive for stallTimeoutMs after the push is over.
      if (settled) return;
      timer = setTimeout(() => ctrl.abort(new TransportError(`no progress for ${Math.round(this.stallTimeoutMs / 1000)} s`, label)), this.stallTimeoutMs);
    };
    stalled();
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    let body: RequestBody['body'] | undefined;
    // A failure while reading our own body (a local file vanished or changed
    // size) reaches us from fetch as a network error; remember the real one,
    // which is final: retrying would read the same broken file again.
    const local: { error?: Error } = {};
    if (opts.body) {
      const b = opts.body();
      Object.assign(headers, b.headers);
      body = typeof b.body === 'string' || Buffer.isBuffer(b.body) ? b.body : watch(b.body, stalled, local);
    }
    try {
      let res: Response;
      try {
        res = await fetch(this.opts.apiBase + path, {
          method,
          headers,
          body: body as BodyInit | undefined,
          signal: ctrl.signal,
          // Required by undici for a streamed request body.
          ...(body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body) ? { duplex: 'half' } : {}),
        } as RequestInit);
      } catch (e) {
        throw local.error ?? toTransportError(e, ctrl.signal, label);
      }
      stalled();
      let text: string;
      try {
        text = await res.text();
      } catch (e) {
        throw toTransportError(e, ctrl.signal, label);
      }
      const ok = opts.ok ? opts.ok(res.status) : res.status >= 200 && res.status < 300;
      if (!ok) throw errorFromResponse(res, text, label);
      try {
        return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
      } catch {
        throw new ApiError(res.status, 'BAD_RESPONSE', `server answered ${res.status} with something that is not JSON: ${snippet(text)}`, undefined, label);
      }
    } finally {
      settled = true;
      clearTimeout(timer);
    }
  }
}

/** Re-arms the stall timer every time the connection pulls a chunk of the body. */
async function* watch(source: AsyncIterable<Uint8Array>, tick: () => void, local: { error?: Error }): AsyncIterable<Uint8Array> {
  try {
    for await (const chunk of source) {
      tick();
      yield chunk;
    }
  } catch (e) {
    local.error = e as Error;
    throw e;
  }
}

function toTransportError(e: unknown, signal: AbortSignal, label: string): Error {
  if (signal.aborted && signal.reason instanceof TransportError) return signal.reason;
  const err = e as Error & { cause?: Error & { code?: string } };
  const cause = err.cause ? `${err.cause.code ?? ''} ${err.cause.message}`.trim() : '';
  return new TransportError(cause ? `${err.message}: ${cause}` : err.message, label);
}

function errorFromResponse(res: Response, text: string, label: string): ApiError {
  let code = `HTTP_${res.status}`;
  let message = `${res.status} ${res.statusText}`.trim();
  let details: Record<string, unknown> | undefined;
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; details?: unknown } };
    if (parsed.error && typeof parsed.error === 'object') {
      if (typeof parsed.error.code === 'string') code = parsed.error.code;
      if (typeof parsed.error.message === 'string') message = parsed.error.message;
      if (parsed.error.details && typeof parsed.error.details === 'object') details = parsed.error.details as Record<string, unknown>;
    }
  } catch {
    if (text.trim()) message += `: ${snippet(text)}`;
  }
  const ra = res.headers.get('retry-after');
  if (ra) details = { ...details, retryAfter: ra };
  return new ApiError(res.status, code, message, details, label);
}

function snippet(text: string): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > 200 ? `${one.slice(0, 200)}…` : one;
}
