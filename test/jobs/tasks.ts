// Trivial worker tasks for the job queue tests (loaded by server/jobs/worker.ts in a worker thread).
import { isMainThread, threadId } from 'node:worker_threads';
import { CancelledError } from '../../storage/deltas/cancel';
import { xzCompress } from '../../storage/deltas/xz';
import type { JobProgress } from '../../server/jobs/queue';
import type { WorkerTaskContext } from '../../server/jobs/worker';

export interface SleepParams {
  ms: number;
  steps?: number;
  fail?: string;
}

/** Sleeps in `steps` steps, reporting progress (and stopping between steps when cancelled); fails with code `fail` when given. */
export async function sleepTask(p: SleepParams, progress: (p: JobProgress) => void, ctx: WorkerTaskContext): Promise<{ mainThread: boolean; threadId: number }> {
  const steps = p.steps ?? 1;
  for (let i = 0; i < steps; i++) {
    await new Promise((r) => setTimeout(r, p.ms / steps));
    if (ctx.signal.aborted) throw new CancelledError('sleep cancelled');
    progress({ done: i + 1, total: steps, phase: 'sleeping' });
  }
  if (p.fail) throw Object.assign(new Error(`asked to fail with ${p.fail}`), { code: p.fail });
  return { mainThread: isMainThread, threadId };
}

/** Never returns on its own (until terminated): the event loop is blocked, as a long compile would. */
export async function spinTask(): Promise<never> {
  for (;;) {
    /* busy */
  }
}

/** Pseudo-random bytes (xz works hard on them). */
function noise(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    b[i] = s & 0xff;
  }
  return b;
}

/**
 * Compresses megabytes with xz over and over, ignoring the signal itself: only
 * the native gate (refusing new work once cancelled) and xzCompress's own
 * checks between input chunks stop it. Reports progress after each round.
 */
export async function xzLoopTask(p: { mb: number }, progress: (p: JobProgress) => void, ctx: WorkerTaskContext): Promise<never> {
  const data = noise(p.mb << 20, 7);
  for (let i = 1; ; i++) {
    await xzCompress(data, { gate: ctx.gate, signal: i % 2 ? ctx.signal : undefined });
    progress({ done: i, phase: 'xz' });
  }
}

/**
 * The worst case for a terminate: native xz work in flight while the thread's
 * event loop is blocked (so the cancel message is not seen), then a task that
 * never answers. The runner may only terminate it once the xz work ended.
 */
export async function xzThenStuckTask(p: { mb: number; spinMs: number }, progress: (p: JobProgress) => void, ctx: WorkerTaskContext): Promise<never> {
  const data = noise(p.mb << 20, 9);
  progress({ done: 0, phase: 'xz' });
  const pending = xzCompress(data, { gate: ctx.gate });
  const until = Date.now() + p.spinMs;
  while (Date.now() < until) {
    /* blocked with native work in flight */
  }
  await pending.catch(() => {});
  return new Promise<never>(() => {});
}
