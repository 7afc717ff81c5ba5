import { isMainThread, parentPort, Worker, workerData, type ResourceLimits } from 'node:worker_threads';
import { CancelledError, type NativeGate } from '../../storage/deltas/cancel';
import type { JobProgress } from './queue';

/**
 * Runs one function of one module in a fresh worker thread, so CPU-heavy job
 * work (compiling a delta: hashing, bsdiff, xz) never runs on the event loop
 * that answers requests. One thread per job: jobs are long (seconds), a thread
 * costs tens of milliseconds, and its memory is returned when it ends.
 *
 * The task is named by module path and export name (never by user input): the
 * worker `require`s the module and calls `fn(params, progress, ctx)`.
 * Parameters and results cross the thread boundary by structured clone, so
 * they must be plain data; errors come back with their `code` and message.
 *
 * Cancellation is cooperative. Terminating a thread while a native addon has
 * work in flight on the libuv pool (the xz encoder) aborts the whole process,
 * so aborting `signal` only *asks*: the task's `ctx.signal` is aborted (a
 * message, seen at the task's next await) and a shared flag is set; the task
 * stops at its next check and answers CANCELLED. Only a task that has not
 * answered within `graceMs` (one stuck in a long synchronous loop) is
 * terminated, and only at a moment when no native work is in flight: the task
 * brackets such work with `ctx.gate` (enter/leave), which counts it in shared
 * memory and refuses new work once the flag is set (the count is raised before
 * the flag is read, the flag set before the count is read: with sequentially
 * consistent atomics one side always sees the other). The promise settles only
 * once the thread has exited, so whoever awaits it (queue close, shutdown)
 * never exits the process under a live thread; the thread is not unref'd for
 * the same reason.
 *
 * This file is also the worker's entry point (see the bottom).
 */

export interface WorkerTask {
  /** Absolute path of the compiled module (use `require.resolve` or `__filename`). */
  module: string;
  /** Name of the exported `(params, progress, ctx) => Promise<result>` function. */
  export: string;
}

/** What a task gets besides its parameters. */
export interface WorkerTaskContext {
  /** Aborted when the caller cancels: stop at the next check, throw CancelledError. */
  signal: AbortSignal;
  /** Brackets native work that must not be cut by a termination (see above). */
  gate: NativeGate;
}

export type WorkerTaskFn<P, R> = (params: P, progress: (p: JobProgress) => void, ctx: WorkerTaskContext) => Promise<R>;

export interface RunInWorkerOptions {
  onProgress?(p: JobProgress): void;
  /** Aborting asks the task to stop; the promise rejects with code CANCELLED once the thread exited. */
  signal?: AbortSignal;
  /** How long a cancelled task may take to stop before its thread is terminated (when safe); default 5 s. */
  graceMs?: number;
  resourceLimits?: ResourceLimits;
}

export const DEFAULT_CANCEL_GRACE_MS = 5000;

const MARK = '__cairnJobWorker';
/** Int32 slots of the shared control block. */
const CANCEL = 0;
const NATIVE_BUSY = 1;
/** How often a terminate waiting for native work to end looks again. */
const BUSY_POLL_MS = 25;

type Message = { type: 'progress'; progress: JobProgress } | { type: 'result'; value: unknown } | { type: 'error'; code: string; message: string };

export class WorkerTaskError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'WorkerTaskError';
  }
}

