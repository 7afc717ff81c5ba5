import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CairnError } from '../../storage/errors';
import { JobQueue, type JobControl, type JobKind } from '../../server/jobs/queue';
import { runInWorker, WorkerTaskError } from '../../server/jobs/worker';
import type { SleepParams } from './tasks';

/**
 * The job queue: bounded (refuses when full, with the limit), deduplicated by
 * key, failures recorded (and not retried at once), states and timestamps in
 * order, priorities (the most urgent first, FIFO within one; positions),
 * several jobs at once, cancelling, and the worker-thread runner (progress,
 * errors, cancellation).
 */

const TASKS = require.resolve('./tasks');

/** A kind whose jobs wait until the test releases them. */
function gatedKind() {
  const gates = new Map<string, { release(v?: unknown): void; fail(e: unknown): void }>();
  const started: string[] = [];
  const kind: JobKind<{ name: string }, unknown> = {
    name: 'gated',
    run: (p, ctl: JobControl) =>
      new Promise((resolve, reject) => {
        started.push(p.name);
        ctl.progress({ done: 1, total: 2, phase: 'waiting' });
        gates.set(p.name, { release: resolve, fail: reject });
      }),
  };
  const gate = async (name: string) => {
    for (let i = 0; i < 200 && !gates.has(name); i++) await tick();
    const g = gates.get(name);
    assert.ok(g, `job ${name} never started`);
    return g;
  };
  return { kind, started, gate };
}

const tick = () => new Promise((r) => setImmediate(r));

test('a job goes queued → running → done, with timestamps, progress and result', async () => {
  const q = new JobQueue();
  const { kind, gate } = gatedKind();
  q.register(kind);
  const out = q.submit('gated', 'k1', { name: 'a' }, { repo: 'main', source: 'test' });
  assert.equal(out.status, 'queued');
  const job = out.status === 'queued' ? out.job : assert.fail();
  assert.equal(job.state, 'queued');
  assert.equal(job.repo, 'main');
  assert.equal(job.source, 'test');
  assert.ok(job.createdAt && !job.startedAt);
  (await gate('a')).release({ ok: 1 });
  await q.idle();
  assert.equal(job.state, 'done');
  assert.deepEqual(job.result, { ok: 1 });
  assert.deepEqual(job.progress, { done: 1, total: 2, phase: 'waiting' });
  assert.ok(Date.parse(job.createdAt) <= Date.parse(job.startedAt!) && Date.parse(job.startedAt!) <= Date.parse(job.finishedAt!));
  assert.equal(q.get(job.id), job);
});

test('bounded: concurrency 1, two waiting, the next is refused with the limit; a slot frees up after a job ends', async () => {
  const q = new JobQueue({ maxQueued: 2, maxConcurrent: 1 });
  const { kind, gate, started } = gatedKind();
  q.register(kind);
  const refused: string[] = [];
  q.on('refused', (_kind, status) => refused.push(status));
  assert.equal(q.submit('gated', 'a', { name: 'a' }).status, 'queued');
  await gate('a'); // a runs; b and c wait
  assert.equal(q.submit('gated', 'b', { name: 'b' }).status, 'queued');
  assert.equal(q.submit('gated', 'c', { name: 'c' }).status, 'queued');
  assert.deepEqual(q.stats(), { queued: 2, running: 1, maxQueued: 2, maxConcurrent: 1 });
  const full = q.submit('gated', 'd', { name: 'd' });
  assert.deepEqual(full, { status: 'full', queued: 2, limit: 2 });
  assert.deepEqual(refused, ['full']);
  assert.deepEqual(started, ['a'], 'only one job runs at a time');
  assert.equal(q.list({ state: 'queued' }).length, 2);

  (await gate('a')).release();
  await gate('b');
  assert.deepEqual(started, ['a', 'b']);
  assert.equal(q.submit('gated', 'd', { name: 'd' }).status, 'queued', 'room again once a job started');
  (await gate('b')).release();
  (await gate('c')).release();
  (await gate('d')).release();
  await q.idle();
  assert.deepEqual(started, ['a', 'b', 'c', 'd'], 'first in, first out');
  assert.deepEqual(q.list().map((j) => [j.key, j.state]), [['d', 'done'], ['c', 'done'], ['b', 'done'], ['a', 'done']]);
});

