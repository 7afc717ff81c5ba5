import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { CancelledError, type NativeGate } from '../../storage/deltas/cancel';
import type { JobProgress } from './queue';

/**
 * Runs one function of one module in a worker thread, so CPU-heavy job work
 * (compiling a delta: hashing, bsdiff, xz) never runs on the event loop that
 * answers requests.
 *
 * Threads are kept warm: a thread that answered is put back in a small pool
 * and runs the next task, so a job does not pay a thread's start, the modules'
 * loading and a cold JIT (~50–100 ms, most of a small delta's compile), and
 * what a task module keeps in memory between tasks (the compiler's cache of
 * decoded dirtrees: content-addressed, so never stale) serves the next one.
 * One idle thread stays (unref'd: it never keeps the process alive); more
 * idle threads than that end after IDLE_MS, returning their memory. A thread
 * runs one task at a time. A thread that was terminated, failed, or answered
 * with native work still in flight is never reused.
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
 * consistent atomics one side always sees the other). Each task has its own
 * control block. The promise settles once the thread is idle again (no native
 * work in flight) or has exited, so whoever awaits it (queue close, shutdown)
 * never exits the process under native work; `closeWorkers()` ends idle threads.
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
}

export const DEFAULT_CANCEL_GRACE_MS = 5000;

const MARK = '__cairnJobWorker';
/** Int32 slots of a task's shared control block. */
const CANCEL = 0;
const NATIVE_BUSY = 1;
/** How often a terminate waiting for native work to end looks again. */
const BUSY_POLL_MS = 25;
/** Idle threads kept beyond the first end after this long. */
export const IDLE_MS = 60_000;
/** Idle threads that never expire. */
const KEEP_WARM = 1;

type Message = { id: number } & ({ type: 'progress'; progress: JobProgress } | { type: 'result'; value: unknown } | { type: 'error'; code: string; message: string });
type RunMessage = { type: 'run'; id: number; module: string; export: string; params: unknown; control: SharedArrayBuffer };

/** One thread of the pool, and the task it runs (if any). */
interface Slot {
  worker: Worker;
  /** Handlers of the task running in it; undefined while idle. */
  task?: { onMessage(m: Message): void; onExit(code: number): void };
  exited: boolean;
  idleTimer?: NodeJS.Timeout;
}

const idle: Slot[] = [];
const live = new Set<Slot>();
let taskSeq = 0;

function spawn(): Slot {
  const worker = new Worker(__filename, { workerData: { [MARK]: true } });
  const slot: Slot = { worker, exited: false };
  live.add(slot);
  worker.on('message', (m: Message) => slot.task?.onMessage(m));
  // An 'error' is followed by 'exit': the task learns it there.
  worker.on('error', (e) => slot.task?.onMessage({ id: -1, type: 'error', code: codeOf(e) ?? 'INTERNAL', message: `worker failed: ${e.message}` }));
  worker.on('exit', (code) => {
    slot.exited = true;
    live.delete(slot);
    clearTimeout(slot.idleTimer);
    const i = idle.indexOf(slot);
    if (i >= 0) idle.splice(i, 1);
    slot.task?.onExit(code);
  });
  return slot;
}

function acquire(): Slot {
  const slot = idle.pop() ?? spawn();
  clearTimeout(slot.idleTimer);
  slot.worker.ref();
  return slot;
}

function release(slot: Slot): void {
  slot.task = undefined;
  if (slot.exited) return;
  slot.worker.unref();
  idle.push(slot);
  if (idle.length > KEEP_WARM) {
    slot.idleTimer = setTimeout(() => void slot.worker.terminate(), IDLE_MS);
    slot.idleTimer.unref();
  }
}

/** Starts the warm thread ahead of the first task (a server does at start), so that one pays no thread start either. */
export function prewarmWorkers(): void {
  if (idle.length === 0 && live.size === 0) release(spawn());
}

/** Ends every idle thread (running tasks are not touched: cancel them first). Resolves when they exited. */
export async function closeWorkers(): Promise<void> {
  const slots = idle.splice(0);
  await Promise.all(slots.map((s) => (clearTimeout(s.idleTimer), s.worker.terminate())));
}

