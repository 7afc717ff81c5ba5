import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import request from 'supertest';
import { commitFolder } from '../../storage/import/folder';
import { listDeltas } from '../../storage/deltas/inventory';
import { onDemandEligible } from '../../storage/deltas/plan';
import { checksumToMb64 } from '../../storage/objects/checksum';
import type { Repo } from '../../storage/repo/repo';
import { issueToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { CairnApp } from '../../server/app';
import type { ServerContext } from '../../server/context';
import { deltaJobsOptionsFromEnv, type OnDemandResult } from '../../server/jobs/deltas';
import { createMetrics } from '../../server/metrics';
import { remoteDeltaJobService } from '../../server/jobs/service';
import { makeApp, makeDataDir, type TestData } from '../http/helpers';

/**
 * On-demand deltas are bounded (security review: any pair, anonymously, each
 * kept forever): only to the head of a ref, only from a commit that ref held
 * (its log) or one of the head's first deltas.previousCommits parents, and at
 * most `onDemandLimit.perHour` queued per repository per hour.
 *
 * History of REF: c1 → c2 → c5, where c5's parents are c4, c3, c2 (c3 and c4
 * were pushed together with c5, never a head); u is an unrelated commit.
 */
const REF = 'os/stable';
let data: TestData;
let ctx: ServerContext;
let app: CairnApp;
let main: Repo;
let pushToken: string;
let srcRoot: string;
let clock = 1_800_000_000_000;
const results: OnDemandResult[] = [];
const c: Record<string, string> = {};

function tree(v: number): string {
  const dir = path.join(srcRoot, `v${v}`);
  mkdirSync(path.join(dir, 'etc'), { recursive: true });
  writeFileSync(path.join(dir, 'etc/os-release'), `ID=limits\nVERSION_ID=${v}\n`);
  writeFileSync(path.join(dir, 'etc/data'), `${v}\n`.repeat(2000 + v));
  return dir;
}

async function commit(v: number, parent: string | null): Promise<string> {
  return (await commitFolder(main, tree(v), REF, { parent, subject: `v${v}`, timestamp: BigInt(1_760_000_000 + v * 3600) })).commit;
}

async function moveRef(to: string, expected: string | null): Promise<void> {
  await request(app).post('/api/repos/main/refs').set('Authorization', `Bearer ${pushToken}`).send({ updates: [{ ref: REF, commit: to, expected }] }).expect(200);
}

function superblockUrl(from: string, to: string): string {
  const f = checksumToMb64(from);
  return `/repo/main/deltas/${f.slice(0, 2)}/${f.slice(2)}-${checksumToMb64(to)}/superblock`;
}

/** A host asks for from→to: 404 now; then what Cairn decided, once the decision and any job are over. */
async function ask(from: string, to: string): Promise<OnDemandResult> {
  const seen = results.length;
  await request(app).get(superblockUrl(from, to)).expect(404);
  await ctx.deltaJobs!.settled();
  assert.equal(results.length, seen + 1);
  return results[seen]!;
}

before(async () => {
  data = makeDataDir();
  srcRoot = mkdtempSync(path.join(tmpdir(), 'cairn-limits-src-'));
  main = await data.registry.create('main');
  // No policy deltas while the history is made: only on-demand ones in this file.
  await data.registry.create('other');
  const settingsOff = { deltas: { scratch: false, previousCommits: 0 } };
  ctx = await createServerContext(data.dataDir, data.registry, { deltas: { maxConcurrent: 1, maxQueued: 50, onDemandLimit: { perHour: 2, now: () => clock } } });
  await ctx.settings.update('main', settingsOff);
  app = makeApp(data, { context: ctx, metrics: createMetrics({ defaultMetrics: false }) });
  ctx.deltaJobs!.on('ondemand', (r: OnDemandResult) => results.push(r));
  pushToken = (await issueToken(ctx.auth.secret, { sub: 'builder', scope: ['push'], repos: ['main'], ttlSeconds: 600 })).token;

  c.c1 = await commit(1, null);
  await moveRef(c.c1, null);
  c.c2 = await commit(2, c.c1);
  await moveRef(c.c2, c.c1);
  c.c3 = await commit(3, c.c2);
  c.c4 = await commit(4, c.c3);
  c.c5 = await commit(5, c.c4);
  await moveRef(c.c5, c.c2);
  c.u = await commit(99, null);
  await ctx.deltaJobs!.settled();
  assert.deepEqual(ctx.deltaJobs!.queue.list(), [], 'no policy job');
  // On demand: one parent of the head besides the ref's log.
  await ctx.settings.update('main', { deltas: { previousCommits: 1 } });
});

after(async () => {
  await ctx.deltaJobs?.close();
  data.cleanup();
  rmSync(srcRoot, { recursive: true, force: true });
});

test('eligible pairs: to a ref head, from what the ref held or a recent parent of the head', async () => {
  const ok = (from: string, to: string, ancestors: number) => onDemandEligible(main, from, to, { ancestors });
  assert.equal(await ok(c.c2!, c.c5!, 0), true, 'the previous head (ref log)');
  assert.equal(await ok(c.c1!, c.c5!, 0), true, 'an older head (ref log)');
  assert.equal(await ok(c.c4!, c.c5!, 1), true, 'the parent of the head');
  assert.equal(await ok(c.c4!, c.c5!, 0), false, 'no parents allowed');
  assert.equal(await ok(c.c3!, c.c5!, 1), false, 'a grandparent never a head, with one parent allowed');
  assert.equal(await ok(c.c3!, c.c5!, 2), true);
  assert.equal(await ok(c.u!, c.c5!, 50), false, 'an unrelated commit');
  assert.equal(await ok(c.c1!, c.c2!, 50), false, 'not to a head');
  assert.equal(await ok(c.c5!, c.c5!, 50), false);
});

test('a delta from an unrelated old commit is not queued; one from the previous head is; the rate limit holds and refills', async () => {
  assert.equal(await ask(c.u!, c.c5!), 'ineligible');
  assert.equal(await ask(c.c3!, c.c5!), 'ineligible', 'a grandparent that never was a head (previousCommits 1)');
  assert.equal(await ask(c.c1!, c.c2!), 'ineligible', 'not to the current head');
  assert.deepEqual(ctx.deltaJobs!.queue.list(), [], 'nothing queued for ineligible pairs');

  assert.equal(await ask(c.c2!, c.c5!), 'queued', 'from the previous head');
  await request(app).get(superblockUrl(c.c2!, c.c5!)).expect(200); // built, then served: no decision, no token spent
  assert.equal(await ask(c.c1!, c.c5!), 'queued', 'from an older head');
  // Two per hour: the third eligible delta within the hour is refused.
  assert.equal(await ask(c.c4!, c.c5!), 'limited');
  assert.equal(await ask(c.c4!, c.c5!), 'limited');
  assert.deepEqual(
    ctx.deltaJobs!.queue.list().map((j) => [j.source, (j.params as { from: string }).from, j.state]),
    [
      ['on-demand', c.c1, 'done'],
      ['on-demand', c.c2, 'done'],
    ],
  );
  // Half an hour later one token is back.
  clock += 30 * 60 * 1000;
  assert.equal(await ask(c.c4!, c.c5!), 'queued');
  // The bucket is empty again: nothing is looked at (no disk work for anonymous 404s), eligible or not.
  assert.equal(await ask(c.c3!, c.c5!), 'limited');
  const names = (await listDeltas(main)).map((d) => d.name).sort();
  assert.deepEqual(names, [`${c.c1}-${c.c5}`, `${c.c2}-${c.c5}`, `${c.c4}-${c.c5}`].sort());

  // The bucket is per repository: `other` has its own (and no commits: ineligible, nothing spent).
  await request(app).get(superblockUrl(c.c2!, c.c5!).replace('/repo/main/', '/repo/other/')).expect(404);
  await ctx.deltaJobs!.settled();
  assert.equal(results.at(-1), 'ineligible');

  const metrics = (await request(app).get('/metrics').expect(200)).text;
  assert.match(metrics, /cairn_delta_ondemand_total\{result="limited"\} 3/);
  assert.match(metrics, /cairn_delta_ondemand_total\{result="queued"\} 3/);
});

test('cairn serve takes the limit from CAIRN_ONDEMAND_PER_HOUR', () => {
  assert.deepEqual(deltaJobsOptionsFromEnv({ CAIRN_ONDEMAND_PER_HOUR: '3' }).onDemandLimit, { perHour: 3 });
  assert.equal(deltaJobsOptionsFromEnv({}).onDemandLimit, undefined, 'default: 10 per hour');
  assert.throws(() => deltaJobsOptionsFromEnv({ CAIRN_ONDEMAND_PER_HOUR: 'lots' }), /CAIRN_ONDEMAND_PER_HOUR must be an integer/);
});

test('a flood of anonymous superblock 404s costs one decision per pair, at most 16 at once', async () => {
  // Count the decisions that reach the disk: each opens the repository first. `slowMs` makes
  // each decision last that long, so that a flood overlaps them whatever the machine's speed
  // (a decision over blocking reads can otherwise end before the next request arrives).
  let opened = 0;
  let slowMs = 0;
  const open = data.registry.open.bind(data.registry);
  data.registry.open = async (name: string, maxAgeMs?: number) => {
    if (name === 'main') {
      opened++;
      if (slowMs) await new Promise((r) => setTimeout(r, slowMs));
    }
    return open(name, maxAgeMs);
  };
  clock += 2 * 3600 * 1000; // a full bucket
  try {
    const seen = results.length;
    // The same ineligible pair, 50 times: one decision, then its remembered answer.
    for (let i = 0; i < 50; i++) await request(app).get(superblockUrl(c.u!, c.c5!)).expect(404);
    await ctx.deltaJobs!.settled();
    assert.equal(opened, 1, 'one decision for one pair');
    for (const r of results.slice(seen)) assert.ok(r === 'ineligible' || r === 'duplicate', r); // duplicate: while the one decision ran
    // 100 different pairs at once (pipelined, not awaited one by one): at most 16 decide, the rest are 'busy'.
    opened = 0;
    slowMs = 200;
    const made: string[] = [];
    for (let i = 0; i < 100; i++) made.push(`${i.toString(16).padStart(2, '0')}${'e'.repeat(62)}`);
    await Promise.all(made.map((from) => request(app).get(superblockUrl(from, c.c5!)).expect(404)));
    await ctx.deltaJobs!.settled();
    assert.ok(opened <= 16 * 2, `${opened} decisions reached the disk for 100 requests at once`);
    assert.ok(results.slice(seen).includes('busy'), 'the excess is dropped as busy');
  } finally {
    data.registry.open = open;
  }
});

test('a cluster worker tells the primary only about superblocks, each once a minute', async () => {
  const calls: unknown[][] = [];
  const remote = remoteDeltaJobService(async (method, args) => {
    calls.push([method, ...args]);
    return null;
  });
  const key = superblockUrl(c.c2!, c.c5!).slice('/repo/main/'.length);
  remote.onMissing('main', 'objects/ab/cdef.commit');
  remote.onMissing('main', 'summary.sig');
  for (let i = 0; i < 10; i++) remote.onMissing('main', key);
  remote.onMissing('other', key);
  assert.deepEqual(calls, [['onMissing', 'main', key], ['onMissing', 'other', key]]);
});
