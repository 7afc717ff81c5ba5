// Trivial worker tasks for the job queue tests (loaded by server/jobs/worker.ts in a worker thread).
import { isMainThread, threadId } from 'node:worker_threads';
import type { JobProgress } from '../../server/jobs/queue';

export interface SleepParams {
  ms: number;
  steps?: number;
  fail?: string;
}

/** Sleeps in `steps` steps, reporting progress; fails with code `fail` when given. */
export async function sleepTask(p: SleepParams, progress: (p: JobProgress) => void): Promise<{ mainThread: boolean; threadId: number }> {
  const steps = p.steps ?? 1;
  for (let i = 0; i < steps; i++) {
    await new Promise((r) => setTimeout(r, p.ms / steps));
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
