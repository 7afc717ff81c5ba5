// Durable delta-job records (server/jobs/durable.ts) on a data folder: several DeltaJobs on one
// folder in one process are several replicas (each its own replica id, local queue and scanner),
// sharing the records in the folder's state store. One record per delta, exactly one replica
// builds it, a dead owner's job is taken over once its lease ran out (by the taker's own clock),
// jobs survive a stop, and a replica cancels another's obsolete jobs through their records.
// test/s3/replicas.test.ts does the same with real `cairn serve` processes on a Ceph bucket.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { deltaExists } from '../../storage/deltas/inventory';
import { commitFolder } from '../../storage/import/folder';
import { deltaRecordKey, deltaRecordStore, encodeDeltaRecord, readDeltaRecord, type DeltaRecord } from '../../storage/jobs/records';
import type { Repo } from '../../storage/repo/repo';
import { createServerContext } from '../../server/bootstrap';
import type { ServerContext } from '../../server/context';
import type { DeltaJobParams, DeltaJobResult } from '../../server/jobs/delta-job';
import type { DeltaJobsOptions } from '../../server/jobs/deltas';
import type { Job } from '../../server/jobs/queue';
import { instrumentDeltaJobs } from '../../server/jobs/metrics';
import { createLogger } from '../../server/logging';
import { createMetrics } from '../../server/metrics';
import { makeDataDir, type TestData } from '../http/helpers';

const REF = 'os/durable';
let data: TestData;
let src: string;
let repo: Repo;
const commits: string[] = [];
const contexts: ServerContext[] = [];
const lines: Array<Record<string, unknown>> = [];
const metrics = new Map<string, ReturnType<typeof createMetrics>>();

before(async () => {
  data = makeDataDir();
  src = mkdtempSync(path.join(tmpdir(), 'cairn-durable-src-'));
  repo = await data.registry.create('main');
  mkdirSync(path.join(src, 'etc'), { recursive: true });
  let parent: string | null = null;
  for (let v = 1; v <= 4; v++) {
    writeFileSync(path.join(src, 'etc/os-release'), `ID=durable\nVERSION_ID=${v}\n`);
    writeFileSync(path.join(src, `etc/file${v}`), `version ${v}\n`.repeat(200));
    parent = (await commitFolder(repo, src, REF, { parent, subject: `v${v}`, timestamp: BigInt(1_760_000_000 + v * 3600) })).commit;
    commits.push(parent);
  }
});

after(async () => {
  for (const c of contexts) await c.deltaJobs?.close().catch(() => undefined);
  data.cleanup();
  rmSync(src, { recursive: true, force: true });
});

/** A replica: a server context of its own on the shared data folder, its log lines kept (tagged `replica`). */
async function replica(tag: string, opts: DeltaJobsOptions): Promise<ServerContext> {
  const ctx = await createServerContext(data.dataDir, data.registry, { signing: false, deltas: { maxConcurrent: 1, ...opts } });
  ctx.deltaJobs!.setLogger(createLogger({ level: 'info', write: (l) => lines.push({ ...(JSON.parse(l) as Record<string, unknown>), replica_tag: tag }) }));
  const m = createMetrics({ defaultMetrics: false });
  instrumentDeltaJobs(m.registry, ctx.deltaJobs!);
  metrics.set(tag, m);
  contexts.push(ctx);
  return ctx;
}

