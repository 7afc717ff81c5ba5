import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import request from 'supertest';
import { commitFolder } from '../../storage/import/folder';
import { listDeltas } from '../../storage/deltas/inventory';
import { planDeltasForRefMove } from '../../storage/deltas/plan';
import { checksumToMb64 } from '../../storage/objects/checksum';
import type { Repo } from '../../storage/repo/repo';
import { issueToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { CairnApp } from '../../server/app';
import type { ServerContext } from '../../server/context';
import type { DeltaJobParams } from '../../server/jobs/delta-job';
import type { Job } from '../../server/jobs/queue';
import { createMetrics } from '../../server/metrics';
import { makeApp, makeDataDir, type TestData } from '../http/helpers';

/**
 * Delta jobs run in the order hosts need them: from the ref's previous head
 * first (and on-demand or API requests to a current head with them), then
 * from older commits, then from scratch; a newer move of the ref drops the
 * automatic jobs it made useless (queued ones; running ones are cancelled)
 * and demotes explicit ones; the jobs API shows priority and
 * position. Jobs are held just before compiling (beforeCompile) until the
 * test lets them go, so every step is deterministic: one job at a time.
 */

const REF = 'os/stable';
let data: TestData;
let ctx: ServerContext;
let app: CairnApp;
let pushToken: string;
let srcRoot: string;

/** Held jobs by delta name; while `holding`, every job waits in beforeCompile until released (or aborted). */
let holding = true;
const held = new Map<string, () => void>();
/** Delta names in the order their jobs started. */
const started: string[] = [];

const name = (from: string | null, to: string) => (from ? `${from}-${to}` : to);

async function beforeCompile(p: DeltaJobParams, signal: AbortSignal): Promise<void> {
  if (!holding) return;
  await new Promise<void>((resolve, reject) => {
    held.set(name(p.from, p.to), resolve);
    signal.addEventListener('abort', () => reject(new Error('aborted while held')), { once: true });
  });
}

/**
 * Waits (turn by turn of the event loop) until the job of `delta` is held, at most 10 s: a job
 * claims its durable record (server/jobs/durable.ts: a few synced writes) before it compiles.
 */
async function heldJob(delta: string): Promise<void> {
  for (const end = Date.now() + 10_000; Date.now() < end && !held.has(delta); ) await new Promise((r) => setImmediate(r));
  assert.ok(held.has(delta), `the job of ${delta} never reached the compiler`);
}

before(async () => {
  data = makeDataDir();
  srcRoot = mkdtempSync(path.join(tmpdir(), 'cairn-prio-src-'));
  ctx = await createServerContext(data.dataDir, data.registry, { deltas: { maxConcurrent: 1, maxQueued: 50, beforeCompile } });
  app = makeApp(data, { context: ctx, metrics: createMetrics({ defaultMetrics: false }) });
  pushToken = (await issueToken(ctx.auth.secret, { sub: 'builder', scope: ['push'], repos: ['*'], ttlSeconds: 600 })).token;
  ctx.deltaJobs!.queue.on('started', (j: Job<DeltaJobParams>) => started.push(name(j.params.from, j.params.to)));
});

after(async () => {
  holding = false;
  for (const release of held.values()) release();
  await ctx.deltaJobs?.close();
  data.cleanup();
  rmSync(srcRoot, { recursive: true, force: true });
});

function tree(repo: string, v: number): string {
  const dir = path.join(srcRoot, `${repo}-v${v}`);
  mkdirSync(path.join(dir, 'etc'), { recursive: true });
  writeFileSync(path.join(dir, 'etc/os-release'), `ID=prio\nVERSION_ID=${v}\n`);
  writeFileSync(path.join(dir, 'etc/data'), `${v}\n`.repeat(1000 + v));
  return dir;
}

/** Commits version `v` on top of `parent` and moves REF there through the API (which runs the policy). */
async function publish(repo: Repo, v: number, parent: string | null): Promise<string> {
  const { commit } = await commitFolder(repo, tree(repo.name, v), REF, { parent, subject: `v${v}`, timestamp: BigInt(1_760_000_000 + v * 3600) });
  await request(app).post(`/api/repos/${repo.name}/refs`).set('Authorization', `Bearer ${pushToken}`).send({ updates: [{ ref: REF, commit, expected: parent }] }).expect(200);
  return commit;
}

function superblockUrl(repo: string, from: string, to: string): string {
  const f = checksumToMb64(from);
  return `/repo/${repo}/deltas/${f.slice(0, 2)}/${f.slice(2)}-${checksumToMb64(to)}/superblock`;
}

interface ApiJob {
  id: string;
  state: string;
  source: string;
  priority: number;
  position: number | null;
  params: DeltaJobParams;
  error: { code: string } | null;
}

async function apiJobs(repo: string): Promise<ApiJob[]> {
  return (await request(app).get(`/api/jobs?repo=${repo}`).expect(200)).body.jobs as ApiJob[];
}

/** The queued jobs of `repo` in run order: [delta, priority, position]. */
async function runOrder(repo: string): Promise<Array<[string, number, number | null]>> {
  return (await apiJobs(repo))
    .filter((j) => j.state === 'queued')
    .sort((a, b) => a.position! - b.position!)
    .map((j) => [name(j.params.from, j.params.to), j.priority, j.position]);
}

function jobOf(jobs: ApiJob[], from: string | null, to: string): ApiJob {
  const j = jobs.find((x) => x.params.from === from && x.params.to === to);
  assert.ok(j, `a job for ${name(from, to)}`);
  return j;
}

test('plan: the delta from the previous head first, then older commits, then from scratch, with their priorities', async () => {
  const repo = await data.registry.create('plan');
  await ctx.settings.update('plan', { deltas: { scratch: false, previousCommits: 0 } });
  const c1 = await publish(repo, 1, null);
  const c2 = await publish(repo, 2, c1);
  const c3 = await publish(repo, 3, c2);
  const plan = await planDeltasForRefMove(repo, REF, c3, { scratch: true, previousCommits: 2 }, { old: c2 });
  assert.deepEqual(plan, [
    { from: c2, to: c3, priority: 0 },
    { from: c1, to: c3, priority: 1 },
    { from: null, to: c3, priority: 2 },
  ]);
  // Without `old`, the previous head comes from the ref's log.
  assert.deepEqual(await planDeltasForRefMove(repo, REF, c3, { scratch: true, previousCommits: 2 }), plan);
  // A ref that did not exist before has no previous head: its parents are older commits.
  assert.deepEqual(
    (await planDeltasForRefMove(repo, 'os/new', c3, { scratch: false, previousCommits: 1 }, { old: null })).map((d) => d.priority),
    [1],
  );
});

test('two quick pushes: the previous-head delta runs before any from-scratch one, the older head\'s queued jobs are dropped, an on-demand request to the head ranks first; the API shows priority and position in run order', async () => {
  const repo = await data.registry.create('main');
  await ctx.settings.update('main', { deltas: { scratch: false, previousCommits: 0 } });
  const c0 = await publish(repo, 0, null);
  const c1 = await publish(repo, 1, c0);
  await ctx.deltaJobs!.settled();
  await ctx.settings.update('main', { deltas: { scratch: true, previousCommits: 2 } });

  // v2: c1→c2 (previous head) starts at once and is held; c0→c2 and scratch wait.
  const c2 = await publish(repo, 2, c1);
  await ctx.deltaJobs!.decided();
  await heldJob(name(c1, c2));
  assert.deepEqual(await runOrder('main'), [
    [name(c0, c2), 1, 1],
    [name(null, c2), 2, 2],
  ]);
  const running = jobOf(await apiJobs('main'), c1, c2);
  assert.deepEqual([running.state, running.priority, running.position], ['running', 0, null]);

  // v3 right after: the jobs to c2 that wait are obsolete (dropped); the running c1→c2 runs on.
  const c3 = await publish(repo, 3, c2);
  await ctx.deltaJobs!.decided();
  // A host on c0 asks for c0→c3 (c3 is the head, c0 a version the ref held): with the first group.
  await request(app).get(superblockUrl('main', c0, c3)).expect(404);
  await ctx.deltaJobs!.decided();

  const order = await runOrder('main');
  assert.deepEqual(order, [
    [name(c2, c3), 0, 1],
    [name(c0, c3), 0, 2],
    [name(c1, c3), 1, 3],
    [name(null, c3), 2, 4],
  ]);
  const jobs = await apiJobs('main');
  for (const [from, to] of [[null, c2], [c0, c2]] as const) {
    const j = jobOf(jobs, from, to);
    assert.equal(j.state, 'failed', `${name(from, to)} was dropped`);
    assert.equal(j.error?.code, 'OBSOLETE');
    assert.equal(j.position, null);
  }
  assert.equal(jobOf(jobs, c1, c2).state, 'running', 'a from→to job already running is not aborted');
  assert.equal(jobOf(jobs, c0, c3).source, 'on-demand');
  // One job's own status shows the same.
  const scratch = jobOf(jobs, null, c3);
  const one = (await request(app).get(`/api/jobs/${scratch.id}`).expect(200)).body as ApiJob;
  assert.deepEqual([one.state, one.priority, one.position], ['queued', 2, 4]);

  holding = false;
  held.get(name(c1, c2))!();
  await ctx.deltaJobs!.settled();
  const mine = started.filter((d) => [c2, c3].some((c) => d.endsWith(c)));
  assert.deepEqual(mine, [name(c1, c2), name(c2, c3), name(c0, c3), name(c1, c3), name(null, c3)], 'run order');
  const present = new Set((await listDeltas(repo)).map((d) => d.name));
  for (const d of [name(c1, c2), name(c2, c3), name(c0, c3), name(c1, c3), name(null, c3)]) assert.ok(present.has(d), `${d} was built`);
  assert.ok(!present.has(name(null, c2)) && !present.has(name(c0, c2)), 'the dropped deltas were not built');
  const after = await apiJobs('main');
  assert.equal(jobOf(after, c1, c2).state, 'done');
  assert.ok(after.every((j) => j.position === null));
});

test('a running from-scratch job to a commit that is no longer the head is cancelled (OBSOLETE) and the scratch job of the new head takes its slot; explicit API jobs made obsolete are demoted, not dropped', async () => {
  holding = true;
  held.clear();
  const repo = await data.registry.create('solo');
  await ctx.settings.update('solo', { deltas: { scratch: false, previousCommits: 0 } });
  const c1 = await publish(repo, 1, null);
  await ctx.deltaJobs!.settled();
  await ctx.settings.update('solo', { deltas: { scratch: true, previousCommits: 0 } });

  const c2 = await publish(repo, 2, c1);
  await ctx.deltaJobs!.decided();
  await heldJob(name(null, c2));
  // Explicit requests: to the head (first group), and a downgrade (not a head: second group).
  const up = await request(app).post('/api/repos/solo/deltas').set('Authorization', `Bearer ${pushToken}`).send({ from: c1, to: c2 }).expect(202);
  assert.deepEqual([up.body.job.priority, up.body.job.position], [0, 1]);
  const down = await request(app).post('/api/repos/solo/deltas').set('Authorization', `Bearer ${pushToken}`).send({ from: c2, to: c1 }).expect(202);
  assert.deepEqual([down.body.job.priority, down.body.job.position], [1, 2]);

  const c3 = await publish(repo, 3, c2);
  await ctx.deltaJobs!.decided();
  await heldJob(name(null, c3));
  const jobs = await apiJobs('solo');
  const aborted = jobOf(jobs, null, c2);
  assert.equal(aborted.state, 'failed');
  assert.equal(aborted.error?.code, 'OBSOLETE');
  // The scratch delta of the new head runs next (the slot freed); the explicit ones wait behind it, demoted.
  assert.equal(jobOf(jobs, null, c3).state, 'running');
  assert.deepEqual(await runOrder('solo'), [
    [name(c1, c2), 3, 1],
    [name(c2, c1), 3, 2],
  ]);

  holding = false;
  held.get(name(null, c3))!();
  await ctx.deltaJobs!.settled();
  const present = new Set((await listDeltas(repo)).map((d) => d.name));
  assert.ok(!present.has(name(null, c2)), 'the aborted scratch delta was not built');
  for (const d of [name(null, c3), name(c1, c2), name(c2, c1)]) assert.ok(present.has(d), `${d} was built`);
  const after = await apiJobs('solo');
  for (const [from, to] of [[c1, c2], [c2, c1]] as const) assert.equal(jobOf(after, from, to).state, 'done', `${name(from, to)}: demoted, still built`);
});

test('positions count only the queued jobs the caller may see: private repositories\' jobs ahead are not revealed', async () => {
  holding = true;
  held.clear();
  const secret = await data.registry.create('secret');
  const pub = await data.registry.create('pub');
  for (const r of ['secret', 'pub']) await ctx.settings.update(r, { deltas: { scratch: false, previousCommits: 0 } });
  await ctx.settings.update('secret', { private: true });
  const s1 = await publish(secret, 1, null);
  const s2 = (await commitFolder(secret, tree('secret', 2), 'os/other', { subject: 'other', timestamp: 1_760_100_000n })).commit;
  await request(app).post('/api/repos/secret/refs').set('Authorization', `Bearer ${pushToken}`).send({ updates: [{ ref: 'os/other', commit: s2, expected: null }] }).expect(200);
  const p1 = await publish(pub, 1, null);
  await ctx.deltaJobs!.settled();

  const ask = (repo: string, to: string) => request(app).post(`/api/repos/${repo}/deltas`).set('Authorization', `Bearer ${pushToken}`).send({ to }).expect(202);
  await ask('secret', s1);
  await heldJob(name(null, s1));
  const queuedSecret = (await ask('secret', s2)).body.job as ApiJob;
  const queuedPub = (await ask('pub', p1)).body.job as ApiJob;
  assert.equal(queuedSecret.position, 1);

  const anon = (await request(app).get('/api/jobs').expect(200)).body.jobs as ApiJob[];
  assert.deepEqual(anon.filter((j) => j.state === 'queued').map((j) => [j.id, j.position]), [[queuedPub.id, 1]]);
  assert.equal((await request(app).get(`/api/jobs/${queuedPub.id}`).expect(200)).body.position, 1);
  const reader = (await issueToken(ctx.auth.secret, { sub: 'host', scope: ['read'], repos: ['secret'], ttlSeconds: 600 })).token;
  const seen = (await request(app).get('/api/jobs').set('Authorization', `Bearer ${reader}`).expect(200)).body.jobs as ApiJob[];
  assert.deepEqual(
    seen.filter((j) => j.state === 'queued').map((j) => [j.id, j.position]),
    [
      [queuedPub.id, 2],
      [queuedSecret.id, 1],
    ],
  );

  holding = false;
  held.get(name(null, s1))!();
  await ctx.deltaJobs!.settled();
});