test('deduplicated by key while queued or running; a finished key runs again', async () => {
  const q = new JobQueue();
  const { kind, gate } = gatedKind();
  q.register(kind);
  const first = q.submit('gated', 'same', { name: 'x' });
  const again = q.submit('gated', 'same', { name: 'x' });
  assert.equal(again.status, 'duplicate');
  assert.equal(again.status === 'duplicate' && first.status === 'queued' && again.job.id === first.job.id, true);
  await gate('x');
  const whileRunning = q.submit('gated', 'same', { name: 'x' });
  assert.equal(whileRunning.status, 'duplicate');
  assert.equal(q.list().length, 1);
  (await gate('x')).release();
  await q.idle();
  const later = q.submit('gated', 'same', { name: 'y' });
  assert.equal(later.status, 'queued');
  (await gate('y')).release();
  await q.idle();
  assert.equal(q.list().length, 2);
});

test('a failure is recorded with its code; the key is not retried within the cooldown unless asked', async () => {
  let now = 1_000_000;
  const q = new JobQueue({ failedCooldownMs: 60_000, now: () => now });
  const { kind, gate } = gatedKind();
  q.register(kind);
  const out = q.submit('gated', 'bad', { name: 'bad' });
  const job = out.status === 'queued' ? out.job : assert.fail();
  (await gate('bad')).fail(new CairnError('NOT_FOUND', 'commit 00… is not in repository main'));
  await q.idle();
  assert.equal(job.state, 'failed');
  assert.deepEqual(job.error, { code: 'NOT_FOUND', message: 'commit 00… is not in repository main' });
  assert.equal(job.result, undefined);
  assert.ok(job.finishedAt);

  const soon = q.submit('gated', 'bad', { name: 'bad2' });
  assert.equal(soon.status, 'duplicate');
  assert.equal(soon.status === 'duplicate' && soon.job.id, job.id, 'the failed job is the answer');

  const forced = q.submit('gated', 'bad', { name: 'bad3' }, { retryFailed: true });
  assert.equal(forced.status, 'queued');
  (await gate('bad3')).fail(new Error('plain error'));
  await q.idle();
  const j3 = forced.status === 'queued' ? forced.job : assert.fail();
  assert.deepEqual(j3.error, { code: 'INTERNAL', message: 'plain error' });

  now += 60_001;
  const later = q.submit('gated', 'bad', { name: 'bad4' });
  assert.equal(later.status, 'queued', 'after the cooldown the key runs again');
  (await gate('bad4')).release();
  await q.idle();
  assert.deepEqual(q.list({ state: 'failed' }).map((j) => j.id), [j3.id, job.id]);
});

test('records: filtered by repo, state and kind, newest first; old and surplus finished records are forgotten', async () => {
  let now = 5_000_000;
  const q = new JobQueue({ keepFinished: 3, keepFinishedMs: 10_000, now: () => now });
  q.register({ name: 'noop', run: async (p: { n: number }) => p.n });
  for (let i = 0; i < 5; i++) q.submit('noop', `k${i}`, { n: i }, { repo: i % 2 ? 'odd' : 'even' });
  await q.idle();
  q.submit('noop', 'k5', { n: 5 }, { repo: 'odd' });
  await q.idle();
  const all = q.list();
  assert.deepEqual(all.map((j) => j.key), ['k5', 'k4', 'k3'], 'at most 3 finished records');
  assert.deepEqual(q.list({ repo: 'odd' }).map((j) => j.key), ['k5', 'k3']);
  assert.deepEqual(q.list({ kind: 'other' }), []);
  assert.deepEqual(q.list({ limit: 1 }).map((j) => j.key), ['k5']);
  now += 10_001;
  assert.deepEqual(q.list(), [], 'finished records expire');
});

test('close: queued jobs are cancelled, running ones aborted, new ones refused', async () => {
  const q = new JobQueue({ maxConcurrent: 1 });
  q.register({
    name: 'sleep',
    run: (p: SleepParams, ctl) => runInWorker({ module: TASKS, export: 'sleepTask' }, p, { signal: ctl.signal, onProgress: (pr) => ctl.progress(pr) }),
  });
  const a = q.submit('sleep', 'a', { ms: 30_000, steps: 300 });
  const b = q.submit('sleep', 'b', { ms: 10 });
  await tick();
  const t0 = Date.now();
  await q.close();
  assert.ok(Date.now() - t0 < 5000, 'close does not wait for the 30 s job');
  const ja = a.status === 'queued' ? a.job : assert.fail();
  const jb = b.status === 'queued' ? b.job : assert.fail();
  assert.equal(ja.state, 'failed');
  assert.equal(ja.error?.code, 'CANCELLED');
  assert.equal(jb.state, 'failed');
  assert.equal(jb.error?.code, 'CANCELLED');
  assert.deepEqual(q.submit('sleep', 'c', { ms: 1 }), { status: 'closed' });
});

