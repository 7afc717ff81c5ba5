import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import request from 'supertest';
import { parse, dictGet, type VarDict } from '../../storage/gvariant';
import { commitFolder } from '../../storage/import/folder';
import { listDeltas } from '../../storage/deltas/inventory';
import { checksumToMb64, sha256Hex } from '../../storage/objects/checksum';
import { OBJECT_GVARIANT_TYPE } from '../../storage/objects/types';
import type { Repo } from '../../storage/repo/repo';
import { issueToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { CairnApp } from '../../server/app';
import type { ServerContext } from '../../server/context';
import { createMetrics } from '../../server/metrics';
import { binary, makeApp, makeDataDir, type TestData } from '../http/helpers';

/**
 * The publishing policy and on-demand deltas, in process through the HTTP API:
 * publishing commits on a ref queues a from-scratch delta and deltas from the
 * previous N commits (worker threads), and once they are done the summary, its
 * signature and delta-indexes/ list them; a missing from→to superblock asked for
 * by a host answers 404 and is built for the next host; deltas of pruned
 * commits go away.
 */

const REF = 'os/stable';
let data: TestData;
let ctx: ServerContext;
let app: CairnApp;
let main: Repo;
let pushToken: string;
let adminToken: string;
let srcRoot: string;
/** Commits of REF, oldest first. */
const C: string[] = [];

before(async () => {
  data = makeDataDir();
  main = await data.registry.create('main');
  ctx = await createServerContext(data.dataDir, data.registry, { deltas: { maxConcurrent: 1, maxQueued: 50 } });
  app = makeApp(data, { context: ctx, metrics: createMetrics({ defaultMetrics: false }) });
  pushToken = (await issueToken(ctx.auth.secret, { sub: 'builder', scope: ['push'], repos: ['main'], ttlSeconds: 600 })).token;
  adminToken = (await issueToken(ctx.auth.secret, { sub: 'root', scope: ['admin'], repos: ['*'], ttlSeconds: 600 })).token;
  srcRoot = mkdtempSync(path.join(tmpdir(), 'cairn-delta-src-'));
});

after(async () => {
  await ctx.deltaJobs?.close();
  data.cleanup();
  rmSync(srcRoot, { recursive: true, force: true });
});

/** Version `v` of a small OS tree: most files stay, one changes, one is added per version. */
function writeTree(v: number): string {
  const dir = path.join(srcRoot, `v${v}`);
  mkdirSync(path.join(dir, 'usr/bin'), { recursive: true });
  mkdirSync(path.join(dir, 'etc'), { recursive: true });
  writeFileSync(path.join(dir, 'etc/os-release'), `ID=cairntest\nVERSION_ID=${v}\n`);
  const big = Buffer.alloc(200_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 9)) & 0xff;
  big.write(`version ${v}`, 1000 + v * 5000);
  writeFileSync(path.join(dir, 'usr/bin/tool'), big);
  for (let i = 1; i <= v; i++) writeFileSync(path.join(dir, `usr/bin/added-${i}`), `file added in v${i}\n`.repeat(50));
  return dir;
}

/** Commits version `v` with storage calls, then publishes it through the API (which runs the policy). */
async function publish(v: number): Promise<string> {
  const parent = C.length ? C[C.length - 1]! : null;
  const { commit } = await commitFolder(main, writeTree(v), REF, { parent, subject: `v${v}`, timestamp: BigInt(1_760_000_000 + v * 3600) });
  await request(app).post('/api/repos/main/refs').set('Authorization', `Bearer ${pushToken}`).send({ updates: [{ ref: REF, commit, expected: parent }] }).expect(200);
  C.push(commit);
  return commit;
}

const name = (from: string | null, to: string) => (from ? `${from}-${to}` : to);

