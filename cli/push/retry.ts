/**
 * When and how long to wait before trying a request again. Pure functions, so
 * the policy is testable without a network.
 */

export interface RetryPolicy {
  /** Further attempts after the first one (0: never retry). */
  retries: number;
  /** First backoff, doubled every attempt. */
  baseMs: number;
  /** Cap of one backoff (before jitter). */
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { retries: 6, baseMs: 250, maxMs: 15_000 };

/**
 * Statuses worth another try: timeouts, throttling and the gateway/server
 * errors a restart or an overloaded server produces. Everything else (400
 * bad object, 401/403 auth, 409 conflict, 422 missing objects, 507 out of
 * storage space…) will answer the same way again, so retrying only delays
 * the error.
 */
const RETRYABLE = new Set([408, 429, 500, 502, 503, 504]);

export function isRetryableStatus(status: number): boolean {
  return RETRYABLE.has(status);
}

/**
 * Exponential backoff with "equal jitter": half of the exponential delay is
 * fixed, the other half random. Full jitter can pick ~0 ms several times in a
 * row, which hammers a server that is restarting; no jitter makes parallel
 * upload workers retry in lock-step.
 */
export function backoffDelay(attempt: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt));
  return Math.round(exp / 2 + random() * (exp / 2));
}

/**
 * A server that says when to come back (Retry-After: seconds or an HTTP date)
 * is believed, within the policy's cap so a bogus value cannot stall a push.
 */
export function retryAfterMs(header: string | null | undefined, policy: RetryPolicy, now: number = Date.now()): number | undefined {
  if (!header) return undefined;
  const trimmed = header.trim();
  let ms: number;
  if (/^\d+$/.test(trimmed)) ms = Number(trimmed) * 1000;
  else {
    const t = Date.parse(trimmed);
    if (Number.isNaN(t)) return undefined;
    ms = t - now;
  }
  return Math.max(0, Math.min(ms, policy.maxMs));
}