export function runInWorker<P, R>(task: WorkerTask, params: P, opts: RunInWorkerOptions = {}): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    if (opts.signal?.aborted) return reject(new WorkerTaskError('CANCELLED', 'cancelled before it started'));
    const control = new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT));
    const worker = new Worker(__filename, {
      workerData: { [MARK]: true, module: task.module, export: task.export, params, control: control.buffer },
      resourceLimits: opts.resourceLimits,
    });
    /** The first answer (or failure); delivered when the thread has exited. */
    let outcome: { ok: true; value: R } | { ok: false; error: WorkerTaskError } | undefined;
    let timer: NodeJS.Timeout | undefined;
    let terminating = false;
    let exited = false;
    /** Terminates the thread as soon as no native work is in flight in it (at once, normally). */
    const terminateWhenSafe = () => {
      if (terminating || exited) return;
      if (Atomics.load(control, NATIVE_BUSY) !== 0) {
        timer = setTimeout(terminateWhenSafe, BUSY_POLL_MS);
        return;
      }
      terminating = true;
      void worker.terminate();
    };
    const answer = (o: NonNullable<typeof outcome>) => {
      outcome ??= o;
      // The answer is in: whatever handles the task left open must not keep the thread alive.
      // A task awaits its native work before it answers; the check is for one that did not.
      clearTimeout(timer);
      terminateWhenSafe();
    };
    const onAbort = () => {
      Atomics.store(control, CANCEL, 1);
      worker.postMessage({ type: 'cancel' });
      const graceMs = opts.graceMs ?? DEFAULT_CANCEL_GRACE_MS;
      timer = setTimeout(() => {
        outcome ??= { ok: false, error: new WorkerTaskError('CANCELLED', `the job was cancelled (its thread was terminated after ${graceMs} ms without stopping)`) };
        terminateWhenSafe();
      }, graceMs);
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (m: Message) => {
      if (m.type === 'progress') opts.onProgress?.(m.progress);
      else if (m.type === 'result') answer({ ok: true, value: m.value as R });
      else if (m.type === 'error') answer({ ok: false, error: new WorkerTaskError(m.code, m.message) });
    });
    worker.on('error', (e) => answer({ ok: false, error: new WorkerTaskError(codeOf(e) ?? 'INTERNAL', `worker failed: ${e.message}`) }));
    worker.on('exit', (code) => {
      exited = true;
      opts.signal?.removeEventListener('abort', onAbort);
      clearTimeout(timer);
      const o = outcome ?? { ok: false, error: new WorkerTaskError('INTERNAL', `worker exited with status ${code} before answering`) };
      if (o.ok) resolve(o.value);
      else reject(o.error);
    });
  });
}

function codeOf(e: unknown): string | undefined {
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'string' ? c : undefined;
}

// ---------------------------------------------------------------------------------------------
// Worker side

async function workerMain(data: { module: string; export: string; params: unknown; control: SharedArrayBuffer }): Promise<void> {
  const port = parentPort!;
  const control = new Int32Array(data.control);
  const abort = new AbortController();
  port.on('message', (m: { type?: string }) => {
    if (m?.type === 'cancel') abort.abort();
  });
  const gate: NativeGate = {
    enter() {
      Atomics.add(control, NATIVE_BUSY, 1);
      if (Atomics.load(control, CANCEL) !== 0) {
        Atomics.sub(control, NATIVE_BUSY, 1);
        abort.abort();
        throw new CancelledError();
      }
    },
    leave() {
      Atomics.sub(control, NATIVE_BUSY, 1);
    },
  };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(data.module) as Record<string, unknown>;
    const fn = mod[data.export];
    if (typeof fn !== 'function') throw new WorkerTaskError('INTERNAL', `${data.module} exports no function ${data.export}`);
    // Progress is throttled: a compiler may report per object, the status API needs a few per second.
    let last = 0;
    const progress = (p: JobProgress) => {
      const now = Date.now();
      if (now - last < 200 && p.done !== p.total) return;
      last = now;
      port.postMessage({ type: 'progress', progress: p } satisfies Message);
    };
    const value = await (fn as WorkerTaskFn<unknown, unknown>)(data.params, progress, { signal: abort.signal, gate });
    port.postMessage({ type: 'result', value } satisfies Message);
  } catch (e) {
    port.postMessage({ type: 'error', code: codeOf(e) ?? 'INTERNAL', message: e instanceof Error ? e.message : String(e) } satisfies Message);
  }
}

if (!isMainThread && (workerData as Record<string, unknown> | null)?.[MARK]) {
  void workerMain(workerData as { module: string; export: string; params: unknown; control: SharedArrayBuffer });
}
