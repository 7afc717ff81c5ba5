import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import request from 'supertest';
import { Variant, serialize } from '../../storage/gvariant';
import type { Repo } from '../../storage/repo/repo';
import type { CairnApp } from '../../server/app';
import { S2 } from '../helpers/fixtures';
import { assertNoTrace, fixtureTree, objectFile, publishingSetup, unboundCommit, upload, type TestData } from './helpers';

/**
 * Security review, finding 2: a .commitmeta is accepted only for a commit in
 * the repository, and only from a token that may move a ref pointing at the
 * commit (or for a commit no ref points at yet). Refusals leave nothing.
 */
let data: TestData;
let app: CairnApp;
let main: Repo;
let pushToken: string;
let otherToken: string;

before(async () => {
  const setup = await publishingSetup();
  ({ data, app, main } = setup);
  pushToken = await setup.token({ sub: 'builder', scope: ['push'], prefixes: ['sample/'] });
  otherToken = await setup.token({ sub: 'intruder', scope: ['push'], prefixes: ['other/'] });
});

after(() => data.cleanup());

const smallMeta = serialize('a{sv}', [['note', new Variant('s', 'hello')]]);

test('finding 2: a commitmeta whose commit is not in the repository is refused', async () => {
  const ghost = 'ab'.repeat(32);
  const r = await upload(app, pushToken, [[`${ghost}.commitmeta`, smallMeta]]);
  assert.equal(r.status, 422, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'MISSING_OBJECTS');
  assert.deepEqual(r.body.error.details.missing, [`${ghost}.commit`]);
  assertNoTrace(main, ghost, 'commitmeta');
  // The same by PUT.
  const p = await request(app).put(`/api/repos/main/objects/${ghost}.commitmeta`).set('Authorization', `Bearer ${pushToken}`).set('Content-Type', 'application/octet-stream').send(smallMeta);
  assert.equal(p.status, 422);
  assertNoTrace(main, ghost, 'commitmeta');
});

test('finding 2: a commitmeta for a published commit needs a token that may move one of its refs', async () => {
  // Publish S2 under sample/main (its whole tree), without a commitmeta of its own.
  await upload(app, pushToken, await fixtureTree(S2)).expect(200);
  await request(app).post('/api/repos/main/refs').set('Authorization', `Bearer ${pushToken}`).send({ updates: [{ ref: 'sample/main', commit: S2, expected: null }] }).expect(200);
  const before = existsSync(objectFile(main, S2, 'commitmeta')) ? readFileSync(objectFile(main, S2, 'commitmeta')) : null;

  const forged = serialize('a{sv}', [['ostree.gpgsigs', new Variant('aay', [Buffer.from('forged')])]]);
  for (const send of [
    () => upload(app, otherToken, [[`${S2}.commitmeta`, forged]]),
    () => request(app).put(`/api/repos/main/objects/${S2}.commitmeta`).set('Authorization', `Bearer ${otherToken}`).set('Content-Type', 'application/octet-stream').send(forged),
  ]) {
    const r = await send();
    assert.equal(r.status, 403, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'FORBIDDEN');
    assert.deepEqual(r.body.error.details.refs, ['sample/main']);
    const after = existsSync(objectFile(main, S2, 'commitmeta')) ? readFileSync(objectFile(main, S2, 'commitmeta')) : null;
    assert.deepEqual(after, before, 'the commitmeta changed');
  }
});

test('finding 2: a new commit and its commitmeta in the same request are accepted, in that order', async () => {
  // A commit no ref points at (a new push): any push token may attach metadata.
  const { checksum: c, bytes: fresh } = unboundCommit('fresh');
  const r = await upload(app, otherToken, [
    [`${c}.commit`, fresh],
    [`${c}.commitmeta`, smallMeta],
  ]);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual([...r.body.stored].sort(), [`${c}.commit`, `${c}.commitmeta`].sort());
});