/** Threads alive (busy and idle): for tests and metrics. */
export function workerThreads(): { live: number; idle: number } {
  return { live: live.size, idle: idle.length };
}

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
    const id = ++taskSeq;
    const slot = acquire();
    const worker = slot.worker;
    /** The first answer (or failure); delivered once the thread is idle again or has exited. */
    let outcome: { ok: true; value: R } | { ok: false; error: WorkerTaskError } | undefined;
    let timer: NodeJS.Timeout | undefined;
    let terminating = false;
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener('abort', onAbort);
      clearTimeout(timer);
      const o = outcome!;
      if (o.ok) resolve(o.value);
      else reject(o.error);
    };
    /** Terminates the thread as soon as no native work is in flight in it (at once, normally). */
    const terminateWhenSafe = () => {
      if (terminating || slot.exited) return;
      if (Atomics.load(control, NATIVE_BUSY) !== 0) {
        timer = setTimeout(terminateWhenSafe, BUSY_POLL_MS);
        return;
      }
      terminating = true;
      void worker.terminate();
    };
    const answer = (o: NonNullable<typeof outcome>, reusable: boolean) => {
      if (outcome) return;
      outcome = o;
      clearTimeout(timer);
      // A task awaits its native work before it answers; one that did not leaves its thread to be ended.
      if (reusable && !terminating && Atomics.load(control, NATIVE_BUSY) === 0) {
        release(slot);
        settle();
      } else terminateWhenSafe();
    };
    const onAbort = () => {
      Atomics.store(control, CANCEL, 1);
      worker.postMessage({ type: 'cancel', id });
      const graceMs = opts.graceMs ?? DEFAULT_CANCEL_GRACE_MS;
      timer = setTimeout(() => {
        if (outcome) return;
        outcome = { ok: false, error: new WorkerTaskError('CANCELLED', `the job was cancelled (its thread was terminated after ${graceMs} ms without stopping)`) };
        terminateWhenSafe();
      }, graceMs);
    };
    slot.task = {
      onMessage(m) {
        if (m.type === 'error' && m.id === -1) return answer({ ok: false, error: new WorkerTaskError(m.code, m.message) }, false);
        if (m.id !== id) return;
        if (m.type === 'progress') opts.onProgress?.(m.progress);
        else if (m.type === 'result') answer({ ok: true, value: m.value as R }, true);
        else answer({ ok: false, error: new WorkerTaskError(m.code, m.message) }, true);
      },
      onExit(code) {
        outcome ??= { ok: false, error: new WorkerTaskError('INTERNAL', `worker exited with status ${code} before answering`) };
        settle();
      },
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    worker.postMessage({ type: 'run', id, module: task.module, export: task.export, params, control: control.buffer } satisfies RunMessage);
  });
}

function codeOf(e: unknown): string | undefined {
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'string' ? c : undefined;
}

// ---------------------------------------------------------------------------------------------
// Worker side

/** One task in this thread: its module's function with its own signal and native gate. */
async function runTask(port: NonNullable<typeof parentPort>, data: RunMessage, abort: AbortController): Promise<void> {
  const control = new Int32Array(data.control);
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
  const post = (m: Message) => port.postMessage(m);
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
      post({ id: data.id, type: 'progress', progress: p });
    };
    const value = await (fn as WorkerTaskFn<unknown, unknown>)(data.params, progress, { signal: abort.signal, gate });
    post({ id: data.id, type: 'result', value });
  } catch (e) {
    post({ id: data.id, type: 'error', code: codeOf(e) ?? 'INTERNAL', message: e instanceof Error ? e.message : String(e) });
  }
}

function workerMain(): void {
  const port = parentPort!;
  let current: { id: number; abort: AbortController } | undefined;
  port.on('message', (m: RunMessage | { type: 'cancel'; id: number }) => {
    if (m?.type === 'cancel') {
      if (current?.id === m.id) current.abort.abort();
    } else if (m?.type === 'run') {
      const abort = new AbortController();
      current = { id: m.id, abort };
      void runTask(port, m, abort).finally(() => {
        if (current?.id === m.id) current = undefined;
      });
    }
  });
}

if (!isMainThread && (workerData as Record<string, unknown> | null)?.[MARK]) workerMain();
