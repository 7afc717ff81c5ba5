// The job runner keeps its threads warm (server/jobs/worker.ts): a thread that answered runs the
// next task; one that was terminated is never reused; a cooperative cancel leaves its thread
// reusable and does not touch the next task's signal; idle threads never keep a process alive.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeWorkers, runInWorker, workerThreads, WorkerTaskError } from '../../server/jobs/worker';
import type { SleepParams } from './tasks';

const TASKS = require.resolve('./tasks');
type Out = { mainThread: boolean; threadId: number };
const sleep = (p: SleepParams, signal?: AbortSignal) => runInWorker<SleepParams, Out>({ module: TASKS, export: 'sleepTask' }, p, { signal });

after(() => closeWorkers());

test('a thread that answered runs the next task; a failed task (an answer) leaves it reusable too', async () => {
  const a = await sleep({ ms: 1 });
  const b = await sleep({ ms: 1 });
  assert.equal(b.threadId, a.threadId, 'the same warm thread');
  await assert.rejects(sleep({ ms: 1, fail: 'ALREADY_EXISTS' }), (e: unknown) => e instanceof WorkerTaskError && e.code === 'ALREADY_EXISTS');
  assert.equal((await sleep({ ms: 1 })).threadId, a.threadId);
  assert.deepEqual(workerThreads(), { live: 1, idle: 1 });
});

test('tasks at the same time get threads of their own; the extra threads stay idle for reuse', async () => {
  const [x, y] = await Promise.all([sleep({ ms: 200 }), sleep({ ms: 200 })]);
  assert.notEqual(x.threadId, y.threadId);
  assert.equal(workerThreads().idle, 2);
  const z = await sleep({ ms: 1 });
  assert.ok([x.threadId, y.threadId].includes(z.threadId));
});

test('a cooperatively cancelled task leaves its thread reusable, and the next task is not cancelled', async () => {
  await closeWorkers();
  const ac = new AbortController();
  const p = sleep({ ms: 5000, steps: 100 }, ac.signal);
  await new Promise((r) => setTimeout(r, 150));
  const before = workerThreads();
  ac.abort();
  await assert.rejects(p, (e: unknown) => e instanceof WorkerTaskError && e.code === 'CANCELLED' && !/terminated/.test((e as Error).message));
  const next = await sleep({ ms: 50, steps: 5 });
  assert.equal(next.mainThread, false);
  assert.equal(workerThreads().live, before.live, 'no thread was started or ended');
});

test('a terminated thread is never reused', async () => {
  await closeWorkers();
  const first = await sleep({ ms: 1 });
  // The spinning task takes the idle thread (the one that ran `first`) and is terminated.
  const ac = new AbortController();
  const spin = runInWorker({ module: TASKS, export: 'spinTask' }, {}, { signal: ac.signal, graceMs: 50 });
  await new Promise((r) => setTimeout(r, 100));
  ac.abort();
  await assert.rejects(spin, /terminated after 50 ms/);
  const after = await sleep({ ms: 1 });
  assert.notEqual(after.threadId, first.threadId, 'a fresh thread');
});

test('an idle warm thread does not keep the process alive', () => {
  const script = `const { runInWorker } = require(${JSON.stringify(require.resolve('../../server/jobs/worker'))});
    runInWorker({ module: ${JSON.stringify(TASKS)}, export: 'sleepTask' }, { ms: 1 }).then((r) => console.log('done', r.threadId));`;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^done \d+/);
  assert.ok(Date.now() - t0 < 15_000, 'it exited on its own, long before the idle timeout');
});
