// The operator writes over HTTP (server/api/operator.ts) keep compare-and-swap: two racing
// rollbacks with the same `expected` — one 200, one 409 CONFLICT; a rollback answer says hosts
// need --allow-downgrade, and a stock client at the newer commit refuses the rolled-back ref with
// the timestamp check hosts make (`ostree pull --timestamp-check`: libostree's own check that
// `ostree admin upgrade` applies unless given --allow-downgrade) and takes it without; promote
// and delete with their checks; who may do it (push within the ref prefixes, owned
// repositories). And a private repository: every new read route answers without the right token
// exactly as the existing routes do: the 404 of a repository that does not exist.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import request from 'supertest';
import { readRefLogPage } from '../../storage/repo/reflog';
import { addRemote, initRepo, ostree, ostreeResult, removeTempDirs } from '../helpers/ostree';
import { listenApp } from '../http/helpers';
import { makeApiBed, responseSchema, responseValidator, type ApiBed } from './setup';

let bed: ApiBed;
let push: string;
const post = (what: string, token: string | null, body: unknown) => {
  const r = request(bed.app).post(`/api/repos/main/${what}`);
  if (token) r.set('Authorization', `Bearer ${token}`);
  return r.send(body as object);
};
const refOf = async (ref: string) => (await ostreeResult(['rev-parse', ref], { repo: bed.mainDir })).stdout.trim();

before(async () => {
  bed = await makeApiBed();
  push = await bed.token('push', { prefixes: ['os/'], sub: 'operator-1' });
});

after(async () => {
  await bed?.dispose();
  await removeTempDirs();
});

test('two racing rollbacks through HTTP with the same expected commit: one 200, one 409 CONFLICT', async () => {
  const [v1, v2, v3] = bed.line;
  assert.equal(await refOf('os/main'), v3);
  const results = await Promise.all([
    post('rollback', push, { ref: 'os/main', commit: v1, expected: v3 }),
    post('rollback', push, { ref: 'os/main', commit: v2, expected: v3 }),
  ]);
  assert.deepEqual(results.map((r) => r.status).sort(), [200, 409]);
  const won = results.find((r) => r.status === 200)!.body;
  const lost = results.find((r) => r.status === 409)!.body;
  assert.equal(lost.error.code, 'CONFLICT');
  const validate = await responseValidator(bed.app);
  assert.equal(validate(await responseSchema(bed.app, 'post', '/api/repos/{repo}/rollback'), won), null);
  assert.equal(won.ref, 'os/main');
  assert.equal(won.old, v3);
  assert.equal(won.downgrade, true);
  assert.match(won.note, /--allow-downgrade/);
  assert.equal(won.stepsBack, won.new === v1 ? 2 : 1);
  assert.equal(await refOf('os/main'), won.new, 'ostree reads the ref the winner set');
  assert.match(await ostree(['summary', '--view'], { repo: bed.mainDir }), new RegExp(`os/main[\\s\\S]*${won.new}`), 'the summary moved with it');
  const log = await readRefLogPage(bed.main, { ref: 'os/main', limit: 1 });
  assert.deepEqual([log.entries[0]!.old, log.entries[0]!.new, log.entries[0]!.actor], [v3, won.new, 'operator-1']);
  // Back to v3 for the next tests (a forward move is a plain ref update).
  await request(bed.app).post('/api/repos/main/refs').set('Authorization', `Bearer ${push}`).send({ updates: [{ ref: 'os/main', commit: v3, expected: won.new }] }).expect(200);
});

test('a rollback goes only to an earlier commit of the ref, from the value the operator saw', async () => {
  const [v1, v2, v3] = bed.line;
  assert.equal((await post('rollback', push, { ref: 'os/main', commit: bed.foreign, expected: v3 })).status, 400, 'another line of history is a promote');
  assert.equal((await post('rollback', push, { ref: 'os/main', commit: v3, expected: v3 })).status, 400);
  assert.equal((await post('rollback', push, { ref: 'os/main', commit: v1, expected: v2 })).status, 409, 'a stale expectation');
  assert.equal((await post('rollback', push, { ref: 'os/main', commit: v1 })).status, 400, 'expected is required');
  assert.equal((await post('rollback', push, { ref: 'os/main', commit: v1, expected: v3, force: true })).status, 400, 'no way around the swap');
  assert.equal(await refOf('os/main'), v3);
});

