// /metrics (issue 10, item 6): the exposition parses as Prometheus text (a
// strict parser), and its counters move after requests: requests by route,
// ref updates by repository, objects refused by reason, file-cache hits and
// misses, delta jobs by state and their durations; repository sizes are
// there, private repositories only together (`_private`), and refreshed at
// most once per max age.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import type { CairnApp } from '../../server/app';
import { issueToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { ServerContext } from '../../server/context';
import { createMetrics } from '../../server/metrics';
import { repoStats } from '../../storage/browse/stats';
import type { Repo } from '../../storage/repo/repo';
import { makeApp, makeDataDir, moveRefs, upload, uploadUnboundCommit, type TestData } from './helpers';
import { parsePrometheusText, valueOf, type Family } from './prometheus-text';

let data: TestData;
let ctx: ServerContext;
let app: CairnApp;
let main: Repo;
let token: string;

before(async () => {
  data = makeDataDir();
  main = await data.registry.create('main');
  await data.registry.create('hidden-one');
  ctx = await createServerContext(data.dataDir, data.registry, { signing: false, deltas: { maxConcurrent: 1, maxQueued: 50 } });
  await ctx.settings.update('hidden-one', { private: true });
  app = makeApp(data, { context: ctx });
  token = (await issueToken(ctx.auth.secret, { sub: 'builder', scope: ['push'], repos: ['main'], ttlSeconds: 600 })).token;
});

after(async () => {
  await ctx.deltaJobs?.close();
  data.cleanup();
});

async function scrape(on: CairnApp = app): Promise<{ text: string; families: Map<string, Family> }> {
  const res = await request(on).get('/metrics').expect(200);
  assert.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  return { text: res.text, families: parsePrometheusText(res.text) };
}

test('the strict parser refuses what a scraper could misread', () => {
  const ok = '# HELP a_total help\n# TYPE a_total counter\na_total{x="1"} 2\n';
  assert.equal(valueOf(parsePrometheusText(ok), 'a_total', { x: '1' }), 2);
  for (const bad of [
    'a_total 1', // no final newline
    'a-b 1\n', // bad name
    'a{x="1} 1\n', // unterminated value
    'a{x="\\q"} 1\n', // bad escape
    'a{x="1"} one\n', // not a number
    'a{x="1",x="2"} 1\n', // label twice
    'a 1\na 2\n', // series twice
    'a 1\nb 1\na{x="1"} 1\n', // family not together
    'a 1\n# TYPE a counter\n', // TYPE after samples
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_count 1\n', // no +Inf bucket
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n', // decreasing
  ]) {
    assert.throws(() => parsePrometheusText(bad), Error, JSON.stringify(bad));
  }
});

test('/metrics parses, and its counters move after requests', { timeout: 120_000 }, async () => {
  const s0 = await scrape();
  const v0 = (name: string, labels: Record<string, string> = {}) => valueOf(s0.families, name, labels) ?? 0;
  // Sizes are there from the first scrape: main is empty, private repositories only together.
  assert.equal(valueOf(s0.families, 'cairn_repository_objects', { repo: 'main' }), 0);
  assert.equal(typeof valueOf(s0.families, 'cairn_repository_bytes', { repo: '_private' }), 'number');
  assert.ok(!s0.text.includes('hidden-one'), 'no private repository name in /metrics');

  // A push: objects, a refused multipart upload and a refused PUT, a ref update.
  const commit = await uploadUnboundCommit(app, token);
  const absent = 'ab'.repeat(32); // no such object: the bytes are verified
  const refusedUpload = await upload(app, token, [[`${absent}.commit`, Buffer.from('not the commit')]]);
  assert.equal(refusedUpload.status, 400);
  const reason = refusedUpload.body.error.code as string;
  const refusedPut = await request(app).put(`/api/repos/main/objects/${absent}.commit`).set('Authorization', `Bearer ${token}`).set('Content-Type', 'application/octet-stream').send(Buffer.from('not the commit'));
  assert.equal(refusedPut.status, 400);
  assert.equal(refusedPut.body.error.code, reason);
  await moveRefs(app, token, [{ ref: 'os/stable', commit, expected: null }]).expect(200);
  // Files: the commit object twice (a miss, then a hit of the file cache).
  const object = `/repo/main/objects/${commit.slice(0, 2)}/${commit.slice(2)}.commit`;
  await request(app).get(object).expect(200);
  await request(app).get(object).expect(200);
  await ctx.deltaJobs!.settled(); // the policy's from-scratch delta of the new head (its record is written before it is queued)

  const s1 = await scrape();
  const moved = (name: string, labels: Record<string, string> = {}) => (valueOf(s1.families, name, labels) ?? 0) - v0(name, labels);
  assert.equal(moved('cairn_http_requests_total', { route: 'api_refs_update', method: 'POST', status: '200' }), 1);
  assert.equal(moved('cairn_http_requests_total', { route: 'api_objects_upload', method: 'POST', status: '400' }), 1);
  assert.equal(moved('cairn_ref_updates_total', { repo: 'main' }), 1);
  assert.equal(moved('cairn_objects_refused_total', { reason }), 2);
  assert.ok(moved('cairn_cache_misses_total', { cache: 'files' }) >= 1);
  assert.ok(moved('cairn_cache_hits_total', { cache: 'files' }) >= 1);
  assert.equal(valueOf(s1.families, 'cairn_jobs_by_state', { kind: 'delta', state: 'done' }), 1);
  assert.equal(valueOf(s1.families, 'cairn_job_duration_seconds_count', { kind: 'delta', state: 'done' }), 1);
  assert.equal(s1.families.get('cairn_jobs_by_state')?.type, 'gauge');
  assert.equal(s1.families.get('cairn_ref_updates_total')?.type, 'counter');
  assert.equal(s1.families.get('cairn_objects_refused_total')?.type, 'counter');
  assert.equal(s1.families.get('cairn_job_duration_seconds')?.type, 'histogram');
  // Repository sizes are not computed again within their max age (a minute).
  assert.equal(valueOf(s1.families, 'cairn_repository_objects', { repo: 'main' }), 0);
  assert.ok(!s1.text.includes('hidden-one'));

  // With a max age of 0 every scrape computes them: what the storage's statistics say.
  const fresh = makeApp(data, { context: ctx, metrics: createMetrics({ defaultMetrics: false, repoSizesMaxAgeMs: 0 }) });
  const s2 = await scrape(fresh);
  const stats = await repoStats(main);
  assert.ok(stats.objectsTotal.count > 0);
  assert.equal(valueOf(s2.families, 'cairn_repository_objects', { repo: 'main' }), stats.objectsTotal.count);
  assert.equal(valueOf(s2.families, 'cairn_repository_bytes', { repo: 'main' }), stats.objectsTotal.bytes + stats.deltas.bytes);
  assert.ok(stats.deltas.count >= 1, 'the delta counts in the bytes');
});
