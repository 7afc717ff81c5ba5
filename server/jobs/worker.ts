import { isMainThread, parentPort, Worker, workerData, type ResourceLimits } from 'node:worker_threads';
import type { JobProgress } from './queue';

/**
 * Runs one function of one module in a fresh worker thread, so CPU-heavy job
 * work (compiling a delta: hashing, bsdiff, xz) never runs on the event loop
 * that answers requests. One thread per job: jobs are long (seconds), a thread
 * costs tens of milliseconds, and its memory is returned when it ends.
 *
 * The task is named by module path and export name (never by user input): the
 * worker `require`s the module and calls `fn(params, progress)`. Parameters
 * and results cross the thread boundary by structured clone, so they must be
 * plain data; errors come back with their `code` and message.
 *
 * This file is also the worker's entry point (see the bottom).
 */

export interface WorkerTask {
  /** Absolute path of the compiled module (use `require.resolve` or `__filename`). */
  module: string;
  /** Name of the exported `(params, progress) => Promise<result>` function. */
  export: string;
}

export type WorkerTaskFn<P, R> = (params: P, progress: (p: JobProgress) => void) => Promise<R>;

export interface RunInWorkerOptions {
  onProgress?(p: JobProgress): void;
  /** Aborting terminates the thread; the promise rejects with code CANCELLED. */
  signal?: AbortSignal;
  resourceLimits?: ResourceLimits;
}

const MARK = '__cairnJobWorker';

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
    const worker = new Worker(__filename, {
      workerData: { [MARK]: true, module: task.module, export: task.export, params },
      resourceLimits: opts.resourceLimits,
    });
    // A job in flight must not keep `cairn serve` alive after SIGTERM: what it
    // writes is crash-safe (temporary files, superblock last), so being cut is fine.
    worker.unref();
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = () => {
      settle(() => reject(new WorkerTaskError('CANCELLED', 'the job was cancelled')));
      void worker.terminate();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (m: Message) => {
      if (m.type === 'progress') opts.onProgress?.(m.progress);
      else if (m.type === 'result') settle(() => resolve(m.value as R));
      else if (m.type === 'error') settle(() => reject(new WorkerTaskError(m.code, m.message)));
      // The answer is in: whatever handles the task left open must not keep the thread alive.
      if (m.type !== 'progress') void worker.terminate();
    });
    worker.on('error', (e) => settle(() => reject(new WorkerTaskError(codeOf(e) ?? 'INTERNAL', `worker failed: ${e.message}`))));
    worker.on('exit', (code) => settle(() => reject(new WorkerTaskError('INTERNAL', `worker exited with status ${code} before answering`))));
  });
}

function codeOf(e: unknown): string | undefined {
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'string' ? c : undefined;
}

// ---------------------------------------------------------------------------------------------
// Worker side

async function workerMain(data: { module: string; export: string; params: unknown }): Promise<void> {
  const port = parentPort!;
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
    const value = await (fn as WorkerTaskFn<unknown, unknown>)(data.params, progress);
    port.postMessage({ type: 'result', value } satisfies Message);
  } catch (e) {
    port.postMessage({ type: 'error', code: codeOf(e) ?? 'INTERNAL', message: e instanceof Error ? e.message : String(e) } satisfies Message);
  }
}

if (!isMainThread && (workerData as Record<string, unknown> | null)?.[MARK]) {
  void workerMain(workerData as { module: string; export: string; params: unknown });
}