function superblockUrl(from: string | null, to: string): string {
  const t = checksumToMb64(to);
  if (!from) return `/repo/main/deltas/${t.slice(0, 2)}/${t.slice(2)}/superblock`;
  const f = checksumToMb64(from);
  return `/repo/main/deltas/${f.slice(0, 2)}/${f.slice(2)}-${t}/superblock`;
}

/** name → digest (hex) from the served summary's ostree.static-deltas. */
async function summaryDeltas(): Promise<Map<string, string>> {
  const summary = (await request(app).get('/repo/main/summary').buffer(true).parse(binary).expect(200)).body as Buffer;
  const [, extra] = parse(OBJECT_GVARIANT_TYPE.summary, summary) as [unknown, VarDict];
  assert.equal(dictGet(extra, 'ostree.summary.indexed-deltas')?.value, true);
  const list = (dictGet(extra, 'ostree.static-deltas')?.value ?? []) as VarDict;
  return new Map(list.map(([k, v]) => [k, (v.value as Buffer).toString('hex')]));
}

/** name → digest from the served delta index of `to`. */
async function indexDeltas(to: string): Promise<Map<string, string>> {
  const mb = checksumToMb64(to);
  const body = (await request(app).get(`/repo/main/delta-indexes/${mb.slice(0, 2)}/${mb.slice(2)}.index`).buffer(true).parse(binary).expect(200)).body as Buffer;
  const [[, v]] = parse(OBJECT_GVARIANT_TYPE.deltaIndex, body) as VarDict;
  return new Map((v!.value as VarDict).map(([k, d]) => [k, (d.value as Buffer).toString('hex')]));
}

function expectedNames(): string[] {
  // v1: scratch; v2: scratch, 1→2; v3: scratch, 2→3, 1→3; v4: scratch, 3→4, 2→4, 1→4 (N = 3).
  const out: string[] = [];
  C.forEach((to, i) => {
    out.push(name(null, to));
    for (let k = Math.max(0, i - 3); k < i; k++) out.push(name(C[k]!, to));
  });
  return out.sort();
}

test('publishing 4 commits queues scratch and previous-3 deltas; when done, summary, summary.sig and delta-indexes list them', async () => {
  // Each version settles before the next: a newer move would make the jobs of
  // the older heads obsolete (dropped; see priorities.test.ts).
  for (let v = 1; v <= 4; v++) {
    await publish(v);
    // The publish answered before any delta existed: generation is off the request path.
    await ctx.deltaJobs!.settled();
  }

  const jobs = (await request(app).get('/api/jobs?repo=main').expect(200)).body;
  const failed = jobs.jobs.filter((j: { state: string }) => j.state !== 'done');
  assert.deepEqual(failed, [], 'every delta job succeeded');
  assert.equal(jobs.jobs.length, 10);
  assert.ok(jobs.jobs.every((j: { source: string; kind: string }) => j.source === 'policy' && j.kind === 'delta'));

  const present = (await listDeltas(main)).map((d) => d.name);
  assert.deepEqual(present, expectedNames());

  const inSummary = await summaryDeltas();
  assert.deepEqual([...inSummary.keys()].sort(), expectedNames());
  for (const d of await listDeltas(main)) assert.equal(inSummary.get(d.name), d.digest, `summary digest of ${d.name}`);
  // The summary is signed after the delta job's update, and the signature matches the new summary.
  assert.ok(existsSync(path.join(main.backend.location, 'summary.sig')));

  const idx = await indexDeltas(C[3]!);
  assert.deepEqual([...idx.keys()].sort(), [name(null, C[3]!), name(C[0]!, C[3]!), name(C[1]!, C[3]!), name(C[2]!, C[3]!)].sort());
  assert.match(readFileSync(path.join(main.backend.location, 'config'), 'utf8'), /indexed-deltas=true/);

  // The API lists the same deltas with sizes and parts.
  const listed = (await request(app).get('/api/repos/main/deltas').expect(200)).body.deltas as Array<{ name: string; from: string | null; to: string; digest: string; size: number; parts: number }>;
  assert.deepEqual(listed.map((d) => d.name), expectedNames());
  for (const d of listed) {
    assert.ok(d.size > 0 && d.parts >= 1, `${d.name}: size ${d.size}, parts ${d.parts}`);
    const sb = (await request(app).get(superblockUrl(d.from, d.to)).buffer(true).parse(binary).expect(200)).body as Buffer;
    assert.equal(sha256Hex(sb), d.digest);
  }

  // Metrics: ten delta jobs done, nothing waiting.
  const metrics = (await request(app).get('/metrics').expect(200)).text;
  assert.match(metrics, /cairn_jobs_total\{kind="delta",state="done"\} 10/);
  assert.match(metrics, /cairn_jobs_queued 0/);
});