test('a stock client at the newer commit takes the rolled-back ref only without the downgrade check', async () => {
  const [, v2, v3] = bed.line;
  const server = await listenApp(bed.app);
  try {
    const client = await initRepo(path.join(bed.work, 'client'), 'archive');
    await addRemote(client, 'cairn', `http://127.0.0.1:${server.port}/repo/main`);
    await ostree(['pull', 'cairn', 'os/main'], { repo: client });
    assert.equal((await ostree(['rev-parse', 'cairn:os/main'], { repo: client })).trim(), v3);

    const rb = await post('rollback', push, { ref: 'os/main', commit: v2, expected: v3 }).expect(200);
    assert.match(rb.body.note, /--allow-downgrade/);
    // What `ostree admin upgrade` does unless told --allow-downgrade: refuse a chronologically older commit.
    const refused = await ostreeResult(['pull', '--timestamp-check', 'cairn', 'os/main'], { repo: client });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /chronologically older/);
    assert.equal((await ostree(['rev-parse', 'cairn:os/main'], { repo: client })).trim(), v3, 'the client stayed on the newer commit');
    await ostree(['pull', 'cairn', 'os/main'], { repo: client });
    assert.equal((await ostree(['rev-parse', 'cairn:os/main'], { repo: client })).trim(), v2);
    await request(bed.app).post('/api/repos/main/refs').set('Authorization', `Bearer ${push}`).send({ updates: [{ ref: 'os/main', commit: v3, expected: v2 }] }).expect(200);
  } finally {
    await server.close();
  }
});

test('promote: a commit of one ref to another, with compare-and-swap; fromRef or the head of another ref', async () => {
  const [v1, v2, v3] = bed.line;
  const p = await post('promote', push, { commit: v2, to: 'os/stable', expected: null, fromRef: 'os/main' });
  assert.equal(p.status, 200, JSON.stringify(p.body));
  assert.deepEqual([p.body.ref, p.body.old, p.body.new, p.body.fromRef], ['os/stable', null, v2, 'os/main']);
  assert.equal(await refOf('os/stable'), v2);
  assert.equal((await post('promote', push, { commit: v3, to: 'os/stable', expected: null, fromRef: 'os/main' })).status, 409);
  assert.equal((await post('promote', push, { commit: bed.foreign, to: 'os/stable', expected: v2, fromRef: 'os/main' })).status, 400);
  assert.equal((await post('promote', push, { commit: v1, to: 'os/stable', expected: v2 })).status, 400, 'v1 is no ref head: fromRef is needed');
  const head = await post('promote', push, { commit: v3, to: 'os/stable', expected: v2 }).expect(200);
  assert.equal(head.body.fromRef, 'os/main');
  assert.equal(await refOf('os/stable'), v3);
  assert.equal((await post('promote', push, { commit: v3, to: 'os/stable', expected: v3, fromRef: 'os/none' })).status, 404);
  const bound = await post('promote', push, { commit: bed.foreign, to: 'os/elsewhere', expected: null, fromRef: 'os/other' });
  assert.equal(bound.status, 400, 'a commit bound to its ref cannot be promoted to another (clients would refuse it)');
  assert.deepEqual(bound.body.error.details.bindings, ['os/other']);
});

test('delete-ref needs the current value', async () => {
  const [, , v3] = bed.line;
  assert.equal((await post('delete-ref', push, { ref: 'os/stable', expected: bed.line[0] })).status, 409);
  assert.equal(await refOf('os/stable'), v3);
  const d = await post('delete-ref', push, { ref: 'os/stable', expected: v3 }).expect(200);
  assert.deepEqual([d.body.ref, d.body.old, d.body.new], ['os/stable', v3, null]);
  assert.doesNotMatch(await ostree(['refs'], { repo: bed.mainDir }), /os\/stable/);
  assert.equal((await post('delete-ref', push, { ref: 'os/stable', expected: v3 })).status, 409);
});

