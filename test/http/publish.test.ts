import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import request from 'supertest';
import { SignJWT } from 'jose';
import { FsBackend } from '../../storage/backends/fs';
import { parse, serialize, type VarDict } from '../../storage/gvariant';
import { sha256Hex } from '../../storage/objects/checksum';
import { encodeArchiveHeader } from '../../storage/objects/content';
import { ObjectType, ARCHIVE_EXTENSION, OBJECT_GVARIANT_TYPE } from '../../storage/objects/types';
import { walkCommitTree, objectName, type ObjectRef } from '../../storage/repo/closure';
import { Repo } from '../../storage/repo/repo';
import { issueToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { CairnApp } from '../../server/app';
import type { ServerContext } from '../../server/context';
import { FIXTURE_REPO, S1, S2 } from '../helpers/fixtures';
import { binary, makeApp, makeDataDir, type TestData } from './helpers';

/**
 * The publishing API over HTTP, without `cairn push` in between: every refusal
 * must name what is wrong and leave nothing behind (no object, no temp file, no ref move).
 */
let data: TestData;
let app: CairnApp;
let ctx: ServerContext;
let main: Repo;
let pushToken: string;
let adminToken: string;
const fixture = new Repo('fixture', new FsBackend(FIXTURE_REPO));

before(async () => {
  data = makeDataDir();
  main = await data.registry.create('main');
  // No background delta jobs here: their writes (temp files in tmp/) would race
  // with the checks that a refused upload leaves nothing behind. test/jobs covers them.
  ctx = await createServerContext(data.dataDir, data.registry, { deltas: false });
  app = makeApp(data, { context: ctx });
  pushToken = (await issueToken(ctx.auth.secret, { sub: 'builder', scope: ['push'], repos: ['main'], prefixes: ['sample/'], ttlSeconds: 600 })).token;
  adminToken = (await issueToken(ctx.auth.secret, { sub: 'root', scope: ['admin'], repos: ['*'], ttlSeconds: 600 })).token;
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

function moveRefs(updates: unknown[], token = pushToken) {
  return request(app).post('/api/repos/main/refs').set('Authorization', `Bearer ${token}`).send({ updates });
}

/** Nothing of a refused upload may remain: not the object, not a temp file. */
function assertNoTrace(checksum: string, ext: string): void {
  assert.equal(existsSync(path.join(main.backend.location, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.${ext}`)), false, `${checksum}.${ext} was stored`);
  const tmp = path.join(main.backend.location, 'tmp');
  const leftovers = existsSync(tmp) ? readdirSync(tmp).filter((f) => f.startsWith('cairn-')) : [];
  assert.deepEqual(leftovers, [], 'temporary files left behind');
}

async function refsNow(): Promise<Record<string, string>> {
  return Object.fromEntries(await main.listRefs());
}

test('missing query, multipart upload, idempotent re-upload, then an atomic signed publish', async () => {
  const walk = await walkCommitTree(fixture, S1);
  const names = walk.objects.map(objectName);
  const q = await request(app).post('/api/repos/main/objects/missing').set('Authorization', `Bearer ${pushToken}`).send({ objects: names }).expect(200);
  assert.deepEqual([...q.body.missing].sort(), [...names].sort());

  const up = await upload(walk.objects.map((o) => [objectName(o), bytesOf(o)])).expect(200);
  assert.equal(up.body.stored.length, names.length);
  const again = await upload(walk.objects.map((o) => [objectName(o), bytesOf(o)])).expect(200);
  assert.deepEqual(again.body.stored, []);
  assert.equal(again.body.present.length, names.length);
  const q2 = await request(app).post('/api/repos/main/objects/missing').set('Authorization', `Bearer ${pushToken}`).send({ objects: names }).expect(200);
  assert.deepEqual(q2.body.missing, []);

  const moved = await moveRefs([{ ref: 'sample/main', commit: S1, expected: null }]).expect(200);
  assert.equal(moved.body.changes[0].new, S1);
  assert.equal(moved.body.changes[0].actor, 'builder');
  assert.deepEqual(await refsNow(), { 'sample/main': S1 });

  // Summary, its signature and the commit's signatures all exist and agree.
  const summary = (await request(app).get('/repo/main/summary').buffer(true).parse(binary).expect(200)).body as Buffer;
  const [refs] = parse(OBJECT_GVARIANT_TYPE.summary, summary) as [Array<[string, [bigint, Buffer]]>];
  assert.deepEqual(refs.map(([n, [, c]]) => [n, c.toString('hex')]), [['sample/main', S1]]);
  const sig = parse('a{sv}', (await request(app).get('/repo/main/summary.sig').buffer(true).parse(binary).expect(200)).body) as VarDict;
  assert.deepEqual(sig.map(([k]) => k).sort(), ['ostree.gpgsigs', 'ostree.sign.ed25519']);
  const cm = parse('a{sv}', (await request(app).get(`/repo/main/objects/${S1.slice(0, 2)}/${S1.slice(2)}.commitmeta`).buffer(true).parse(binary).expect(200)).body) as VarDict;
  assert.deepEqual(cm.map(([k]) => k).sort(), ['ostree.gpgsigs', 'ostree.sign.ed25519']);

  const log = await request(app).get('/api/repos/main/reflog').expect(200);
  assert.equal(log.body.entries[0].ref, 'sample/main');
  assert.equal(log.body.entries[0].new, S1);
});

test('single-object PUT stores, and answers 200 when the object is already there', async () => {
  const walk = await walkCommitTree(fixture, S2);
  const file = walk.objects.find((o) => o.type === ObjectType.File && !existsSync(path.join(main.backend.location, 'objects', o.checksum.slice(0, 2), `${o.checksum.slice(2)}.filez`)))!;
  await request(app).put(`/api/repos/main/objects/${objectName(file)}`).set('Authorization', `Bearer ${pushToken}`).set('Content-Type', 'application/octet-stream').send(bytesOf(file)).expect(201);
  await request(app).put(`/api/repos/main/objects/${objectName(file)}`).set('Authorization', `Bearer ${pushToken}`).set('Content-Type', 'application/octet-stream').send(bytesOf(file)).expect(200);
});

test('refusals name the object and keep nothing', async () => {
  const tool = '719cddf0cfba314df96009e41554f0ba4649052b0bbc192fc20c229b3be53ede'; // S2 bin/tool, not uploaded yet
  const toolBytes = bytesOf({ checksum: tool, type: ObjectType.File });

  // A corrupted .filez (a flipped byte in the deflate body).
  const corrupt = Buffer.from(toolBytes);
  corrupt[corrupt.length - 100] ^= 0x20;
  let r = await upload([[`${tool}.filez`, corrupt]]).expect(400);
  assert.equal(r.body.error.details.object, `${tool}.filez`);
  assertNoTrace(tool, 'filez');

  // A valid object with junk behind its deflate stream.
  r = await upload([[`${tool}.filez`, Buffer.concat([toolBytes, Buffer.from('\0\0XX')])]]).expect(400);
  assert.match(r.body.error.message, /trailing data/);
  assertNoTrace(tool, 'filez');

  // The same bytes under a name they do not hash to.
  const other = 'ab'.repeat(32);
  r = await upload([[`${other}.filez`, toolBytes]]).expect(400);
  assert.equal(r.body.error.code, 'CHECKSUM_MISMATCH');
  assertNoTrace(other, 'filez');

  // A .filez whose header lies about the size (smaller, then larger than the body).
  const body = toolBytes.subarray(toolBytes.readUInt32BE(0) + 8);
  const header = { uid: 0, gid: 0, mode: 0o100755, symlinkTarget: '', xattrs: [] };
  for (const lie of [100, 4096 + 1]) {
    r = await upload([[`${tool}.filez`, Buffer.concat([encodeArchiveHeader(header, lie), body])]]).expect(400);
    assert.equal(r.body.error.code, 'INVALID_OBJECT');
    assertNoTrace(tool, 'filez');
  }

  // Metadata whose bytes do not match its name.
  const s2commit = bytesOf({ checksum: S2, type: ObjectType.Commit });
  r = await upload([[`${S2}.commit`, Buffer.concat([s2commit.subarray(0, -1), Buffer.from([s2commit[s2commit.length - 1]! ^ 1])])]]).expect(400);
  assertNoTrace(S2, 'commit');

  // A non-normal GVariant named by its own hash: a dirmeta with a trailing pad byte.
  const nonNormal = Buffer.concat([serialize(OBJECT_GVARIANT_TYPE.dirmeta, [0, 0, 0xed410000, []]), Buffer.from([0])]);
  const nn = sha256Hex(nonNormal);
  r = await upload([[`${nn}.dirmeta`, nonNormal]]).expect(400);
  assert.equal(r.body.error.code, 'INVALID_GVARIANT');
  assertNoTrace(nn, 'dirmeta');

  // Bad names and types.
  r = await upload([['not-an-object', Buffer.from('x')]]).expect(400);
  r = await upload([[`${tool}.tombstone-commit`, Buffer.from('x')]]).expect(400);
});

test('a commit with an incomplete tree cannot be published (422), and nothing moves', async () => {
  const before = await refsNow();
  await upload([[`${S2}.commit`, bytesOf({ checksum: S2, type: ObjectType.Commit })]]).expect(200);
  const r = await moveRefs([{ ref: 'sample/main', commit: S2, expected: S1 }]).expect(422);
  assert.equal(r.body.error.code, 'MISSING_OBJECTS');
  assert.ok(r.body.error.details.missing.length > 0);
  assert.deepEqual(await refsNow(), before);
});

test('tokens: none, forged, expired, revoked, wrong prefix, wrong repo are all refused', async () => {
  const before = await refsNow();
  const upd = [{ ref: 'sample/main', commit: S1, expected: S1 }];
  await request(app).post('/api/repos/main/refs').send({ updates: upd }).expect(401);
  const forged = (await issueToken(Buffer.from('x'.repeat(48)), { sub: 'evil', scope: ['admin'], repos: ['*'], ttlSeconds: 600 })).token;
  assert.equal((await moveRefs(upd, forged).expect(401)).body.error.code, 'UNAUTHORIZED');
  const expired = await new SignJWT({ scope: 'push', repos: ['main'], prefixes: ['sample/'] })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer('cairn')
    .setSubject('late')
    .setJti('expired-1')
    .setIssuedAt(1000)
    .setExpirationTime(2000)
    .sign(ctx.auth.secret);
  assert.match((await moveRefs(upd, expired).expect(401)).body.error.message, /expired/);
  const none = await new SignJWT({ scope: 'admin', repos: ['*'] }).setProtectedHeader({ alg: 'HS256' }).setSubject('x').setExpirationTime('1h').sign(ctx.auth.secret);
  await moveRefs(upd, none).expect(401); // no issuer, no jti

  const { token: doomed, claims } = await issueToken(ctx.auth.secret, { sub: 'doomed', scope: ['push'], repos: ['main'], prefixes: ['sample/'], ttlSeconds: 600 });
  await request(app).post('/api/repos/main/objects/missing').set('Authorization', `Bearer ${doomed}`).send({ objects: [] }).expect(200);
  await request(app).post('/api/tokens/revoke').set('Authorization', `Bearer ${pushToken}`).send({ jti: claims.jti }).expect(403);
  await request(app).post('/api/tokens/revoke').set('Authorization', `Bearer ${adminToken}`).send({ jti: claims.jti }).expect(200);
  assert.match((await moveRefs(upd, doomed).expect(401)).body.error.message, /revoked/);

  const wrongPrefix = (await issueToken(ctx.auth.secret, { sub: 'b', scope: ['push'], repos: ['main'], prefixes: ['os/'], ttlSeconds: 600 })).token;
  assert.equal((await moveRefs([{ ref: 'sample/main', commit: S1 }], wrongPrefix).expect(403)).body.error.code, 'FORBIDDEN');
  const wrongRepo = (await issueToken(ctx.auth.secret, { sub: 'b', scope: ['push'], repos: ['other'], ttlSeconds: 600 })).token;
  await upload([[`${S1}.commit`, bytesOf({ checksum: S1, type: ObjectType.Commit })]], wrongRepo).expect(403);
  const reader = (await issueToken(ctx.auth.secret, { sub: 'r', scope: ['read'], repos: ['main'], ttlSeconds: 600 })).token;
  await upload([[`${S1}.commit`, bytesOf({ checksum: S1, type: ObjectType.Commit })]], reader).expect(403);
  assert.deepEqual(await refsNow(), before);
});

test('a commit bound to another ref is refused under this one (the client would reject it)', async () => {
  const anyPrefix = (await issueToken(ctx.auth.secret, { sub: 'b', scope: ['push'], repos: ['main'], ttlSeconds: 600 })).token;
  const r = await moveRefs([{ ref: 'stable', commit: S1 }], anyPrefix).expect(400);
  assert.match(r.body.error.message, /bound to sample\/main/);
  assert.equal((await refsNow()).stable, undefined);
});

test('concurrent publishers with the same expectation: exactly one wins, the summary matches the refs', async () => {
  // Complete S2's tree so both S1 and S2 are publishable.
  const walk = await walkCommitTree(fixture, S2);
  await upload(walk.objects.map((o) => [objectName(o), bytesOf(o)])).expect(200);
  const current = (await refsNow())['sample/main'];
  const attempts = Array.from({ length: 8 }, (_, i) => moveRefs([{ ref: 'sample/main', commit: i % 2 ? S1 : S2, expected: current }]));
  const results = await Promise.all(attempts.map((a) => a.then((r) => r.status)));
  const winners = results.filter((s) => s === 200).length;
  const losers = results.filter((s) => s === 409).length;
  // A winner moving the ref to the value it already holds is still the one winner.
  assert.equal(winners, 1, `statuses: ${results}`);
  assert.equal(losers, 7);
  const refs = await refsNow();
  const summary = readFileSync(path.join(main.backend.location, 'summary'));
  const [entries] = parse(OBJECT_GVARIANT_TYPE.summary, summary) as [Array<[string, [bigint, Buffer]]>];
  assert.deepEqual(Object.fromEntries(entries.map(([n, [, c]]) => [n, c.toString('hex')])), refs);

  const conflict = await moveRefs([{ ref: 'sample/main', commit: S2, expected: '00'.repeat(32) }]).expect(409);
  assert.deepEqual(conflict.body.error.details.conflicts, [{ ref: 'sample/main', expected: '00'.repeat(32), actual: refs['sample/main'] }]);
});
