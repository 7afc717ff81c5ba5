import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import request from 'supertest';
import { SignJWT } from 'jose';
import { parse, serialize, type VarDict } from '../../storage/gvariant';
import { sha256Hex } from '../../storage/objects/checksum';
import { encodeArchiveHeader } from '../../storage/objects/content';
import { ObjectType, OBJECT_GVARIANT_TYPE } from '../../storage/objects/types';
import { walkCommitTree, objectName } from '../../storage/repo/closure';
import type { Repo } from '../../storage/repo/repo';
import { issueToken } from '../../server/auth/tokens';
import type { CairnApp } from '../../server/app';
import type { ServerContext } from '../../server/context';
import { S1, S2 } from '../helpers/fixtures';
import { assertNoTrace, binary, fixtureBytes, fixtureRepo, fixtureTree, moveRefs, objectFile, publishingSetup, upload, type PublishingSetup, type TestData } from './helpers';

/**
 * The publishing API over HTTP, without `cairn push` in between: every refusal
 * must name what is wrong and leave nothing behind (no object, no temp file, no ref move).
 */
let data: TestData;
let app: CairnApp;
let ctx: ServerContext;
let main: Repo;
let token: PublishingSetup['token'];
let pushToken: string;
let adminToken: string;

before(async () => {
  // No background delta jobs here: their writes (temp files in tmp/) would race
  // with the checks that a refused upload leaves nothing behind. test/jobs covers them.
  ({ data, ctx, app, main, token } = await publishingSetup());
  pushToken = await token({ sub: 'builder', scope: ['push'], prefixes: ['sample/'] });
  adminToken = await token({ sub: 'root', scope: ['admin'], repos: ['*'] });
});

after(() => data.cleanup());

async function refsNow(): Promise<Record<string, string>> {
  return Object.fromEntries(await main.listRefs());
}

test('missing query, multipart upload, idempotent re-upload, then an atomic signed publish', async () => {
  const parts = await fixtureTree(S1);
  const names = parts.map(([name]) => name);
  const q = await request(app).post('/api/repos/main/objects/missing').set('Authorization', `Bearer ${pushToken}`).send({ objects: names }).expect(200);
  assert.deepEqual([...q.body.missing].sort(), [...names].sort());

  const up = await upload(app, pushToken, parts).expect(200);
  assert.equal(up.body.stored.length, names.length);
  const again = await upload(app, pushToken, parts).expect(200);
  assert.deepEqual(again.body.stored, []);
  assert.equal(again.body.present.length, names.length);
  const q2 = await request(app).post('/api/repos/main/objects/missing').set('Authorization', `Bearer ${pushToken}`).send({ objects: names }).expect(200);
  assert.deepEqual(q2.body.missing, []);

  const moved = await moveRefs(app, pushToken, [{ ref: 'sample/main', commit: S1, expected: null }]).expect(200);
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
  const walk = await walkCommitTree(fixtureRepo, S2);
  const file = walk.objects.find((o) => o.type === ObjectType.File && !existsSync(objectFile(main, o.checksum, 'filez')))!;
  await request(app).put(`/api/repos/main/objects/${objectName(file)}`).set('Authorization', `Bearer ${pushToken}`).set('Content-Type', 'application/octet-stream').send(fixtureBytes(file)).expect(201);
  await request(app).put(`/api/repos/main/objects/${objectName(file)}`).set('Authorization', `Bearer ${pushToken}`).set('Content-Type', 'application/octet-stream').send(fixtureBytes(file)).expect(200);
});

test('refusals name the object and keep nothing', async () => {
  const tool = '719cddf0cfba314df96009e41554f0ba4649052b0bbc192fc20c229b3be53ede'; // S2 bin/tool, not uploaded yet
  const toolBytes = fixtureBytes({ checksum: tool, type: ObjectType.File });

  // A corrupted .filez (a flipped byte in the deflate body).
  const corrupt = Buffer.from(toolBytes);
  corrupt[corrupt.length - 100] ^= 0x20;
  let r = await upload(app, pushToken, [[`${tool}.filez`, corrupt]]).expect(400);
  assert.equal(r.body.error.details.object, `${tool}.filez`);
  assertNoTrace(main, tool, 'filez');

  // A valid object with junk behind its deflate stream.
  r = await upload(app, pushToken, [[`${tool}.filez`, Buffer.concat([toolBytes, Buffer.from('\0\0XX')])]]).expect(400);
  assert.match(r.body.error.message, /trailing data/);
  assertNoTrace(main, tool, 'filez');

  // The same bytes under a name they do not hash to.
  const other = 'ab'.repeat(32);
  r = await upload(app, pushToken, [[`${other}.filez`, toolBytes]]).expect(400);
  assert.equal(r.body.error.code, 'CHECKSUM_MISMATCH');
  assertNoTrace(main, other, 'filez');

  // A .filez whose header lies about the size (smaller, then larger than the body).
  const body = toolBytes.subarray(toolBytes.readUInt32BE(0) + 8);
  const header = { uid: 0, gid: 0, mode: 0o100755, symlinkTarget: '', xattrs: [] };
  for (const lie of [100, 4096 + 1]) {
    r = await upload(app, pushToken, [[`${tool}.filez`, Buffer.concat([encodeArchiveHeader(header, lie), body])]]).expect(400);
    assert.equal(r.body.error.code, 'INVALID_OBJECT');
    assertNoTrace(main, tool, 'filez');
  }

  // Metadata whose bytes do not match its name.
  const s2commit = fixtureBytes({ checksum: S2, type: ObjectType.Commit });
  r = await upload(app, pushToken, [[`${S2}.commit`, Buffer.concat([s2commit.subarray(0, -1), Buffer.from([s2commit[s2commit.length - 1]! ^ 1])])]]).expect(400);
  assertNoTrace(main, S2, 'commit');

  // A non-normal GVariant named by its own hash: a dirmeta with a trailing pad byte.
  const nonNormal = Buffer.concat([serialize(OBJECT_GVARIANT_TYPE.dirmeta, [0, 0, 0xed410000, []]), Buffer.from([0])]);
  const nn = sha256Hex(nonNormal);
  r = await upload(app, pushToken, [[`${nn}.dirmeta`, nonNormal]]).expect(400);
  assert.equal(r.body.error.code, 'INVALID_GVARIANT');
  assertNoTrace(main, nn, 'dirmeta');

  // Bad names and types.
  r = await upload(app, pushToken, [['not-an-object', Buffer.from('x')]]).expect(400);
  r = await upload(app, pushToken, [[`${tool}.tombstone-commit`, Buffer.from('x')]]).expect(400);
});