test('runInWorker: the work runs in another thread, reports progress, and returns its result', async () => {
  const progress: number[] = [];
  const r = await runInWorker<SleepParams, { mainThread: boolean; threadId: number }>({ module: TASKS, export: 'sleepTask' }, { ms: 600, steps: 3 }, {
    onProgress: (p) => progress.push(p.done),
  });
  assert.equal(r.mainThread, false);
  assert.ok(r.threadId > 0);
  assert.ok(progress.length >= 2, `progress was reported (${progress.join(',')})`);
  assert.equal(progress[progress.length - 1], 3, 'the final step is always reported');
});

test('runInWorker: an error keeps its code; a missing export is an error, not a hang', async () => {
  await assert.rejects(runInWorker({ module: TASKS, export: 'sleepTask' }, { ms: 1, fail: 'ALREADY_EXISTS' }), (e: unknown) => {
    assert.ok(e instanceof WorkerTaskError);
    assert.equal(e.code, 'ALREADY_EXISTS');
    assert.match(e.message, /asked to fail with ALREADY_EXISTS/);
    return true;
  });
  await assert.rejects(runInWorker({ module: TASKS, export: 'noSuchTask' }, {}), /exports no function noSuchTask/);
});

test('runInWorker: a job blocking its thread does not block the main event loop; abort terminates it after the grace period', async () => {
  const ac = new AbortController();
  const p = runInWorker({ module: TASKS, export: 'spinTask' }, {}, { signal: ac.signal, graceMs: 100 });
  // The main thread stays responsive while the worker spins.
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(Date.now() - t0 < 1000);
  ac.abort();
  await assert.rejects(p, (e: unknown) => e instanceof WorkerTaskError && e.code === 'CANCELLED' && /terminated after 100 ms/.test(e.message));
});

test('runInWorker: a task busy in the xz addon stops cooperatively when cancelled (no thread terminated, the process lives on)', async () => {
  for (let round = 0; round < 3; round++) {
    const ac = new AbortController();
    let rounds = 0;
    const p = runInWorker({ module: TASKS, export: 'xzLoopTask' }, { mb: 3 }, { signal: ac.signal, graceMs: 60_000, onProgress: (pr) => (rounds = pr.done) });
    // Cancel at different moments: right away, and in the middle of later compressions.
    await new Promise((r) => setTimeout(r, round * 150));
    ac.abort();
    await assert.rejects(p, (e: unknown) => {
      assert.ok(e instanceof WorkerTaskError);
      assert.equal(e.code, 'CANCELLED');
      assert.doesNotMatch(e.message, /terminated/, 'it stopped by itself, well within the grace period');
      return true;
    });
    assert.ok(rounds >= 0);
  }
});

test('runInWorker: a stuck task is terminated only once the native work it started has ended', async () => {
  const ac = new AbortController();
  let inXz = false;
  const p = runInWorker({ module: TASKS, export: 'xzThenStuckTask' }, { mb: 2, spinMs: 600 }, { signal: ac.signal, graceMs: 50, onProgress: () => (inXz = true) });
  for (let i = 0; i < 200 && !inXz; i++) await new Promise((r) => setTimeout(r, 10));
  ac.abort();
  // Its thread is blocked with xz in flight past the grace period: terminating then would abort this
  // process (the addon's completion would land in a dead thread). The runner waits for the work to end.
  await assert.rejects(p, (e: unknown) => e instanceof WorkerTaskError && e.code === 'CANCELLED' && /terminated/.test(e.message));
});

test('priorities: the most urgent queued job starts when a slot frees, first in first out within a priority; positions follow the run order', async () => {
  const q = new JobQueue({ maxConcurrent: 1 });
  const { kind, gate, started } = gatedKind();
  q.register(kind);
  const sub = (name: string, priority?: number) => {
    const out = q.submit('gated', name, { name }, priority === undefined ? {} : { priority });
    return out.status === 'queued' ? out.job : assert.fail(`${name}: ${out.status}`);
  };
  const blocker = sub('blocker');
  await gate('blocker');
  assert.equal(blocker.priority, 0, 'default priority');
  assert.equal(blocker.position, undefined, 'a running job has no position');
  const scratch = sub('scratch', 2);
  const older = sub('older', 1);
  const head1 = sub('head1', 0);
  const scratch2 = sub('scratch2', 2);
  const head2 = sub('head2', 0);
  assert.deepEqual(q.queued().map((j) => j.key), ['head1', 'head2', 'older', 'scratch', 'scratch2']);
  assert.deepEqual([head1, head2, older, scratch, scratch2].map((j) => j.position), [1, 2, 3, 4, 5]);

  // A duplicate submission with a more urgent priority promotes the queued job (placed by its submission order there).
  const dup = q.submit('gated', 'scratch2', { name: 'scratch2' }, { priority: 0 });
  assert.equal(dup.status, 'duplicate');
  assert.equal(scratch2.priority, 0);
  assert.deepEqual(q.queued().map((j) => j.key), ['head1', 'scratch2', 'head2', 'older', 'scratch']);
  // A less urgent duplicate changes nothing.
  q.submit('gated', 'head1', { name: 'head1' }, { priority: 2 });
  assert.equal(head1.priority, 0);
  // Demoted: behind the jobs of its new priority submitted before it.
  assert.equal(q.reprioritize(head2.id, 2), true);
  assert.deepEqual(q.queued().map((j) => [j.key, j.position]), [['head1', 1], ['scratch2', 2], ['older', 3], ['scratch', 4], ['head2', 5]]);
  assert.equal(q.reprioritize(blocker.id, 2), false, 'only queued jobs move');

  for (const name of ['blocker', 'head1', 'scratch2', 'older', 'scratch', 'head2']) (await gate(name)).release();
  await q.idle();
  assert.deepEqual(started, ['blocker', 'head1', 'scratch2', 'older', 'scratch', 'head2']);
  assert.ok(q.list().every((j) => j.position === undefined), 'no position once started');
});