test('previousCommits is the N of the policy, per repository; existing deltas are never rebuilt', async () => {
  const before = statSync(path.join(main.backend.location, superblockUrl(C[2]!, C[3]!).slice('/repo/main/'.length))).mtimeMs;
  const c5 = await publish(5);
  await ctx.deltaJobs!.settled();
  const names = new Set((await listDeltas(main)).map((d) => d.name));
  for (const from of [null, C[1]!, C[2]!, C[3]!]) assert.ok(names.has(name(from, c5)), `${name(from, c5)} was built`);
  assert.ok(!names.has(name(C[0]!, c5)), 'no delta from the 4th previous commit with N = 3');

  await request(app).patch('/api/repos/main/settings').set('Authorization', `Bearer ${adminToken}`).send({ deltas: { scratch: false, previousCommits: 1 } }).expect(200);
  const c6 = await publish(6);
  await ctx.deltaJobs!.settled();
  const six = (await listDeltas(main)).filter((d) => d.to === c6).map((d) => d.name);
  assert.deepEqual(six, [name(c5, c6)]);

  // Rolling back to C[3] with only scratch deltas wanted: its scratch delta exists, so nothing is queued or rewritten.
  await request(app).patch('/api/repos/main/settings').set('Authorization', `Bearer ${adminToken}`).send({ deltas: { scratch: true, previousCommits: 0 } }).expect(200);
  const jobsBefore = (await request(app).get('/api/jobs').expect(200)).body.jobs.length;
  await request(app).post('/api/repos/main/refs').set('Authorization', `Bearer ${pushToken}`).send({ updates: [{ ref: REF, commit: C[3], expected: c6 }] }).expect(200);
  await ctx.deltaJobs!.settled();
  assert.equal((await request(app).get('/api/jobs').expect(200)).body.jobs.length, jobsBefore, 'no job for an existing delta');
  assert.equal(statSync(path.join(main.backend.location, superblockUrl(C[2]!, C[3]!).slice('/repo/main/'.length))).mtimeMs, before);
  const again = await request(app).post('/api/repos/main/deltas').set('Authorization', `Bearer ${pushToken}`).send({ from: C[2], to: C[3] }).expect(200);
  assert.deepEqual(again.body, { status: 'exists', name: name(C[2]!, C[3]!) });

  // Back to c6 with deltas off altogether: no job either.
  await request(app).patch('/api/repos/main/settings').set('Authorization', `Bearer ${adminToken}`).send({ deltas: { scratch: false, previousCommits: 0 } }).expect(200);
  await request(app).post('/api/repos/main/refs').set('Authorization', `Bearer ${pushToken}`).send({ updates: [{ ref: REF, commit: c6, expected: C[3] }] }).expect(200);
  await ctx.deltaJobs!.settled();
  assert.equal((await request(app).get('/api/jobs').expect(200)).body.jobs.length, jobsBefore);
});

