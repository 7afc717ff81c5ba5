// The jobs API answers alike on every replica (server/jobs/shared-view.ts): two `cairn serve
// --storage s3://BUCKET/PREFIX` replicas on one prefix of a real Ceph RGW, each with
// CAIRN_E2E_WORKERS processes. A delta job queued through replica A has the id of its durable
// record: the Location A answers resolves on replica B at once, and B shows the job queued (with
// its priority, no position: it waits in A's queue), running with A as its owner, then done with
// its digest, in GET /api/jobs/:id and GET /api/jobs alike; private repositories' jobs stay
// hidden on B without a read token.
// A holds every delta job DELAY_MS before compiling (CAIRN_TEST_DELTA_JOB_DELAY_MS) and runs one
// at a time; the lease is long (LEASE_MS: the replicas look at the store at start and then only
// every quarter of it), so B never takes A's queued jobs during the test.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { startCairn, type CairnProcess } from '../helpers/cairn-process';
import { commitTree, initRepo, makeSourceTree, makeTempDir, removeTempDirs } from '../helpers/ostree';
import { cli } from '../e2e/publish-helpers';
import { emptyPrefix, freshPrefix, s3ClientEnv, s3TestStore, type S3TestStore } from './ceph';

const SECRET = 'cairn-s3-replica-jobs-secret-0123456789abcdef';
const LEASE_MS = 600_000;
const DELAY_MS = 4000;
const JOB_ID = /^[0-9a-f]{16}-[0-9a-f]{8}$/;
let store: S3TestStore;
let work: string;
const prefixes: string[] = [];
const running: CairnProcess[] = [];
const tokens: Record<'push' | 'admin' | 'read', string> = { push: '', admin: '', read: '' };

interface ApiJob {
  id: string;
  kind: string;
  repo: string;
  state: string;
  priority: number | null;
  position: number | null;
  owner: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  params: { from: string | null; to: string };
  result: { name: string; existed: boolean; digest?: string; ranBy?: string } | null;
  error: unknown;
}
interface ApiJobs {
  jobs: ApiJob[];
  queue: { queued: number; running: number; replica: string | null };
}

before(async () => {
  store = await s3TestStore();
  work = await makeTempDir('cairn-s3-replica-jobs-');
  for (const [scope, repos] of [['push', 'main'], ['admin', '*'], ['read', 'main']] as const) {
    const t = await cli(['token', '--scope', scope, '--repo', repos, '--ttl', '1h', '--sub', `jobs-${scope}`], { CAIRN_TOKEN_SECRET: SECRET });
    assert.equal(t.code, 0, t.stderr);
    tokens[scope] = t.stdout.trim();
  }
});

after(async () => {
  await Promise.all(running.map((c) => c.stop()));
  for (const p of prefixes) await emptyPrefix(store, p).catch(() => undefined);
  await removeTempDirs();
});

async function replica(location: string, env: NodeJS.ProcessEnv = {}): Promise<CairnProcess> {
  const c = await startCairn({
    dataDir: path.join(work, `scratch-${running.length}`),
    extraArgs: ['--storage', location],
    env: { ...s3ClientEnv(store), CAIRN_TOKEN_SECRET: SECRET, CAIRN_LOG: 'info', CAIRN_JOBS_LEASE_MS: String(LEASE_MS), ...env },
  });
  running.push(c);
  return c;
}

