import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import request from 'supertest';
import { parse, type VarDict } from '../../storage/gvariant';
import { checksumToMb64 } from '../../storage/objects/checksum';
import { OBJECT_GVARIANT_TYPE } from '../../storage/objects/types';
import type { Repo } from '../../storage/repo/repo';
import { isCairnError } from '../../storage/errors';
import { issueToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { CairnApp } from '../../server/app';
import type { ServerContext } from '../../server/context';
import { compileDeltaTask, deltaJobKind } from '../../server/jobs/delta-job';
import { createMetrics } from '../../server/metrics';
import { FIXTURE_REPO, REF_NAME, S1, S2 } from '../helpers/fixtures';
import { binary, makeApp, makeDataDir, type TestData } from './helpers';

/**
 * Ownership (security review: Cairn wrote summaries, signatures, deltas and
 * keys into repositories made by `ostree` / `flatpak`). `sample` here is the
 * ostree-made reference repository copied into DATA/repos: nothing Cairn does
 * by itself or for a client writes into it until an admin adopts it; then it
 * behaves as one Cairn created.
 */
let data: TestData;
let ctx: ServerContext;
let app: CairnApp;
let sample: Repo;
let pushToken: string;
let adminToken: string;

const FROM_TO = `deltas/${checksumToMb64(S1).slice(0, 2)}/${checksumToMb64(S1).slice(2)}-${checksumToMb64(S2)}`;

before(async () => {
  data = makeDataDir();
  // The fixture ships the S1→S2 delta: take it away, so hosts asking for it get a 404 (the on-demand path).
  rmSync(path.join(data.repoDir, FROM_TO), { recursive: true });
  sample = (await data.registry.open('sample'))!;
  ctx = await createServerContext(data.dataDir, data.registry, { deltas: { maxConcurrent: 1, maxQueued: 50 } });
  app = makeApp(data, { context: ctx, metrics: createMetrics({ defaultMetrics: false }) });
  pushToken = (await issueToken(ctx.auth.secret, { sub: 'builder', scope: ['push'], repos: ['*'], ttlSeconds: 600 })).token;
  adminToken = (await issueToken(ctx.auth.secret, { sub: 'root', scope: ['admin'], repos: ['*'], ttlSeconds: 600 })).token;
});

after(async () => {
  await ctx.deltaJobs?.close();
  data.cleanup();
});

/** Every file under `dir` (relative path → sha256 of its bytes, mode and size). */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        out.set(`${r}/`, 'dir');
        walk(r);
      } else {
        const p = path.join(dir, r);
        const st = statSync(p);
        out.set(r, `${st.mode.toString(8)} ${st.size} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`);
      }
    }
  };
  walk('');
  return out;
}