test('on demand: a missing from→to superblock is 404, then built for the next host; ineligible pairs are not', async () => {
  const c1 = C[0]!;
  const head = C[C.length - 1]!;
  const url = superblockUrl(c1, head);
  await request(app).get(url).expect(404);
  await request(app).get(url).expect(404); // a second host before the job ran: deduplicated
  await ctx.deltaJobs!.settled();
  const sb = (await request(app).get(url).buffer(true).parse(binary).expect(200)).body as Buffer;
  assert.ok(sb.length > 0);
  const jobs = (await request(app).get('/api/jobs?state=done').expect(200)).body.jobs as Array<{ source: string; params: { from: string; to: string } }>;
  const onDemand = jobs.filter((j) => j.source === 'on-demand');
  assert.equal(onDemand.length, 1, 'one job for two requests');
  assert.deepEqual(onDemand[0]!.params, { repo: 'main', from: c1, to: head });
  assert.ok((await summaryDeltas()).has(name(c1, head)), 'the summary lists the on-demand delta');

  // Not the head of a ref, or an unknown commit: 404 and nothing queued.
  await request(app).get(superblockUrl(head, C[1]!)).expect(404);
  await request(app).get(superblockUrl('ab'.repeat(32), head)).expect(404);
  await ctx.deltaJobs!.settled();
  assert.ok(!existsSync(path.join(main.backend.location, superblockUrl(head, C[1]!).slice('/repo/main/'.length))));

  const metrics = (await request(app).get('/metrics').expect(200)).text;
  assert.match(metrics, /cairn_delta_ondemand_total\{result="queued"\} 1/);
  assert.match(metrics, /cairn_delta_ondemand_total\{result="duplicate"\} 1/);
  assert.match(metrics, /cairn_delta_ondemand_total\{result="ineligible"\} 2/);
});

test('POST /api/repos/main/deltas: push scope, 202 with a job that can be followed; unknown commits are 404', async () => {
  await request(app).post('/api/repos/main/deltas').send({ from: C[0], to: C[1] }).expect(401);
  await request(app).post('/api/repos/main/deltas').set('Authorization', `Bearer ${pushToken}`).send({ from: 'cd'.repeat(32), to: REF }).expect(404);
  await request(app).post('/api/repos/main/deltas').set('Authorization', `Bearer ${pushToken}`).send({ to: 'no/such/ref' }).expect(404);
  await request(app).post('/api/repos/main/deltas').set('Authorization', `Bearer ${pushToken}`).send({ from: 5, to: REF }).expect(400);
  // A downgrade delta (C[1] → C[0]): neither the policy nor on-demand makes those.
  const from = C[1]!;
  const to = C[0]!;
  assert.ok(!(await listDeltas(main)).some((d) => d.name === name(from, to)));
  const r = await request(app).post('/api/repos/main/deltas').set('Authorization', `Bearer ${pushToken}`).send({ from, to }).expect(202);
  assert.equal(r.body.status, 'queued');
  assert.equal(r.headers.location, `/api/jobs/${r.body.job.id}`);
  await ctx.deltaJobs!.settled();
  const job = (await request(app).get(r.headers.location!).expect(200)).body;
  assert.equal(job.state, 'done');
  assert.equal(job.result.name, name(from, to));
  assert.equal(job.result.existed, false);
  assert.match(job.result.digest, /^[0-9a-f]{64}$/);
  await request(app).get('/api/jobs/00000000-0000-0000-0000-000000000000').expect(404);
  await request(app).get('/api/jobs?state=bogus').expect(400);
});

