// The flatpak parts of the API without a flatpak client (supertest): kind and remote configuration
// through the settings API (validated; 403 NOT_OWNED for a repository Cairn does not own, nothing
// written), the .flatpakrepo and .flatpakref routes (404 for a plain repository; GPG key as base64 of
// the binary key; hostile Host headers), and end-of-life requests that are refused change nothing.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import request from 'supertest';
import { issueToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { CairnApp } from '../../server/app';
import type { ServerContext } from '../../server/context';
import { createMetrics } from '../../server/metrics';
import { makeApp, makeDataDir, type TestData } from '../http/helpers';
import { summaryMeta } from './helpers';
import { parseIndex } from '../../storage/flatpak/index';
import { dearmor } from '../../storage/flatpak/flatpakrepo';

let data: TestData;
let ctx: ServerContext;
let app: CairnApp;
let admin: string;
let push: string;

before(async () => {
  data = makeDataDir();
  await data.registry.create('fp');
  ctx = await createServerContext(data.dataDir, data.registry, { deltas: { maxConcurrent: 1, maxQueued: 50 } });
  app = makeApp(data, { context: ctx, metrics: createMetrics({ defaultMetrics: false }) });
  admin = (await issueToken(ctx.auth.secret, { sub: 'root', scope: ['admin'], repos: ['*'], ttlSeconds: 600 })).token;
  push = (await issueToken(ctx.auth.secret, { sub: 'builder', scope: ['push'], repos: ['*'], ttlSeconds: 600 })).token;
});

after(async () => {
  await ctx.deltaJobs?.close();
  data.cleanup();
});

const fpDir = () => path.join(data.dataDir, 'repos', 'fp');

test('a plain repository is kind ostree and has no .flatpakrepo', async () => {
  const s = await request(app).get('/api/repos/fp/settings').set('Authorization', `Bearer ${admin}`).expect(200);
  assert.equal(s.body.kind, 'ostree');
  await request(app).get('/repo/fp.flatpakrepo').expect(404);
  await request(app).get('/repo/fp/flatpak/org.x.A.flatpakref').expect(404);
});

test('settings PATCH validates the remote configuration; a bad value changes nothing', async () => {
  const config = () => readFileSync(path.join(fpDir(), 'config'), 'utf8');
  const before = config();
  for (const [flatpak, why] of [
    [{ title: 'a\nb' }, /control characters/],
    [{ homepage: 'javascript:alert(1)' }, /http\(s\) URL/],
    [{ homepage: 'not a url' }, /http\(s\) URL/],
    [{ defaultBranch: 'a/b' }, /branch name/],
    [{ title: '' }, /1 to 2048/],
  ] as const) {
    const r = await request(app).patch('/api/repos/fp/settings').set('Authorization', `Bearer ${admin}`).send({ flatpak }).expect(400);
    assert.equal(r.body.error.code, 'INVALID_ARGUMENT');
    assert.match(r.body.error.message, why);
  }
  await request(app).patch('/api/repos/fp/settings').set('Authorization', `Bearer ${admin}`).send({ flatpak: { unknown: 'x' } }).expect(400);
  await request(app).patch('/api/repos/fp/settings').set('Authorization', `Bearer ${admin}`).send({ kind: 'debian' }).expect(400);
  await request(app).patch('/api/repos/fp/settings').set('Authorization', `Bearer ${push}`).send({ kind: 'flatpak' }).expect(403);
  assert.equal(config(), before);
});

test('kind flatpak with a title: the summary, the index and .flatpakrepo carry it', async () => {
  const r = await request(app)
    .patch('/api/repos/fp/settings')
    .set('Authorization', `Bearer ${admin}`)
    .send({ kind: 'flatpak', flatpak: { title: 'Títle \\ with a backslash', homepage: 'https://example.org/', defaultBranch: 'stable' } })
    .expect(200);
  assert.equal(r.body.kind, 'flatpak');
  assert.deepEqual(r.body.flatpak, { title: 'Títle \\ with a backslash', homepage: 'https://example.org/', defaultBranch: 'stable' });
  const md = summaryMeta(readFileSync(path.join(fpDir(), 'summary')));
  assert.equal(md.get('xa.title')?.value, 'Títle \\ with a backslash');
  assert.equal(md.get('xa.default-branch')?.value, 'stable');
  const idx = parseIndex(readFileSync(path.join(fpDir(), 'summary.idx')))!;
  assert.equal(new Map(idx.metadata).get('xa.homepage')?.value, 'https://example.org/');
  const repoFile = await request(app).get('/repo/fp.flatpakrepo').set('Host', 'cairn.example:8080').expect(200);
  assert.match(repoFile.headers['content-type'], /application\/vnd\.flatpak\.repo/);
  const lines = new Map(repoFile.text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  assert.equal(lines.get('Url'), 'http://cairn.example:8080/repo/fp/');
  assert.equal(lines.get('Title'), 'Títle \\ with a backslash');
  const armored = (await request(app).get('/repo/fp/keys/gpg.asc').expect(200)).text;
  assert.deepEqual(Buffer.from(lines.get('GPGKey')!, 'base64'), dearmor(armored));
  assert.equal(Buffer.from(lines.get('GPGKey')!, 'base64')[0]! & 0x80, 0x80, 'a binary OpenPGP packet');
  await request(app).get('/repo/fp.flatpakrepo').set('Host', 'evil"x').expect(400);
  // removing a key
  const r2 = await request(app).patch('/api/repos/fp/settings').set('Authorization', `Bearer ${admin}`).send({ flatpak: { homepage: null } }).expect(200);
  assert.equal(r2.body.flatpak.homepage, undefined);
});

test('remote configuration of a repository Cairn does not own: 403 NOT_OWNED, nothing written', async () => {
  const sampleConfig = readFileSync(path.join(data.repoDir, 'config'), 'utf8');
  const r = await request(app).patch('/api/repos/sample/settings').set('Authorization', `Bearer ${admin}`).send({ flatpak: { title: 'x' } }).expect(403);
  assert.equal(r.body.error.code, 'NOT_OWNED');
  assert.equal(readFileSync(path.join(data.repoDir, 'config'), 'utf8'), sampleConfig);
});

test('end-of-life requests that cannot be honoured answer 4xx and move nothing', async () => {
  const e = (body: unknown, token = push) => request(app).post('/api/repos/fp/end-of-life').set('Authorization', `Bearer ${token}`).send(body as object);
  await e({ ref: 'app/org.x.A/x86_64/stable', reason: 'gone', expected: '0'.repeat(64) }).expect(404);
  await e({ ref: 'os/stable', reason: 'gone', expected: '0'.repeat(64) }).expect(400);
  await e({ ref: 'app/org.x.A/x86_64/stable', reason: '', expected: '0'.repeat(64) }).expect(400);
  await e({ ref: 'app/org.x.A/x86_64/stable', reason: 'x', rebase: 'not an id', expected: '0'.repeat(64) }).expect(400);
  await e({ ref: 'app/org.x.A/x86_64/stable', reason: 'x', expected: 'nope' }).expect(400);
  await request(app).post('/api/repos/fp/end-of-life').send({ ref: 'app/org.x.A/x86_64/stable', reason: 'x', expected: '0'.repeat(64) }).expect(401);
  assert.deepEqual([...(await (await data.registry.open('fp'))!.listRefs()).keys()], []);
});
