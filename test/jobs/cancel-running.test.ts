// A running compile made obsolete is cancelled for real: the from-scratch delta of v1 is being
// compiled in its worker thread (xz and all) when v2 is published; the compile stops
// cooperatively, its job fails OBSOLETE, nothing of it is left in the repository, and the delta
// hosts need now (v1→v2, priority 0) runs next and is served.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import request from 'supertest';
import { deltaDir } from '../../storage/deltas/format';
import { listDeltas } from '../../storage/deltas/inventory';
import { commitFolder } from '../../storage/import/folder';
import type { Repo } from '../../storage/repo/repo';
import { issueToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { CairnApp } from '../../server/app';
import type { ServerContext } from '../../server/context';
import type { DeltaJobParams } from '../../server/jobs/delta-job';
import type { Job } from '../../server/jobs/queue';
import { createMetrics } from '../../server/metrics';
import { makeApp, makeDataDir, type TestData } from '../http/helpers';
import { pseudoRandomBytes } from '../helpers/ostree';

const REF = 'os/stable';
let data: TestData;
let ctx: ServerContext;
let app: CairnApp;
let token: string;
let src: string;
const started: string[] = [];
const name = (from: string | null, to: string) => (from ? `${from}-${to}` : to);

before(async () => {
  data = makeDataDir();
  src = mkdtempSync(path.join(tmpdir(), 'cairn-cancel-src-'));
  // Small parts: many cancellation points, and each part some xz work.
  ctx = await createServerContext(data.dataDir, data.registry, { deltas: { maxConcurrent: 1, compileOptions: { maxPartSize: 1_000_000 } } });
  app = makeApp(data, { context: ctx, metrics: createMetrics({ defaultMetrics: false }) });
  token = (await issueToken(ctx.auth.secret, { sub: 'builder', scope: ['push'], repos: ['*'], ttlSeconds: 600 })).token;
  ctx.deltaJobs!.queue.on('started', (j: Job<DeltaJobParams>) => started.push(name(j.params.from, j.params.to)));
});

after(async () => {
  await ctx.deltaJobs?.close();
  data.cleanup();
  rmSync(src, { recursive: true, force: true });
});

async function publish(repo: Repo, v: number, parent: string | null): Promise<string> {
  mkdirSync(path.join(src, 'etc'), { recursive: true });
  mkdirSync(path.join(src, 'usr/lib'), { recursive: true });
  writeFileSync(path.join(src, 'etc/os-release'), `ID=cancel\nVERSION_ID=${v}\n`);
  // ~14 MB of incompressible files: seconds of xz at preset 8.
  if (v === 1) for (let i = 0; i < 16; i++) writeFileSync(path.join(src, 'usr/lib', `lib${i}.so`), pseudoRandomBytes(i + 1, 900_000));
  const { commit } = await commitFolder(repo, src, REF, { parent, subject: `v${v}`, timestamp: BigInt(1_760_000_000 + v * 3600) });
  await request(app).post(`/api/repos/${repo.name}/refs`).set('Authorization', `Bearer ${token}`).send({ updates: [{ ref: REF, commit, expected: parent }] }).expect(200);
  return commit;
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath ?? e.path, e.name));
}

test('a running from-scratch compile made obsolete stops, leaves nothing, and the previous-head delta of the new head runs next', async () => {
  const repo = await data.registry.create('main');
  await ctx.settings.update('main', { deltas: { scratch: true, previousCommits: 1 } });
  const c1 = await publish(repo, 1, null);
  await ctx.deltaJobs!.decided();
  const jobs = ctx.deltaJobs!.queue;
  const scratch = jobs.activeJob(`delta:main:${name(null, c1)}`);
  assert.ok(scratch, 'the policy queued the from-scratch delta of v1');
  // Wait until the worker is compiling (its progress comes from the thread).
  for (let i = 0; i < 600 && !(scratch.state === 'running' && scratch.progress && scratch.progress.done > 0); i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(scratch.state, 'running');
  assert.ok(['compiling', 'compressing'].includes(scratch.progress?.phase ?? ''), `compiling in its worker (${JSON.stringify(scratch.progress)})`);

  // v2, with no from-scratch delta this time: only v1→v2 is queued, at priority 0.
  await ctx.settings.update('main', { deltas: { scratch: false, previousCommits: 1 } });
  const c2 = await publish(repo, 2, c1);
  await ctx.deltaJobs!.settled();

  assert.equal(scratch.state, 'failed');
  assert.equal(scratch.error?.code, 'OBSOLETE');
  assert.deepEqual(started, [name(null, c1), name(c1, c2)], 'the previous-head delta ran next');
  const upd = jobs.list({ repo: 'main' }).find((j) => (j.params as DeltaJobParams).from === c1);
  assert.equal(upd?.state, 'done');
  assert.equal(upd?.priority, 0);
  const api = (await request(app).get(`/api/jobs/${scratch.id}`).expect(200)).body as { state: string; error: { code: string } };
  assert.deepEqual([api.state, api.error.code], ['failed', 'OBSOLETE']);

  assert.ok(existsSync(path.join(data.dataDir, 'repos', 'main', 'objects')), 'the repository folder checked below');
  const present = (await listDeltas(repo)).map((d) => d.name);
  assert.deepEqual(present, [name(c1, c2)]);
  assert.deepEqual(filesUnder(path.join(data.dataDir, 'repos', 'main', deltaDir(null, c1))), [], 'no part of the cancelled delta is left');
  assert.deepEqual(filesUnder(path.join(data.dataDir, 'repos', 'main', 'tmp')), [], 'no temporary file is left');
});
