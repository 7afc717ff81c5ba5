import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import request from 'supertest';
import { Variant, serialize } from '../../storage/gvariant';
import { ARCHIVE_EXTENSION } from '../../storage/objects/types';
import { objectName, walkCommitTree, type ObjectRef } from '../../storage/repo/closure';
import { Repo } from '../../storage/repo/repo';
import { FsBackend } from '../../storage/backends/fs';
import { issueToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { CairnApp } from '../../server/app';
import type { ServerContext } from '../../server/context';
import { FIXTURE_REPO, ROOT_DIRMETA, S1_ROOT_DIRTREE, S2 } from '../helpers/fixtures';
import { sha256Hex } from '../../storage/objects/checksum';
import { makeApp, makeDataDir, type TestData } from './helpers';

/**
 * Security review, finding 2: a .commitmeta is accepted only for a commit in
 * the repository, and only from a token that may move a ref pointing at the
 * commit (or for a commit no ref points at yet). Refusals leave nothing.
 */
let data: TestData;
let app: CairnApp;
let ctx: ServerContext;
let main: Repo;
let pushToken: string;
let otherToken: string;
const fixture = new Repo('fixture', new FsBackend(FIXTURE_REPO));

before(async () => {
  data = makeDataDir();
  main = await data.registry.create('main');
  ctx = await createServerContext(data.dataDir, data.registry, { deltas: false });
  app = makeApp(data, { context: ctx });
  pushToken = (await issueToken(ctx.auth.secret, { sub: 'builder', scope: ['push'], repos: ['main'], prefixes: ['sample/'], ttlSeconds: 600 })).token;
  otherToken = (await issueToken(ctx.auth.secret, { sub: 'intruder', scope: ['push'], repos: ['main'], prefixes: ['other/'], ttlSeconds: 600 })).token;
});

after(() => data.cleanup());

function bytesOf(o: ObjectRef): Buffer {
  return readFileSync(path.join(FIXTURE_REPO, 'objects', o.checksum.slice(0, 2), `${o.checksum.slice(2)}.${ARCHIVE_EXTENSION[o.type]}`));
}

function upload(parts: Array<[string, Buffer]>, token = pushToken) {
  let r = request(app).post('/api/repos/main/objects').set('Authorization', `Bearer ${token}`);
  for (const [name, bytes] of parts) r = r.attach(name, bytes, name);
  return r;
}

function objectFile(checksum: string, ext: string): string {
  return path.join(main.backend.location, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.${ext}`);
}

function assertNoTrace(checksum: string, ext: string): void {
  assert.equal(existsSync(objectFile(checksum, ext)), false, `${checksum}.${ext} was stored`);
  const tmp = path.join(main.backend.location, 'tmp');
  const leftovers = existsSync(tmp) ? readdirSync(tmp).filter((f) => f.startsWith('cairn-')) : [];
  assert.deepEqual(leftovers, [], 'temporary files left behind');
}

const smallMeta = serialize('a{sv}', [['note', new Variant('s', 'hello')]]);

test('finding 2: a commitmeta whose commit is not in the repository is refused', async () => {
  const ghost = 'ab'.repeat(32);
  const r = await upload([[`${ghost}.commitmeta`, smallMeta]]);
  assert.equal(r.status, 422, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'MISSING_OBJECTS');
  assert.deepEqual(r.body.error.details.missing, [`${ghost}.commit`]);
  assertNoTrace(ghost, 'commitmeta');
  // The same by PUT.
  const p = await request(app).put(`/api/repos/main/objects/${ghost}.commitmeta`).set('Authorization', `Bearer ${pushToken}`).set('Content-Type', 'application/octet-stream').send(smallMeta);
  assert.equal(p.status, 422);
  assertNoTrace(ghost, 'commitmeta');
});

test('finding 2: a commitmeta for a published commit needs a token that may move one of its refs', async () => {
  // Publish S2 under sample/main (its whole tree), without a commitmeta of its own.
  const walk = await walkCommitTree(fixture, S2);
  await upload(walk.objects.map((o) => [objectName(o), bytesOf(o)])).expect(200);
  await request(app).post('/api/repos/main/refs').set('Authorization', `Bearer ${pushToken}`).send({ updates: [{ ref: 'sample/main', commit: S2, expected: null }] }).expect(200);
  const before = existsSync(objectFile(S2, 'commitmeta')) ? readFileSync(objectFile(S2, 'commitmeta')) : null;

  const forged = serialize('a{sv}', [['ostree.gpgsigs', new Variant('aay', [Buffer.from('forged')])]]);
  for (const send of [
    () => upload([[`${S2}.commitmeta`, forged]], otherToken),
    () => request(app).put(`/api/repos/main/objects/${S2}.commitmeta`).set('Authorization', `Bearer ${otherToken}`).set('Content-Type', 'application/octet-stream').send(forged),
  ]) {
    const r = await send();
    assert.equal(r.status, 403, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'FORBIDDEN');
    assert.deepEqual(r.body.error.details.refs, ['sample/main']);
    const after = existsSync(objectFile(S2, 'commitmeta')) ? readFileSync(objectFile(S2, 'commitmeta')) : null;
    assert.deepEqual(after, before, 'the commitmeta changed');
  }
});

test('finding 2: a new commit and its commitmeta in the same request are accepted, in that order', async () => {
  // A commit no ref points at (a new push): any push token may attach metadata.
  const fresh = serialize('(a{sv}aya(say)sstayay)', [[], Buffer.alloc(0), [], 'fresh', '', 0n, Buffer.from(S1_ROOT_DIRTREE, 'hex'), Buffer.from(ROOT_DIRMETA, 'hex')]);
  const c = sha256Hex(fresh);
  const r = await upload([
    [`${c}.commit`, fresh],
    [`${c}.commitmeta`, smallMeta],
  ], otherToken);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual([...r.body.stored].sort(), [`${c}.commit`, `${c}.commitmeta`].sort());
});

