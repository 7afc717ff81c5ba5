import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import request from 'supertest';
import type { Repo } from '../../storage/repo/repo';
import type { CairnApp } from '../../server/app';
import { moveRefs, publishingSetup, uploadUnboundCommit, type TestData } from './helpers';

/**
 * Security review: deleting ref `a/b` left the empty folder refs/heads/a/
 * behind, so creating ref `a` afterwards (in the same request, deletions
 * first, or in a later one) failed with 500. The filesystem driver's remove
 * now prunes the folders it empties (never refs/heads itself).
 */
let data: TestData;
let app: CairnApp;
let main: Repo;
let token: string;
let C: string; // a commit of S1's tree without a ref binding, publishable under any ref

before(async () => {
  const setup = await publishingSetup();
  ({ data, app, main } = setup);
  token = await setup.token({ sub: 'builder', scope: ['push'] });
  C = await uploadUnboundCommit(app, token);
});

after(() => data.cleanup());

const heads = (rel = '') => path.join(main.backend.location, 'refs', 'heads', rel);

async function refs(): Promise<Record<string, string>> {
  return Object.fromEntries(await main.listRefs());
}

test('one request deleting a/b and creating a succeeds; refs/heads/a is then the ref', async () => {
  await moveRefs(app, token, [{ ref: 'a/b', commit: C, expected: null }]).expect(200);
  const r = await moveRefs(app, token, [
    { ref: 'a/b', commit: null, expected: C },
    { ref: 'a', commit: C, expected: null },
  ]);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(await refs(), { a: C });
  assert.ok(statSync(heads('a')).isFile());
  assert.ok(statSync(heads()).isDirectory(), 'refs/heads stays');
  // and back: a goes, a/b comes
  await moveRefs(app, token, [
    { ref: 'a', commit: null, expected: C },
    { ref: 'a/b', commit: C, expected: null },
  ]).expect(200);
  assert.deepEqual(await refs(), { 'a/b': C });
  await moveRefs(app, token, [{ ref: 'a/b', commit: null, expected: C }]).expect(200);
});

test('deleting a deep ref, then creating its top folder as a ref in a later request', async () => {
  await moveRefs(app, token, [{ ref: 'x/y/z', commit: C, expected: null }]).expect(200);
  await moveRefs(app, token, [{ ref: 'x/y/z', commit: null, expected: C }]).expect(200);
  assert.equal(existsSync(heads('x')), false, 'refs/heads/x is gone with its last ref');
  assert.ok(statSync(heads()).isDirectory(), 'refs/heads stays, empty');
  const r = await moveRefs(app, token, [{ ref: 'x', commit: C, expected: null }]);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const r2 = await moveRefs(app, token, [
    { ref: 'x', commit: null, expected: C },
    { ref: 'x/y', commit: C, expected: null },
  ]);
  assert.equal(r2.status, 200, JSON.stringify(r2.body));
  assert.deepEqual(await refs(), { 'x/y': C });
  // the summary lists exactly the refs
  const summary = await request(app).get('/repo/main/summary').expect(200);
  assert.ok(summary.body.length > 0);
});

test('a folder that still holds another ref stays: creating its name as a ref is a 409, not a 500', async () => {
  await moveRefs(app, token, [
    { ref: 'p/q', commit: C, expected: null },
    { ref: 'p/r', commit: C, expected: null },
  ]).expect(200);
  const r = await moveRefs(app, token, [
    { ref: 'p/q', commit: null, expected: C },
    { ref: 'p', commit: C, expected: null },
  ]);
  assert.equal(r.status, 409, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'CONFLICT');
  assert.equal((await refs())['p/q'], C, 'nothing was written');
  assert.ok(statSync(heads('p')).isDirectory());
});