test('who may: push within the ref prefixes, in repositories Cairn owns; bodies are checked', async () => {
  const [, v2, v3] = bed.line;
  const body = { ref: 'os/main', commit: v2, expected: v3 };
  assert.equal((await post('rollback', null, body)).status, 401);
  assert.equal((await post('rollback', await bed.token('read'), body)).status, 403);
  const apps = await bed.token('push', { prefixes: ['apps/'] });
  assert.equal((await post('rollback', apps, body)).status, 403, 'os/main is outside the token prefixes');
  assert.equal((await post('promote', push, { commit: v3, to: 'apps/x', expected: null })).status, 403, 'the promoted-to ref must be within them');
  assert.equal((await post('delete-ref', apps, { ref: 'os/main', expected: v3 })).status, 403);
  const other = await bed.token('push', { repos: ['sample'] });
  const sample = await request(bed.app).post('/api/repos/sample/delete-ref').set('Authorization', `Bearer ${other}`).send({ ref: 'sample/main', expected: v3 });
  assert.equal(sample.status, 403);
  assert.equal(sample.body.error.code, 'NOT_OWNED');
  assert.equal((await post('rollback', push, { ...body, extra: 1 })).status, 400);
  assert.equal((await post('rollback', push, { ...body, commit: 'v2' })).status, 400);
  assert.equal((await post('rollback', push, { ...body, ref: 'os/../x' })).status, 400);
  assert.equal(await refOf('os/main'), v3, 'nothing moved');
});

test('a private repository: every new read route answers exactly as the existing ones without the right token', async () => {
  await bed.ctx.settings.update('main', { private: true });
  try {
    const c = bed.line[1];
    const routes = [
      '/stats',
      '/branches',
      '/history?ref=os/main',
      `/commits/${c}`,
      `/commits/${c}/tree?path=/`,
      `/commits/${c}/file?path=/README`,
      `/diff?from=${bed.line[0]}&to=${c}`,
      '/traffic?ref=os/main',
    ];
    const read = await bed.token('read');
    const elsewhere = await bed.token('read', { repos: ['sample'] });
    const get = (p: string, token?: string) => {
      const r = request(bed.app).get(`/api/repos/main${p}`);
      if (token) r.set('Authorization', `Bearer ${token}`);
      return r;
    };
    // Without a token that may read it, a private repository is one that does not exist.
    const existing = await get('/refs');
    assert.equal(existing.status, 404);
    assert.deepEqual(existing.body, { error: { code: 'NOT_FOUND', message: "no repository named main (or it is private and the request's credentials may not read it)" } });
    assert.deepEqual((await get('/refs', elsewhere)).body, existing.body);
    for (const p of routes) {
      for (const [who, token] of [['without a token', undefined], ['with a bad token', 'garbage'], ["with another repository's token", elsewhere]] as const) {
        const r = await get(p, token);
        assert.equal(r.status, 404, `GET ${p} ${who}`);
        assert.equal(r.headers['www-authenticate'], undefined, `GET ${p} ${who}: WWW-Authenticate`);
        assert.deepEqual(r.body, existing.body, `GET ${p} ${who}`);
      }
      const ok = await get(p, read);
      assert.equal(ok.status, 200, `GET ${p} with a read token: ${JSON.stringify(ok.body)}`);
      const cc = ok.headers['cache-control']!;
      assert.doesNotMatch(cc, /public/, `GET ${p}: never public`);
      if (/tree|file|diff/.test(p)) assert.equal(cc, 'private, no-cache', `GET ${p}: revalidated, so the token is checked every time`);
      const missing = await request(bed.app).get(`/api/repos/nothere${p}`);
      assert.equal(missing.status, 404, `GET /api/repos/nothere${p}`);
    }
  } finally {
    await bed.ctx.settings.update('main', { private: false });
  }
});
