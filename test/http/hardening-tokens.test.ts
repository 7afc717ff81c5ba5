import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { SignJWT } from 'jose';
import { CairnError } from '../../storage/errors';
import { isValidJti, issueToken, verifyToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { CairnApp } from '../../server/app';
import type { ServerContext } from '../../server/context';
import { makeApp, makeDataDir, type TestData } from './helpers';

/**
 * Security review, finding 4: a token whose `jti` is empty, longer than 128
 * characters or outside [A-Za-z0-9_-] could never be revoked (the revocation
 * list cannot name it). Such tokens are refused (401), and never issued.
 */
let data: TestData;
let app: CairnApp;
let ctx: ServerContext;

before(async () => {
  data = makeDataDir();
  await data.registry.create('main');
  ctx = await createServerContext(data.dataDir, data.registry, { deltas: false });
  app = makeApp(data, { context: ctx });
});

after(() => data.cleanup());

function signed(jti: string | undefined): Promise<string> {
  let jwt = new SignJWT({ scope: 'admin', repos: ['*'], prefixes: ['*'] }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuer('cairn').setSubject('someone').setIssuedAt().setExpirationTime('1h');
  if (jti !== undefined) jwt = jwt.setJti(jti);
  return jwt.sign(ctx.auth.secret);
}

const BAD_JTIS = ['', 'a'.repeat(129), '../../etc/passwd', 'has space', 'dot.ted', 'slash/ed', 'ünïcode', 'nul\0byte', 'new\nline', '*'];

test('verification refuses tokens whose jti cannot be revoked', async () => {
  for (const jti of BAD_JTIS) {
    const token = await signed(jti);
    await assert.rejects(verifyToken(ctx.auth.secret, token), (e: unknown) => e instanceof CairnError && e.code === 'UNAUTHORIZED', JSON.stringify(jti));
  }
  // The edges of the allowed form still verify.
  for (const jti of ['a', 'A-z_0-9', 'x'.repeat(128)]) assert.equal((await verifyToken(ctx.auth.secret, await signed(jti))).jti, jti);
});

test('over HTTP such tokens answer 401 with a JSON error; a good one is accepted and can be revoked', async () => {
  for (const jti of BAD_JTIS) {
    const token = await signed(jti);
    const r = await request(app).get('/api/tokens/revoked').set('Authorization', `Bearer ${token}`);
    assert.equal(r.status, 401, `${JSON.stringify(jti)}: ${r.status} ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, 'UNAUTHORIZED');
    // …in the Basic form the ostree client uses, too.
    const basic = await request(app).get('/api/tokens/revoked').set('Authorization', `Basic ${Buffer.from(`x:${token}`).toString('base64')}`);
    assert.equal(basic.status, 401);
  }
  const good = await signed('good-id_1');
  await request(app).get('/api/tokens/revoked').set('Authorization', `Bearer ${good}`).expect(200);
  await request(app).post('/api/tokens/revoke').set('Authorization', `Bearer ${good}`).send({ jti: 'good-id_1' }).expect(200);
  await request(app).get('/api/tokens/revoked').set('Authorization', `Bearer ${good}`).expect(401);
});

test('issued tokens always carry a revocable jti', async () => {
  for (let i = 0; i < 50; i++) {
    const { token, claims } = await issueToken(ctx.auth.secret, { sub: 'b', scope: ['push'], repos: ['main'], ttlSeconds: 60 });
    assert.ok(isValidJti(claims.jti), claims.jti);
    assert.equal((await verifyToken(ctx.auth.secret, token)).jti, claims.jti);
  }
  for (const jti of BAD_JTIS) assert.equal(isValidJti(jti), false, JSON.stringify(jti));
});