function objectFile(checksum: string, ext: string): Buffer {
  return readFileSync(path.join(FIXTURE_REPO, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.${ext}`));
}

function assertNotOwned(res: request.Response): void {
  assert.equal(res.status, 403, JSON.stringify(res.body));
  assert.equal(res.body.error.code, 'NOT_OWNED');
  assert.match(res.body.error.message, /repository sample was not created by Cairn; run `cairn adopt sample` to let Cairn publish into it/);
}

test('a repository Cairn did not create is served as it is: no push, delta, summary, signature or key goes into it', async () => {
  const before = snapshot(data.repoDir);
  const keysDir = path.join(data.dataDir, 'keys', 'sample');

  assert.equal((await request(app).get('/api/repos/sample/settings').expect(200)).body.owned, false);
  assert.deepEqual((await request(app).get('/api/repos').expect(200)).body.repos.find((r: { name: string }) => r.name === 'sample'), {
    name: 'sample',
    private: false,
    owned: false,
    url: '/repo/sample/',
  });

  // Pushes: object uploads (multipart and PUT) and ref updates.
  assertNotOwned(await request(app).post('/api/repos/sample/objects').set('Authorization', `Bearer ${pushToken}`).attach(`${S1}.commit`, objectFile(S1, 'commit'), `${S1}.commit`));
  assertNotOwned(await request(app).put(`/api/repos/sample/objects/${S1}.commit`).set('Authorization', `Bearer ${pushToken}`).set('Content-Type', 'application/octet-stream').send(objectFile(S1, 'commit')));
  assertNotOwned(await request(app).post('/api/repos/sample/refs').set('Authorization', `Bearer ${pushToken}`).send({ updates: [{ ref: REF_NAME, commit: S1, expected: S2 }] }));
  // Credentials are checked first: a stranger learns nothing about ownership.
  await request(app).post('/api/repos/sample/refs').send({ updates: [{ ref: REF_NAME, commit: S1 }] }).expect(401);
  await request(app).post('/api/repos/sample/objects').expect(401);
  // The first step of a push, which objects are missing, is refused too.
  assertNotOwned(await request(app).post('/api/repos/sample/objects/missing').set('Authorization', `Bearer ${pushToken}`).send({ objects: [`${S1}.commit`] }));

  // The delta API, on-demand deltas, the publish policy, the job itself.
  assertNotOwned(await request(app).post('/api/repos/sample/deltas').set('Authorization', `Bearer ${pushToken}`).send({ from: S1, to: S2 }));
  await request(app).get(`/repo/sample/${FROM_TO}/superblock`).expect(404);
  await request(app).get(`/repo/sample/${FROM_TO}/superblock`).expect(404);
  await assert.rejects(ctx.deltaJobs!.request(sample, S1, S2, { source: 'test' }), (e) => isCairnError(e, 'NOT_OWNED'));
  ctx.deltaJobs!.onPublished(sample, [{ time: new Date().toISOString(), ref: REF_NAME, old: S1, new: S2, actor: 'test' }]);
  await ctx.deltaJobs!.settled();
  assert.deepEqual(ctx.deltaJobs!.queue.list(), [], 'no job was queued');
  const kind = deltaJobKind({ dataDir: data.dataDir, openRepo: (n) => data.registry.open(n), owned: () => false, summarySigner: async () => undefined });
  const ctl = { id: 'x', signal: new AbortController().signal, progress() {} };
  await assert.rejects(kind.run({ repo: 'sample', from: S1, to: S2 }, ctl), (e) => isCairnError(e, 'NOT_OWNED'));
  await assert.rejects(compileDeltaTask({ dataDir: data.dataDir, repo: 'sample', from: S1, to: S2, options: {} }, () => {}), (e) => isCairnError(e, 'NOT_OWNED'));

  // Keys: none made, none served.
  await request(app).get('/repo/sample/keys/gpg.asc').expect(404);
  await request(app).get('/repo/sample/keys/ed25519.pub').expect(404);
  await assert.rejects(ctx.signerFor(sample), (e) => isCairnError(e, 'NOT_OWNED'));
  assert.equal(existsSync(keysDir), false, 'no keys generated for an unowned repository');

  assert.deepEqual(snapshot(data.repoDir), before, 'not one byte of the repository changed');
  const metrics = (await request(app).get('/metrics').expect(200)).text;
  assert.match(metrics, /cairn_delta_ondemand_total\{result="ineligible"\} 2/);
});

test('adoption through the API: admin only, never undone there; summary regenerated and signed at once; then pushes and deltas work', async () => {
  const fixtureSig = readFileSync(path.join(FIXTURE_REPO, 'summary.sig'));
  await request(app).patch('/api/repos/sample/settings').send({ owned: true }).expect(401);
  assert.equal((await request(app).patch('/api/repos/sample/settings').set('Authorization', `Bearer ${pushToken}`).send({ owned: true }).expect(403)).body.error.code, 'FORBIDDEN');
  await request(app).patch('/api/repos/sample/settings').set('Authorization', `Bearer ${adminToken}`).send({ owned: 'yes' }).expect(400);
  assert.equal(ctx.settings.owned('sample'), false);

  const adopted = await request(app).patch('/api/repos/sample/settings').set('Authorization', `Bearer ${adminToken}`).send({ owned: true }).expect(200);
  assert.equal(adopted.body.owned, true);
  // The summary is Cairn's now: it lists the ref, and its signature is Cairn's, made with keys served at /keys/.
  const summary = (await request(app).get('/repo/sample/summary').buffer(true).parse(binary).expect(200)).body as Buffer;
  const [refs] = parse(OBJECT_GVARIANT_TYPE.summary, summary) as [Array<[string, [bigint, Buffer, VarDict]]>, VarDict];
  assert.deepEqual(refs.map(([n, [, c]]) => [n, c.toString('hex')]), [[REF_NAME, S2]]);
  const sig = readFileSync(path.join(data.repoDir, 'summary.sig'));
  assert.ok(!sig.equals(fixtureSig), 'summary.sig was re-signed by Cairn');
  assert.match((await request(app).get('/repo/sample/keys/gpg.asc').expect(200)).text, /BEGIN PGP PUBLIC KEY BLOCK/);

  // Cannot be given back through the API; setting it again is harmless.
  const back = await request(app).patch('/api/repos/sample/settings').set('Authorization', `Bearer ${adminToken}`).send({ owned: false }).expect(400);
  assert.match(back.body.error.message, /cannot be set back to false/);
  await request(app).patch('/api/repos/sample/settings').set('Authorization', `Bearer ${adminToken}`).send({ owned: true, private: false }).expect(200);
  assert.equal(ctx.settings.owned('sample'), true);

  // On demand now: S1 is S2's parent, so a host asking for S1→S2 gets it built.
  await request(app).get(`/repo/sample/${FROM_TO}/superblock`).expect(404);
  await ctx.deltaJobs!.settled();
  await request(app).get(`/repo/sample/${FROM_TO}/superblock`).expect(200);
  // And pushes: a ref update goes through (signed, summary regenerated).
  const moved = await request(app).post('/api/repos/sample/refs').set('Authorization', `Bearer ${pushToken}`).send({ updates: [{ ref: REF_NAME, commit: S1, expected: S2 }] }).expect(200);
  assert.equal(moved.body.changes.length, 1);
  await request(app).put(`/api/repos/sample/objects/${S1}.commit`).set('Authorization', `Bearer ${pushToken}`).set('Content-Type', 'application/octet-stream').send(objectFile(S1, 'commit')).expect(200);
  await ctx.deltaJobs!.settled();
});

test('repositories Cairn creates are owned from birth (POST /api/repos, registry.create)', async () => {
  await request(app).post('/api/repos').set('Authorization', `Bearer ${adminToken}`).send({ name: 'made' }).expect(201);
  assert.equal((await request(app).get('/api/repos/made/settings').expect(200)).body.owned, true);
  await data.registry.create('made2');
  assert.equal(ctx.settings.owned('made2'), true);
  await request(app).patch('/api/repos/made2/settings').set('Authorization', `Bearer ${adminToken}`).send({ owned: false }).expect(400);
  await request(app).get('/repo/made2/keys/gpg.asc').expect(200);
});

test('/healthz counts only public repositories; the jobs API counts only jobs the caller may see', async () => {
  const count = async () => (await request(app).get('/healthz').expect(200)).body as { status: string; repos: number };
  assert.deepEqual(await count(), { status: 'ok', repos: 3 }); // sample, made, made2
  await data.registry.create('hidden');
  await ctx.settings.update('hidden', { private: true });
  assert.deepEqual(await count(), { status: 'ok', repos: 3 }, 'a private repository is not counted');

  // A job of the private repository, held running, and one waiting behind it.
  const queue = ctx.deltaJobs!.queue;
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  queue.register({ name: 'hold', run: () => held });
  queue.submit('hold', 'hold:1', {}, { repo: 'hidden', source: 'test' });
  queue.submit('hold', 'hold:2', {}, { repo: 'hidden', source: 'test' });
  try {
    const readHidden = (await issueToken(ctx.auth.secret, { sub: 'host', scope: ['read'], repos: ['hidden'], ttlSeconds: 600 })).token;
    const anon = (await request(app).get('/api/jobs').expect(200)).body;
    assert.deepEqual(anon.jobs.filter((j: { repo: string }) => j.repo === 'hidden'), []);
    assert.equal(anon.queue.running, 0, 'the running job of a private repository is not counted for strangers');
    assert.equal(anon.queue.queued, 0);
    assert.equal(anon.queue.deciding, 0);
    const reader = (await request(app).get('/api/jobs').set('Authorization', `Bearer ${readHidden}`).expect(200)).body;
    assert.equal(reader.queue.running, 1);
    assert.equal(reader.queue.queued, 1);
    assert.equal(reader.jobs.filter((j: { repo: string }) => j.repo === 'hidden').length, 2);
  } finally {
    release();
    await queue.idle();
  }
});