test('several jobs run at once up to maxConcurrent, the most urgent ones first', async () => {
  const q = new JobQueue({ maxConcurrent: 3 });
  const { kind, gate, started } = gatedKind();
  q.register(kind);
  // Submitted in one go: the queue starts on the next tick, so priorities decide who goes first.
  for (const [name, priority] of [['s1', 2], ['o1', 1], ['h1', 0], ['s2', 2], ['h2', 0]] as const) q.submit('gated', name, { name }, { priority });
  await gate('o1');
  assert.deepEqual(started, ['h1', 'h2', 'o1']);
  assert.deepEqual(q.stats(), { queued: 2, running: 3, maxQueued: 100, maxConcurrent: 3 });
  assert.deepEqual(q.queued().map((j) => [j.key, j.position]), [['s1', 1], ['s2', 2]]);
  (await gate('h2')).release();
  await gate('s1');
  assert.deepEqual(q.queued().map((j) => [j.key, j.position]), [['s2', 1]]);
  for (const name of ['h1', 'o1', 's1', 's2']) (await gate(name)).release();
  await q.idle();
  assert.deepEqual(started, ['h1', 'h2', 'o1', 's1', 's2']);
});

test('cancel: a queued job is dropped with the given error, a running one is aborted through its signal; neither blocks a retry', async () => {
  const q = new JobQueue({ maxConcurrent: 1, failedCooldownMs: 60_000 });
  const signals = new Map<string, AbortSignal>();
  const started: string[] = [];
  q.register({
    name: 'abortable',
    run: (p: { name: string }, ctl) =>
      new Promise((resolve, reject) => {
        started.push(p.name);
        signals.set(p.name, ctl.signal);
        ctl.signal.addEventListener('abort', () => reject(new Error('stopped')), { once: true });
        if (p.name.startsWith('quick')) resolve(p.name);
      }),
  });
  const finished: string[] = [];
  q.on('finished', (j) => finished.push(`${j.key}:${j.state}`));
  const run = q.submit('abortable', 'run', { name: 'run' });
  const waitingJob = q.submit('abortable', 'wait', { name: 'wait' });
  const next = q.submit('abortable', 'quick', { name: 'quick' });
  for (let i = 0; i < 50 && !signals.has('run'); i++) await tick();
  const jr = run.status === 'queued' ? run.job : assert.fail();
  const jw = waitingJob.status === 'queued' ? waitingJob.job : assert.fail();
  const jn = next.status === 'queued' ? next.job : assert.fail();
  assert.deepEqual([jw.position, jn.position], [1, 2]);

  const error = { code: 'OBSOLETE', message: 'superseded' };
  assert.equal(q.cancel(jw.id, error), 'dropped');
  assert.equal(jw.state, 'failed');
  assert.deepEqual(jw.error, error);
  assert.equal(jw.position, undefined);
  assert.equal(jn.position, 1, 'the jobs behind move up');
  assert.equal(q.activeJob('wait'), undefined);

  assert.equal(q.cancel(jr.id, error), 'aborted');
  assert.equal(signals.get('run')!.aborted, true);
  await q.idle();
  assert.equal(jr.state, 'failed');
  assert.deepEqual(jr.error, error, 'the cancel reason, not a generic CANCELLED');
  assert.equal(jn.state, 'done', 'the slot went to the next job');
  assert.deepEqual(started, ['run', 'quick'], 'the dropped job never started');
  assert.equal(q.cancel(jr.id, error), false, 'finished jobs cannot be cancelled');

  // Not a failure of the key: it runs again at once.
  const again = q.submit('abortable', 'run', { name: 'quick-again' });
  assert.equal(again.status, 'queued');
  await q.idle();
  assert.ok(finished.includes('wait:failed') && finished.includes('run:failed'));
});