/** cairn_delta_job_claims_total of replica `tag`, by outcome. */
async function claims(tag: string): Promise<Record<string, number>> {
  const text = await metrics.get(tag)!.registry.metrics();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^cairn_delta_job_claims_total\{outcome="([a-z-]+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

async function record(from: string | null, to: string): Promise<DeltaRecord | null> {
  return (await readDeltaRecord(deltaRecordStore(data.dataDir), deltaRecordKey('main', from, to)))?.record ?? null;
}

async function until(what: string, pred: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A beforeCompile hook that holds every compile until released (or aborted), counting compiles. */
function gate(): { hook: NonNullable<DeltaJobsOptions['beforeCompile']>; compiles: DeltaJobParams[]; release(): void } {
  const compiles: DeltaJobParams[] = [];
  let open: () => void = () => {};
  const opened = new Promise<void>((r) => (open = r));
  return {
    compiles,
    release: () => open(),
    hook: (p, signal) => {
      compiles.push(p);
      return new Promise<void>((resolve, reject) => {
        void opened.then(resolve);
        signal.addEventListener('abort', () => reject(Object.assign(new Error('aborted while held'), { code: 'CANCELLED' })), { once: true });
      });
    },
  };
}

test('two replicas queue the same delta at once: one record, exactly one of them builds it', async () => {
  const g = gate();
  const a = await replica('a', { beforeCompile: g.hook, durable: { leaseMs: 2000 } });
  const b = await replica('b', { beforeCompile: g.hook, durable: { leaseMs: 2000 } });
  const [ra, rb] = await Promise.all([a, b].map((c) => c.deltaJobs!.request(repo, null, commits[0]!, { source: 'api' })));
  assert.equal(ra!.status, 'queued');
  assert.equal(rb!.status, 'queued');
  const ids = [ra, rb].map((r) => (r as { job: Job }).job.id);
  assert.equal(ids[0], ids[1], "both replicas' jobs have the record's id");
  await until('a compile to start', () => g.compiles.length > 0);
  const running = await record(null, commits[0]!);
  assert.equal(running?.state, 'running');
  assert.equal(running?.attempts, 1);
  g.release();
  await Promise.all([a.deltaJobs!.settled(), b.deltaJobs!.settled()]);
  assert.equal(g.compiles.length, 1, 'compiled once');
  const results = [ra, rb].map((r) => (r as { job: Job<DeltaJobParams, DeltaJobResult> }).job);
  const built = results.filter((j) => j.state === 'done' && !j.result!.existed && !j.result!.ranBy);
  assert.equal(built.length, 1, `one replica built it: ${JSON.stringify(results.map((j) => [j.state, j.result, j.error]))}`);
  const other = results.find((j) => j !== built[0])!;
  assert.equal(other.state, 'done');
  assert.ok(other.result!.ranBy || other.result!.existed, 'the other left it to the first, or found it built');
  assert.ok(await deltaExists(repo, null, commits[0]!));
  const done = await record(null, commits[0]!);
  assert.equal(done?.state, 'done');
  assert.equal(lines.filter((l) => l.msg === 'delta job claimed' && String(l.delta).endsWith(`scratch-${commits[0]}.json`)).length, 1, 'one claim');
  const counted = [await claims('a'), await claims('b')];
  assert.equal((counted[0]!.claimed ?? 0) + (counted[1]!.claimed ?? 0), 1, `claims on /metrics: ${JSON.stringify(counted)}`);
  assert.equal((counted[0]!.elsewhere ?? 0) + (counted[1]!.elsewhere ?? 0) + (counted[0]!.exists ?? 0) + (counted[1]!.exists ?? 0), 1);
  for (const c of [a, b]) await c.deltaJobs!.close();
});

test("a dead replica's running job is taken over once its record stayed unchanged for the lease, not before", async () => {
  const key = deltaRecordKey('main', commits[0]!, commits[1]!);
  const now = new Date().toISOString();
  const dead: DeltaRecord = { repo: 'main', from: commits[0]!, to: commits[1]!, priority: 0, source: 'policy', state: 'running', owner: 'dead-replica', renewals: 3, attempts: 1, createdAt: now, updatedAt: now, startedAt: now };
  assert.ok(await deltaRecordStore(data.dataDir).create(key, encodeDeltaRecord(dead)));
  const t0 = Date.now();
  const c = await replica('c', { durable: { leaseMs: 1200, scanMs: 100 } });
  await new Promise((r) => setTimeout(r, 700));
  assert.equal((await record(commits[0]!, commits[1]!))?.owner, 'dead-replica', 'not taken over within the lease');
  assert.equal(c.deltaJobs!.queue.list().length, 0, 'nothing runs here meanwhile');
  await until('the takeover to finish', async () => (await record(commits[0]!, commits[1]!))?.state === 'done');
  await c.deltaJobs!.settled();
  assert.ok(Date.now() - t0 >= 1200, 'after the lease');
  const rec = (await record(commits[0]!, commits[1]!))!;
  assert.equal(rec.attempts, 2);
  assert.notEqual(rec.owner, 'dead-replica');
  assert.ok(await deltaExists(repo, commits[0]!, commits[1]!));
  const takeover = lines.find((l) => l.msg === 'delta job taken over' && l.replica_tag === 'c');
  assert.equal(takeover?.previous_owner, 'dead-replica');
  assert.ok(lines.some((l) => l.msg === 'delta job lease expired' && l.replica_tag === 'c'));
  assert.deepEqual(await claims('c'), { 'taken-over': 1 });
  await c.deltaJobs!.close();
});

test('jobs survive a stop: a running job is handed back, a queued one stays queued, and a replica started later runs both', async () => {
  const g = gate();
  const d = await replica('d', { beforeCompile: g.hook, durable: { leaseMs: 2000 } });
  await d.deltaJobs!.request(repo, null, commits[1]!, { source: 'api' });
  await d.deltaJobs!.request(repo, commits[1]!, commits[2]!, { source: 'api' });
  await until('the first compile to be held', () => g.compiles.length === 1);
  assert.equal((await record(commits[1]!, commits[2]!))?.state, 'queued');
  const ids = d.deltaJobs!.queue.list().map((j) => j.id).sort();
  await d.deltaJobs!.close();
  const handedBack = await record(null, commits[1]!);
  assert.equal(handedBack?.state, 'queued', 'the running job is queued again');
  assert.equal(handedBack?.owner, undefined);
  assert.equal((await record(commits[1]!, commits[2]!))?.state, 'queued');
  assert.ok(!(await deltaExists(repo, null, commits[1]!)));

  const e = await replica('e', { durable: { leaseMs: 2000 } });
  await until('both records to be done', async () => (await record(null, commits[1]!))?.state === 'done' && (await record(commits[1]!, commits[2]!))?.state === 'done');
  await e.deltaJobs!.settled();
  assert.ok(await deltaExists(repo, null, commits[1]!));
  assert.ok(await deltaExists(repo, commits[1]!, commits[2]!));
  assert.equal(lines.filter((l) => l.msg === 'delta job picked up from the store' && l.replica_tag === 'e').length, 2);
  assert.deepEqual(e.deltaJobs!.queue.list().map((j) => j.id).sort(), ids, 'the same jobs: the same ids');
  await e.deltaJobs!.close();
});

test("obsolete jobs: a ref move seen by one replica cancels another replica's queued and running automatic jobs through their records", async () => {
  // Replica h publishes v4 later; it looks at the store only once, now (no scans after), so that
  // it does not take f's queued job before the move makes it obsolete.
  const h = await replica('h', { durable: { leaseMs: 1200, scanMs: 600_000 }, beforeCompile: async () => {} });
  await new Promise((r) => setTimeout(r, 300));
  const g = gate();
  const f = await replica('f', { beforeCompile: g.hook, durable: { leaseMs: 1200, scanMs: 100 } });
  await repo.setRef(REF, commits[2]!);
  // The policy's jobs for the move to v3, on replica f: from scratch (held while running), then v2→v3 queued.
  await f.deltaJobs!.request(repo, null, commits[2]!, { source: 'policy', priority: 2 });
  await f.deltaJobs!.request(repo, commits[0]!, commits[2]!, { source: 'policy', priority: 1 });
  await until('the scratch compile to be held', () => g.compiles.some((p) => p.from === null));
  const q = f.deltaJobs!.queue;
  const scratch = q.list().find((j) => (j.params as DeltaJobParams).from === null)!;
  const older = q.list().find((j) => (j.params as DeltaJobParams).from === commits[0])!;
  assert.equal(scratch.state, 'running');

  // v4 is published through replica h, which knows nothing of f's jobs but their records.
  await h.settings.update('main', { deltas: { scratch: false, previousCommits: 1 } });
  await repo.setRef(REF, commits[3]!);
  h.deltaJobs!.onPublished(repo, [{ time: new Date().toISOString(), ref: REF, old: commits[2]!, new: commits[3]!, actor: 'test' }]);
  await h.deltaJobs!.decided();
  await until('f to stop its running compile', () => scratch.state !== 'running');
  await f.deltaJobs!.settled();
  await h.deltaJobs!.settled();
  assert.equal(scratch.state, 'failed');
  assert.equal(scratch.error?.code, 'OBSOLETE');
  assert.equal(older.state, 'failed');
  assert.equal(older.error?.code, 'OBSOLETE');
  assert.equal((await record(null, commits[2]!))?.state, 'cancelled');
  assert.equal((await record(commits[0]!, commits[2]!))?.state, 'cancelled');
  assert.ok(!(await deltaExists(repo, null, commits[2]!)), 'the obsolete scratch delta was not built');
  assert.ok(!(await deltaExists(repo, commits[0]!, commits[2]!)));
  assert.ok(await deltaExists(repo, commits[2]!, commits[3]!), "h built the new head's delta");
  assert.ok(lines.some((l) => l.msg === 'delta job cancelled by another replica' && l.replica_tag === 'f'));
  g.release();
});
