// The jobs every replica shows alike (server/jobs/shared-view.ts): the merge of a replica's
// queue with the delta jobs' durable records, rule by rule; the records listed at most once per
// interval; and two replicas on one data folder in one process (each its own server context,
// queue and replica id) answering the same job under the same id through their HTTP APIs.
// test/s3/replica-jobs.test.ts does the same with two `cairn serve` processes on a Ceph bucket.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import request from 'supertest';
import type { Backend } from '../../storage/backends/backend';
import { commitFolder } from '../../storage/import/folder';
import { deltaJobId, deltaRecordKey, deltaRecordStore, encodeDeltaRecord, isDeltaJobId, recordJobId, type DeltaRecord } from '../../storage/jobs/records';
import type { Repo } from '../../storage/repo/repo';
import { issueToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { ServerContext } from '../../server/context';
import { DELTA_JOB, deltaJobKey, type DeltaJobParams, type DeltaJobResult } from '../../server/jobs/delta-job';
import type { DeltaJobsOptions } from '../../server/jobs/deltas';
import type { Job } from '../../server/jobs/queue';
import { mergeJob, mergeJobs, RecordSnapshots, type RecordEntry } from '../../server/jobs/shared-view';
import { createMetrics } from '../../server/metrics';
import { makeApp, makeDataDir, type TestData } from '../http/helpers';

const ME = 'replica-me';
const OTHER = 'replica-other';
const C = (n: number) => n.toString(16).padStart(64, '0');

function rec(to: number, over: Partial<DeltaRecord> = {}): RecordEntry {
  const key = deltaRecordKey('main', null, C(to));
  const r: DeltaRecord = { repo: 'main', from: null, to: C(to), priority: 2, source: 'policy', state: 'queued', attempts: 0, createdAt: `2026-01-01T00:00:0${to}.000Z`, updatedAt: '2026-01-01T00:00:09.000Z', ...over };
  const id = r.job ?? deltaJobId(key, `0000000${to}`);
  return { key, id, rec: { ...r, job: id } };
}

function local(e: RecordEntry, over: Partial<Job<DeltaJobParams, DeltaJobResult>> = {}): Job<DeltaJobParams, DeltaJobResult> {
  const r = e.rec;
  return { id: e.id, kind: DELTA_JOB, key: deltaJobKey(r.repo, r.from, r.to), repo: r.repo, source: r.source, params: { repo: r.repo, from: r.from, to: r.to }, state: 'queued', createdAt: '2026-01-01T00:00:05.500Z', priority: 1, position: 1, ...over };
}

test('merge: local detail wins while the job waits or runs here; the record wins for what happens on another replica', () => {
  // Queued here and in the store: this queue's position and priority, the record's creation time.
  const q = rec(1);
  const a = mergeJob(local(q), q, ME)!;
  assert.deepEqual([a.state, a.position, a.priority, a.owner, a.createdAt], ['queued', 1, 1, undefined, q.rec.createdAt]);
  // Queued here, running on another replica: running there, no position.
  const r = rec(2, { state: 'running', owner: OTHER, startedAt: '2026-01-01T00:00:06.000Z', attempts: 1 });
  const b = mergeJob(local(r), r, ME)!;
  assert.deepEqual([b.state, b.position, b.owner, b.startedAt], ['running', undefined, OTHER, '2026-01-01T00:00:06.000Z']);
  // Left here to the other replica at once (done, ranBy), still running there: running.
  const left = local(r, { state: 'done', position: undefined, startedAt: '2026-01-01T00:00:06.100Z', finishedAt: '2026-01-01T00:00:06.200Z', result: { name: C(2), from: null, to: C(2), existed: false, pruned: [], ranBy: OTHER } });
  assert.equal(mergeJob(left, r, ME)!.state, 'running');
  // …and once done there: done, with what the record keeps of the result.
  const d = rec(2, { state: 'done', owner: OTHER, startedAt: '2026-01-01T00:00:06.000Z', finishedAt: '2026-01-01T00:00:08.000Z', result: { existed: false, digest: 'ab'.repeat(32), totalSize: 123, parts: 2 } });
  const c = mergeJob(left, d, ME)!;
  assert.equal(c.state, 'done');
  assert.equal(c.owner, OTHER);
  assert.equal(c.finishedAt, '2026-01-01T00:00:08.000Z');
  assert.deepEqual(c.result, { name: C(2), from: null, to: C(2), existed: false, pruned: [], digest: 'ab'.repeat(32), totalSize: 123, parts: 2, ranBy: OTHER });
  // Running here, whatever a listing a second old says: here, this replica the owner, with progress.
  const e = mergeJob(local(q, { state: 'running', position: undefined, startedAt: '2026-01-01T00:00:07.000Z', progress: { done: 3, phase: 'compiling' } }), q, ME)!;
  assert.deepEqual([e.state, e.owner, e.progress], ['running', ME, { done: 3, phase: 'compiling' }]);
  // Finished here: the queue's own record.
  const f = mergeJob(local(q, { state: 'failed', position: undefined, startedAt: '2026-01-01T00:00:07.000Z', error: { code: 'X', message: 'y' } }), undefined, ME)!;
  assert.deepEqual([f.state, f.error, f.owner], ['failed', { code: 'X', message: 'y' }, ME]);
  // Only in the store: a cancelled record is a failed job with its error; a queued one has no position.
  const x = mergeJob(undefined, rec(3, { state: 'cancelled', error: { code: 'OBSOLETE', message: 'moved' } }), ME)!;
  assert.deepEqual([x.state, x.error, x.kind, x.params], ['failed', { code: 'OBSOLETE', message: 'moved' }, 'delta', { repo: 'main', from: null, to: C(3) }]);
  const y = mergeJob(undefined, rec(4), ME)!;
  assert.deepEqual([y.state, y.position, y.priority, y.owner], ['queued', undefined, 2, undefined]);
  assert.equal(mergeJob(undefined, undefined, ME), undefined);
  // The merge never changes the queue's own job.
  const mine = local(r);
  mergeJob(mine, r, ME);
  assert.equal(mine.state, 'queued');
  assert.equal(mine.owner, undefined);
});

test('merge of lists: each id once, newest first, an older generation of an active delta left out, filters on the merged state', () => {
  const q = rec(1);
  const r = rec(2, { state: 'running', owner: OTHER });
  const gone = rec(3, { state: 'done', owner: OTHER });
  const older = rec(4, { job: deltaJobId(deltaRecordKey('main', null, C(4)), 'ffffffff'), state: 'queued' });
  const maintenance: Job = { id: '6c0c7f0e-0000-4000-8000-000000000000', kind: 'maintenance', key: 'maintenance:main:gc', repo: 'main', params: {}, state: 'queued', createdAt: '2026-01-01T00:00:09.000Z', priority: 4 };
  const localJobs = [maintenance, local(rec(4), { createdAt: '2026-01-01T00:00:04.000Z' }), local(q), local(r)];
  const all = mergeJobs(localJobs, [q, r, gone, older], ME);
  assert.deepEqual(
    all.map((j) => [j.id, j.state]),
    [
      [maintenance.id, 'queued'],
      [rec(4).id, 'queued'],
      [gone.id, 'done'],
      [r.id, 'running'],
      [q.id, 'queued'],
    ],
  );
  assert.equal(new Set(all.map((j) => j.id)).size, all.length);
  assert.deepEqual(mergeJobs(localJobs, [q, r, gone, older], ME, { state: 'running' }).map((j) => j.id), [r.id]);
  assert.deepEqual(mergeJobs(localJobs, [q, r, gone, older], ME, { state: 'queued', kind: DELTA_JOB, limit: 1 }).map((j) => j.id), [rec(4).id]);
  assert.deepEqual(mergeJobs(localJobs, [q, r, gone, older], ME, { repo: 'other' }), []);
});

let data: TestData;
let src: string;
let repo: Repo;
const commits: string[] = [];
const contexts: ServerContext[] = [];

before(async () => {
  data = makeDataDir();
  src = mkdtempSync(path.join(tmpdir(), 'cairn-shared-view-src-'));
  repo = await data.registry.create('main');
  mkdirSync(path.join(src, 'etc'), { recursive: true });
  let parent: string | null = null;
  for (let v = 1; v <= 3; v++) {
    writeFileSync(path.join(src, 'etc/os-release'), `ID=shared\nVERSION_ID=${v}\n`);
    writeFileSync(path.join(src, `etc/file${v}`), `version ${v}\n`.repeat(300));
    parent = (await commitFolder(repo, src, 'os/shared', { parent, subject: `v${v}`, timestamp: BigInt(1_760_000_000 + v * 3600) })).commit;
    commits.push(parent);
  }
});

after(async () => {
  for (const c of contexts) await c.deltaJobs?.close().catch(() => undefined);
  data.cleanup();
  rmSync(src, { recursive: true, force: true });
});

test('records are listed at most once per interval: callers at once share a listing; a listing begun after a time waits for the interval', async () => {
  const store = deltaRecordStore(data.dataDir);
  let lists = 0;
  const counting: Backend = Object.assign(Object.create(store) as Backend, {
    list: (prefix: string) => {
      lists++;
      return store.list(prefix);
    },
  });
  const e = rec(5);
  const legacy: DeltaRecord = { ...e.rec, job: undefined };
  assert.ok(await store.create(e.key, encodeDeltaRecord(legacy)));
  try {
    const snaps = new RecordSnapshots(counting, 100, 300);
    const [s1, s2] = await Promise.all([snaps.recent(), snaps.recent()]);
    assert.equal(lists, 1);
    assert.equal(s1, s2);
    const found = s1.byId.get(recordJobId(e.key, legacy));
    assert.ok(found, 'a record without a stored id gets the one derived from its key and creation time, on every replica');
    assert.ok(isDeltaJobId(found.id));
    await snaps.recent();
    assert.equal(lists, 1, 'within the interval: the same listing');
    const t = Date.now();
    const s3 = await snaps.since(t);
    assert.equal(lists, 2);
    assert.ok(s3.startedAt >= t);
    assert.ok(Date.now() - s1.startedAt >= 300, 'not before the interval');
  } finally {
    await store.remove(e.key);
  }
});

async function replica(opts: DeltaJobsOptions) {
  const ctx = await createServerContext(data.dataDir, data.registry, { signing: false, deltas: { maxConcurrent: 1, ...opts } });
  contexts.push(ctx);
  return { ctx, app: makeApp(data, { context: ctx, metrics: createMetrics({ defaultMetrics: false }) }) };
}

async function until(what: string, pred: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('two replicas on one data folder: the Location one answers resolves on the other, queued, running with its owner, then done; a new request after a failure is a new job', async () => {
  let release: () => void = () => {};
  const held = new Promise<void>((r) => (release = r));
  let compiling = 0;
  // A holds its compiles until released; B takes nothing from the store meanwhile (its scans are far apart).
  const a = await replica({
    beforeCompile: (_p, signal) => {
      compiling++;
      return new Promise<void>((resolve, reject) => {
        void held.then(resolve);
        signal.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { code: 'CANCELLED' })), { once: true });
      });
    },
    durable: { leaseMs: 600_000 },
  });
  const b = await replica({ durable: { leaseMs: 600_000 } });
  await new Promise((r) => setTimeout(r, 200)); // their first scans (of an empty store) are over
  const push = (await issueToken(a.ctx.auth.secret, { sub: 't', scope: ['push'], repos: ['main'], ttlSeconds: 600 })).token;
  const [v1, v2, v3] = commits as [string, string, string];
  const ask = (from: string) => request(a.app).post('/api/repos/main/deltas').set('Authorization', `Bearer ${push}`).send({ from, to: v3 }).expect(202);

  const first = await ask(v1);
  const id1 = first.body.job.id as string;
  assert.ok(isDeltaJobId(id1), id1);
  assert.equal(first.headers.location, `/api/jobs/${id1}`);
  const onB = (await request(b.app).get(first.headers.location).expect(200)).body;
  assert.equal(onB.id, id1);
  const second = await ask(v2);
  const id2 = second.body.job.id as string;
  await until('A to hold the first compile', () => compiling === 1);
  const ra = (await request(a.app).get('/api/jobs').expect(200)).body.queue.replica as string;
  assert.equal(ra, a.ctx.deltaJobs!.replica);
  await new Promise((r) => setTimeout(r, 1100)); // B's listing a second old at most
  const running = (await request(b.app).get(`/api/jobs/${id1}`).expect(200)).body;
  assert.deepEqual([running.state, running.owner, running.position], ['running', ra, null]);
  const queued = (await request(b.app).get(`/api/jobs/${id2}`).expect(200)).body;
  assert.deepEqual([queued.state, queued.priority, queued.position, queued.owner], ['queued', second.body.job.priority, null, null], 'its priority, no position: it waits in A');
  assert.equal((await request(a.app).get(`/api/jobs/${id2}`).expect(200)).body.position, 1);
  const listed = (await request(b.app).get('/api/jobs').expect(200)).body;
  assert.deepEqual(listed.jobs.map((j: { id: string; state: string }) => [j.id, j.state]), [[id2, 'queued'], [id1, 'running']]);
  assert.deepEqual([listed.queue.queued, listed.queue.running], [0, 0]);

  release();
  await a.ctx.deltaJobs!.settled();
  await new Promise((r) => setTimeout(r, 1100));
  for (const id of [id1, id2]) {
    const [x, y] = [(await request(a.app).get(`/api/jobs/${id}`).expect(200)).body, (await request(b.app).get(`/api/jobs/${id}`).expect(200)).body];
    assert.deepEqual([y.state, y.owner, y.result.ranBy], ['done', ra, ra]);
    assert.deepEqual([x.id, x.state, x.owner, x.createdAt, x.result.digest], [y.id, y.state, y.owner, y.createdAt, y.result.digest]);
  }

  // A failed record asked for again: a new job, a new id of the same delta.
  const key = deltaRecordKey('main', null, v1);
  const failedId = deltaJobId(key);
  const now = new Date().toISOString();
  assert.ok(await deltaRecordStore(data.dataDir).create(key, encodeDeltaRecord({ repo: 'main', from: null, to: v1, priority: 1, source: 'api', state: 'failed', owner: 'gone', attempts: 1, job: failedId, error: { code: 'INTERNAL', message: 'disk' }, createdAt: now, updatedAt: now, finishedAt: now })));
  const failed = (await request(b.app).get(`/api/jobs/${failedId}`).expect(200)).body;
  assert.deepEqual([failed.state, failed.error.code, failed.owner], ['failed', 'INTERNAL', 'gone']);
  const again = await request(b.app).post('/api/repos/main/deltas').set('Authorization', `Bearer ${push}`).send({ from: null, to: v1 }).expect(202);
  const id3 = again.body.job.id as string;
  assert.notEqual(id3, failedId);
  assert.equal(id3.slice(0, 16), failedId.slice(0, 16), 'the same delta: the same first half');
  await b.ctx.deltaJobs!.settled();
  assert.equal((await request(a.app).get(`/api/jobs/${id3}`).expect(200)).body.state, 'done');
  assert.equal((await request(a.app).get('/api/jobs/0123456789abcdef-01234567').expect(404)).body.error.code, 'NOT_FOUND');
});
