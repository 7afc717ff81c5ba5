/**
 * Cooperative cancellation of delta compiles.
 *
 * A compile runs in a worker thread (server/jobs/worker.ts) and uses the xz
 * native addon on the libuv pool. Terminating the thread while the addon has
 * work in flight aborts the whole process (a fatal error in the addon's
 * completion callback, exit 134), so a compile is never cut from outside:
 * it is asked to stop (an AbortSignal), checks at object and part boundaries
 * and between xz input chunks, lets the native work in flight finish, removes
 * what it wrote, and throws CancelledError.
 *
 * NativeGate brackets every piece of native work that must not be cut, so the
 * thread's owner can tell when terminating is safe (worker.ts keeps a count in
 * shared memory and terminates a thread that ignored a cancel past its grace
 * period only while that count is zero).
 */

/** The typed error of a compile that stopped because it was asked to. */
export class CancelledError extends Error {
  readonly code = 'CANCELLED';
  constructor(message = 'the delta compile was cancelled') {
    super(message);
    this.name = 'CancelledError';
  }
}

export function isCancelled(e: unknown): boolean {
  return e instanceof CancelledError || (e as { code?: unknown } | null)?.code === 'CANCELLED';
}

/** Throws CancelledError if `signal` was aborted. */
export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError();
}

/**
 * Brackets native work that must not be cut by a thread termination.
 * `enter` throws CancelledError instead of admitting new work once a cancel
 * was requested; every successful `enter` is paired with one `leave`.
 */
export interface NativeGate {
  enter(): void;
  leave(): void;
}

/** A gate that only checks `signal` (in-process compiles: nobody terminates the thread). */
export function signalGate(signal: AbortSignal | undefined): NativeGate {
  return { enter: () => throwIfCancelled(signal), leave: () => {} };
}