async function api<T>(c: CairnProcess, p: string, init: { method?: string; token?: string; body?: unknown } = {}): Promise<{ status: number; body: T; location: string | null }> {
  const res = await fetch(`${c.url}${p}`, {
    method: init.method ?? 'GET',
    headers: { ...(init.token ? { authorization: `Bearer ${init.token}` } : {}), ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  return { status: res.status, body: (await res.json().catch(() => null)) as T, location: res.headers.get('location') };
}

async function job(c: CairnProcess, loc: string, token?: string): Promise<ApiJob> {
  const r = await api<ApiJob>(c, loc, { token });
  assert.equal(r.status, 200, `${loc} on ${c.url}: ${JSON.stringify(r.body)}`);
  return r.body;
}

async function until(what: string, pred: () => boolean | Promise<boolean>, ms: number, why: () => string = () => ''): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}\n${why()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function tail(...cs: CairnProcess[]): string {
  return cs.map((c, i) => `--- replica ${i} ---\n${c.output().split('\n').slice(-25).join('\n')}`).join('\n');
}

test("a delta job queued through replica A: its Location answers on replica B, which shows it queued, running with A as owner, then done, alone and in the listing", async () => {
  const prefix = freshPrefix('replica-jobs');
  prefixes.push(prefix);
  const location = `s3://${store.bucket}/${prefix.replace(/\/$/, '')}`;
  const a = await replica(location, { CAIRN_TEST_DELTA_JOB_DELAY_MS: String(DELAY_MS), CAIRN_JOBS_CONCURRENCY: '1' });
  const b = await replica(location);
  // No policy deltas: the only jobs are the ones asked for below.
  const patched = await api(a, '/api/repos/main/settings', { method: 'PATCH', token: tokens.admin, body: { deltas: { scratch: false, previousCommits: 0 } } });
  assert.equal(patched.status, 200, JSON.stringify(patched.body));

  const REF = 'os/jobs';
  const local = await initRepo(path.join(work, 'local'), 'archive');
  const commits: string[] = [];
  for (let v = 1; v <= 3; v++) {
    const tree = await makeSourceTree(path.join(work, `v${v}`), { seed: 70, bigFileBytes: 150_000, extra: { [`etc/v${v}`]: `version ${v}\n`.repeat(100) } });
    commits.push(await commitTree(local, { branch: REF, tree, subject: `v${v}`, timestamp: 1_709_251_200 + v * 100 }));
    const r = await cli(['push', '--url', `${a.url}/repo/main`, '--token', tokens.push, '--repo', local, commits[v - 1]!, '--to', REF]);
    assert.equal(r.code, 0, `${r.stderr}\n${tail(a)}`);
  }
  const [v1, v2, v3] = commits as [string, string, string];

  const ra = (await api<ApiJobs>(a, '/api/jobs')).body.queue.replica;
  const rb = (await api<ApiJobs>(b, '/api/jobs')).body.queue.replica;
  assert.ok(ra && rb && ra !== rb, `two replicas, two ids: ${ra} ${rb}`);

  // Asked through A; the Location resolves on B at once (B never queued it).
  const first = await api<{ status: string; job: ApiJob }>(a, '/api/repos/main/deltas', { method: 'POST', token: tokens.push, body: { from: v1, to: v3 } });
  assert.equal(first.status, 202, JSON.stringify(first.body));
  const id1 = first.body.job.id;
  assert.match(id1, JOB_ID);
  assert.equal(first.location, `/api/jobs/${id1}`);
  const seen = await job(b, first.location!);
  assert.equal(seen.id, id1);
  assert.ok(['queued', 'running'].includes(seen.state), seen.state);
  assert.deepEqual([seen.params.from, seen.params.to], [v1, v3]);

  const second = await api<{ status: string; job: ApiJob }>(a, '/api/repos/main/deltas', { method: 'POST', token: tokens.push, body: { from: v2, to: v3 } });
  assert.equal(second.status, 202, JSON.stringify(second.body));
  const id2 = second.body.job.id;
  assert.notEqual(id2, id1);
  assert.equal(second.location, `/api/jobs/${id2}`);

  // While A runs the first (held DELAY_MS) the second waits in A's queue.
  await until('A to run the first job', async () => (await job(a, `/api/jobs/${id1}`)).state === 'running', 30_000, () => tail(a, b));
  // B lists the records at most once a second: it shows the claim within about that.
  let onB = await job(b, `/api/jobs/${id1}`);
  await until('B to show the first job running', async () => (onB = await job(b, `/api/jobs/${id1}`)).state === 'running', 3000, () => JSON.stringify(onB));
  assert.equal(onB.owner, ra, 'B names A as the owner');
  assert.ok(onB.startedAt);
  assert.equal(onB.finishedAt, null);
  const queuedOnB = await job(b, `/api/jobs/${id2}`);
  assert.equal(queuedOnB.state, 'queued');
  assert.equal(queuedOnB.priority, 0, 'a remote queued job shows its priority (to the head of a ref: 0)');
  assert.equal(queuedOnB.position, null, "and no position: it is in A's queue");
  assert.equal(queuedOnB.owner, null);
  const queuedOnA = await job(a, `/api/jobs/${id2}`);
  assert.equal(queuedOnA.position, 1, 'A knows its place');
  const listedB = (await api<ApiJobs>(b, '/api/jobs')).body;
  assert.deepEqual(
    listedB.jobs.map((j) => [j.id, j.state, j.owner]),
    [
      [id2, 'queued', null],
      [id1, 'running', ra],
    ],
    'B lists both, newest first, once each',
  );
  assert.deepEqual([listedB.queue.queued, listedB.queue.running], [0, 0], "B's own queue is empty");
  assert.deepEqual(
    (await api<ApiJobs>(b, '/api/jobs?state=running')).body.jobs.map((j) => j.id),
    [id1],
  );

  // Both done: the same outcome on both replicas.
  await until('both jobs to be done, as B sees them', async () => (await job(b, `/api/jobs/${id2}`)).state === 'done', 120_000, () => tail(a, b));
  await until('the first done too', async () => (await job(b, `/api/jobs/${id1}`)).state === 'done', 10_000, () => tail(a, b));
  for (const [id, from] of [[id1, v1], [id2, v2]] as const) {
    const [x, y] = [await job(a, `/api/jobs/${id}`), await job(b, `/api/jobs/${id}`)];
    assert.equal(y.state, 'done');
    assert.equal(y.owner, ra);
    assert.equal(y.result?.name, `${from}-${v3}`);
    assert.equal(y.result?.existed, false);
    assert.match(y.result?.digest ?? '', /^[0-9a-f]{64}$/);
    assert.equal(y.result?.ranBy, ra, 'B: run by A');
    assert.deepEqual([x.id, x.state, x.owner, x.result?.digest], [y.id, y.state, y.owner, y.result?.digest], 'A and B agree');
    assert.ok(y.finishedAt);
  }
  const doneOnB = (await api<ApiJobs>(b, '/api/jobs?state=done')).body.jobs.map((j) => j.id);
  assert.deepEqual(doneOnB, [id2, id1]);
  assert.equal((await api(b, '/api/jobs/0123456789abcdef-01234567')).status, 404, 'an unknown id of the same form');

  // A private repository's jobs: on B only with a read token.
  assert.equal((await api(a, '/api/repos/main/settings', { method: 'PATCH', token: tokens.admin, body: { private: true } })).status, 200);
  await until('B to hide the job from anonymous callers', async () => (await api(b, `/api/jobs/${id1}`)).status === 404, 10_000);
  assert.deepEqual((await api<ApiJobs>(b, '/api/jobs')).body.jobs, []);
  assert.equal((await job(b, `/api/jobs/${id1}`, tokens.read)).state, 'done');
  assert.deepEqual(
    (await api<ApiJobs>(b, '/api/jobs', { token: tokens.read })).body.jobs.map((j) => j.id),
    [id2, id1],
  );
});