test('deltas whose commits were pruned are removed, and the summary stops listing them', async () => {
  const gone = C[0]!;
  const before = (await listDeltas(main)).filter((d) => d.from === gone || d.to === gone);
  assert.ok(before.length >= 4, `deltas touching the first commit: ${before.length}`);
  // Prune the first commit (what `cairn prune` would do): its commit object goes.
  rmSync(path.join(main.backend.location, 'objects', gone.slice(0, 2), `${gone.slice(2)}.commit`));
  // Any delta job prunes afterwards; ask for one the policy did not make.
  await request(app).post('/api/repos/main/deltas').set('Authorization', `Bearer ${pushToken}`).send({ from: C[5], to: C[1] }).expect(202);
  await ctx.deltaJobs!.settled();
  const after = await listDeltas(main);
  assert.deepEqual(after.filter((d) => d.from === gone || d.to === gone), []);
  const done = (await request(app).get('/api/jobs?state=done&limit=1').expect(200)).body.jobs[0];
  assert.deepEqual([...done.result.pruned].sort(), before.map((d) => d.name).sort());
  const inSummary = await summaryDeltas();
  for (const d of before) assert.ok(!inSummary.has(d.name), `${d.name} left the summary`);
  assert.deepEqual([...inSummary.keys()].sort(), after.map((d) => d.name));
});

test('a full queue: the API answers 503 QUEUE_FULL with Retry-After, on-demand counts "full", nothing is built', async () => {
  const busy = await createServerContext(data.dataDir, data.registry, { deltas: { maxQueued: 0 } });
  const busyApp = makeApp(data, { context: busy, metrics: createMetrics({ defaultMetrics: false }) });
  try {
    const head = C[C.length - 1]!;
    const r = await request(busyApp).post('/api/repos/main/deltas').set('Authorization', `Bearer ${pushToken}`).send({ from: C[4], to: C[2] }).expect(503);
    assert.equal(r.body.error.code, 'QUEUE_FULL');
    assert.equal(r.headers['retry-after'], '60');
    await request(busyApp).get(superblockUrl(C[1]!, head)).expect(404);
    await busy.deltaJobs!.settled();
    assert.deepEqual(busy.deltaJobs!.queue.list(), []);
    const metrics = (await request(busyApp).get('/metrics').expect(200)).text;
    assert.match(metrics, /cairn_delta_ondemand_total\{result="full"\} 1/);
    assert.match(metrics, /cairn_jobs_refused_total\{kind="delta",reason="full"\} 2/);
    const names = new Set((await listDeltas(main)).map((d) => d.name));
    assert.ok(!names.has(name(C[4]!, C[2]!)) && !names.has(name(C[1]!, head)));
  } finally {
    await busy.deltaJobs!.close();
  }
});

test('jobs and deltas of a private repository are visible only with a read token for it', async () => {
  await request(app).patch('/api/repos/main/settings').set('Authorization', `Bearer ${adminToken}`).send({ private: true }).expect(200);
  try {
    const readToken = (await issueToken(ctx.auth.secret, { sub: 'host', scope: ['read'], repos: ['main'], ttlSeconds: 600 })).token;
    const otherToken = (await issueToken(ctx.auth.secret, { sub: 'host', scope: ['read'], repos: ['other'], ttlSeconds: 600 })).token;
    const anon = (await request(app).get('/api/jobs').expect(200)).body.jobs;
    assert.deepEqual(anon, []);
    assert.deepEqual((await request(app).get('/api/jobs').set('Authorization', `Bearer ${otherToken}`).expect(200)).body.jobs, []);
    const mine = (await request(app).get('/api/jobs').set('Authorization', `Bearer ${readToken}`).expect(200)).body.jobs as Array<{ id: string }>;
    assert.ok(mine.length > 10);
    await request(app).get(`/api/jobs/${mine[0]!.id}`).expect(404);
    await request(app).get(`/api/jobs/${mine[0]!.id}`).set('Authorization', `Bearer ${readToken}`).expect(200);
    await request(app).get('/api/repos/main/deltas').expect(404); // as a repository that does not exist
    await request(app).get('/api/repos/main/deltas').set('Authorization', `Bearer ${readToken}`).expect(200);
    await request(app).post('/api/repos/main/deltas').set('Authorization', `Bearer ${readToken}`).send({ to: REF }).expect(403);
  } finally {
    await request(app).patch('/api/repos/main/settings').set('Authorization', `Bearer ${adminToken}`).send({ private: false }).expect(200);
  }
});