test('a commit with an incomplete tree cannot be published (422), and nothing moves', async () => {
  const before = await refsNow();
  await upload(app, pushToken, [[`${S2}.commit`, fixtureBytes({ checksum: S2, type: ObjectType.Commit })]]).expect(200);
  const r = await moveRefs(app, pushToken, [{ ref: 'sample/main', commit: S2, expected: S1 }]).expect(422);
  assert.equal(r.body.error.code, 'MISSING_OBJECTS');
  assert.ok(r.body.error.details.missing.length > 0);
  assert.deepEqual(await refsNow(), before);
});

test('tokens: none, forged, expired, revoked, wrong prefix, wrong repo are all refused', async () => {
  const before = await refsNow();
  const upd = [{ ref: 'sample/main', commit: S1, expected: S1 }];
  await request(app).post('/api/repos/main/refs').send({ updates: upd }).expect(401);
  const forged = (await issueToken(Buffer.from('x'.repeat(48)), { sub: 'evil', scope: ['admin'], repos: ['*'], ttlSeconds: 600 })).token;
  assert.equal((await moveRefs(app, forged, upd).expect(401)).body.error.code, 'UNAUTHORIZED');
  const expired = await new SignJWT({ scope: 'push', repos: ['main'], prefixes: ['sample/'] })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer('cairn')
    .setSubject('late')
    .setJti('expired-1')
    .setIssuedAt(1000)
    .setExpirationTime(2000)
    .sign(ctx.auth.secret);
  assert.match((await moveRefs(app, expired, upd).expect(401)).body.error.message, /expired/);
  const none = await new SignJWT({ scope: 'admin', repos: ['*'] }).setProtectedHeader({ alg: 'HS256' }).setSubject('x').setExpirationTime('1h').sign(ctx.auth.secret);
  await moveRefs(app, none, upd).expect(401); // no issuer, no jti

  const { token: doomed, claims } = await issueToken(ctx.auth.secret, { sub: 'doomed', scope: ['push'], repos: ['main'], prefixes: ['sample/'], ttlSeconds: 600 });
  await request(app).post('/api/repos/main/objects/missing').set('Authorization', `Bearer ${doomed}`).send({ objects: [] }).expect(200);
  await request(app).post('/api/tokens/revoke').set('Authorization', `Bearer ${pushToken}`).send({ jti: claims.jti }).expect(403);
  await request(app).post('/api/tokens/revoke').set('Authorization', `Bearer ${adminToken}`).send({ jti: claims.jti }).expect(200);
  assert.match((await moveRefs(app, doomed, upd).expect(401)).body.error.message, /revoked/);

  const wrongPrefix = await token({ sub: 'b', scope: ['push'], prefixes: ['os/'] });
  assert.equal((await moveRefs(app, wrongPrefix, [{ ref: 'sample/main', commit: S1 }]).expect(403)).body.error.code, 'FORBIDDEN');
  const wrongRepo = await token({ sub: 'b', scope: ['push'], repos: ['other'] });
  await upload(app, wrongRepo, [[`${S1}.commit`, fixtureBytes({ checksum: S1, type: ObjectType.Commit })]]).expect(403);
  const reader = await token({ sub: 'r', scope: ['read'] });
  await upload(app, reader, [[`${S1}.commit`, fixtureBytes({ checksum: S1, type: ObjectType.Commit })]]).expect(403);
  assert.deepEqual(await refsNow(), before);
});

test('a commit bound to another ref is refused under this one (the client would reject it)', async () => {
  const anyPrefix = await token({ sub: 'b', scope: ['push'] });
  const r = await moveRefs(app, anyPrefix, [{ ref: 'stable', commit: S1 }]).expect(400);
  assert.match(r.body.error.message, /bound to sample\/main/);
  assert.equal((await refsNow()).stable, undefined);
});

test('concurrent publishers with the same expectation: exactly one wins, the summary matches the refs', async () => {
  // Complete S2's tree so both S1 and S2 are publishable.
  await upload(app, pushToken, await fixtureTree(S2)).expect(200);
  const current = (await refsNow())['sample/main'];
  const attempts = Array.from({ length: 8 }, (_, i) => moveRefs(app, pushToken, [{ ref: 'sample/main', commit: i % 2 ? S1 : S2, expected: current }]));
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

  const conflict = await moveRefs(app, pushToken, [{ ref: 'sample/main', commit: S2, expected: '00'.repeat(32) }]).expect(409);
  assert.deepEqual(conflict.body.error.details.conflicts, [{ ref: 'sample/main', expected: '00'.repeat(32), actual: refs['sample/main'] }]);
});
