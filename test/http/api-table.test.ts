// The route table (issue 10, item 1): /api/openapi.json is generated from it
// (every entry, nothing else); labels are unique; requests are validated
// from the entries' JSON Schemas with the JSON error shape; and the preamble
// runs in one order for every route: 404 (repository), 401/403 (credentials),
// 400 (params, query, body), 403 (ref prefixes), 403 NOT_OWNED.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { ROUTES } from '../../server/api/routes';
import type { CairnApp } from '../../server/app';
import { publishingSetup, type TestData } from './helpers';

let data: TestData;
let app: CairnApp;
let push: string;
let admin: string;
let narrow: string;
let otherReader: string;
let mainReader: string;

before(async () => {
  const s = await publishingSetup();
  ({ data, app } = s);
  push = await s.token({ sub: 'builder', scope: ['push'], repos: ['main', 'sample'] });
  admin = await s.token({ sub: 'root', scope: ['admin'], repos: ['*'] });
  narrow = await s.token({ sub: 'narrow', scope: ['push'], prefixes: ['os/'] });
  otherReader = await s.token({ sub: 'reader', scope: ['read'], repos: ['sample'] });
  mainReader = await s.token({ sub: 'main-reader', scope: ['read'] });
});

after(() => data.cleanup());

const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });

test('/api/openapi.json is the route table: every entry, with its parameters, bodies and errors', async () => {
  const doc = (await request(app).get('/api/openapi.json').expect(200)).body;
  assert.equal(doc.openapi, '3.1.0');
  const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`));
  const table = ROUTES.map((r) => `${r.method} ${r.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`);
  assert.deepEqual(documented.sort(), [...table].sort());
  assert.equal(new Set(table).size, table.length, 'one entry per method and path');
  // Labels are bounded metric labels, one per method and path (a label may name GET and PATCH of one resource).
  for (const r of ROUTES) assert.match(r.label, /^[a-z][a-z0-9_]*$/, r.label);
  const ids = Object.values(doc.paths as Record<string, Record<string, { operationId: string }>>).flatMap((ops) => Object.values(ops).map((o) => o.operationId));
  assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');

  const refs = doc.paths['/api/repos/{repo}/refs'];
  assert.deepEqual(refs.post.requestBody.content['application/json'].schema.properties.updates.maxItems, 1000);
  assert.ok(['400', '401', '403', '404', '409', '413', '422'].every((s) => refs.post.responses[s]), Object.keys(refs.post.responses).join());
  assert.equal(refs.post.responses['409'].content['application/json'].schema.$ref, '#/components/schemas/Error');
  const reflog = doc.paths['/api/repos/{repo}/reflog'].get;
  assert.deepEqual(
    reflog.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`),
    ['path:repo', 'query:ref', 'query:limit', 'query:before'],
  );
  assert.deepEqual(doc.paths['/healthz'].get.security, [], 'public routes need no token');
  assert.deepEqual(doc.paths['/readyz'].get.security, []);
  assert.ok(doc.paths['/api/repos/{repo}/objects'].post.requestBody.content['multipart/form-data'], 'streamed bodies documented');
  assert.ok(doc.components.schemas.Job.properties.priority.description.length > 20, 'descriptions kept');
});

test('validation errors: JSON shape, where and why; too many items is 413 TOO_LARGE', async () => {
  const cases: Array<[string, request.Test, number, string, RegExp]> = [
    ['query integer', request(app).get('/api/repos/main/reflog?limit=0'), 400, 'INVALID_ARGUMENT', /query\.limit must be >= 1/],
    ['query not a number', request(app).get('/api/repos/main/reflog?limit=ten'), 400, 'INVALID_ARGUMENT', /query\.limit must be integer/],
    ['query given twice', request(app).get('/api/jobs?state=done&state=failed'), 400, 'INVALID_ARGUMENT', /query\.state/],
    ['query enum', request(app).get('/api/jobs?state=bogus'), 400, 'INVALID_ARGUMENT', /must be one of "queued", "running", "done", "failed"/],
    ['path pattern', request(app).put(`/api/repos/main/objects/${'a'.repeat(64)}.exe`).set(bearer(push)).send('x'), 400, 'INVALID_ARGUMENT', /path\.name must match pattern/],
    ['body: missing property', request(app).post('/api/repos/main/refs').set(bearer(push)).send({}), 400, 'INVALID_ARGUMENT', /body: missing property "updates"/],
    ['body: unknown property', request(app).post('/api/repos/main/refs').set(bearer(push)).send({ updates: [{ ref: 'a', commit: null }], forc: true }), 400, 'INVALID_ARGUMENT', /body: unknown property "forc"/],
    ['body: nested', request(app).post('/api/repos/main/refs').set(bearer(push)).send({ updates: [{ ref: 'a', commit: 'XYZ' }] }), 400, 'INVALID_ARGUMENT', /body\.updates\[0\]\.commit/],
    ['body: empty list', request(app).post('/api/repos/main/refs').set(bearer(push)).send({ updates: [] }), 400, 'INVALID_ARGUMENT', /body\.updates must NOT have fewer than 1 items/],
    ['body: too many', request(app).post('/api/repos/main/refs').set(bearer(push)).send({ updates: Array.from({ length: 1001 }, () => ({ ref: 'a', commit: null })) }), 413, 'TOO_LARGE', /at most 1000 items/],
    ['body: not JSON', request(app).post('/api/repos/main/refs').set(bearer(push)).set('Content-Type', 'text/plain').send('updates'), 400, 'INVALID_ARGUMENT', /must be JSON/],
    ['settings: bounded', request(app).patch('/api/repos/main/settings').set(bearer(admin)).send({ deltas: { previousCommits: 51 } }), 400, 'INVALID_ARGUMENT', /body\.deltas\.previousCommits must be <= 50/],
    ['settings: unknown', request(app).patch('/api/repos/main/settings').set(bearer(admin)).send({ privat: true }), 400, 'INVALID_ARGUMENT', /unknown property "privat"/],
  ];
  for (const [what, req, status, code, message] of cases) {
    const r = await req;
    assert.equal(r.status, status, `${what}: ${r.status} ${JSON.stringify(r.body)}`);
    assert.match(r.headers['content-type'], /^application\/json/, what);
    assert.deepEqual(Object.keys(r.body), ['error'], what);
    assert.equal(r.body.error.code, code, what);
    assert.match(r.body.error.message, message, what);
  }
  // A malformed JSON body stays body-parser's 400, and a body over the route's limit a 413.
  assert.equal((await request(app).post('/api/tokens/revoke').set(bearer(admin)).set('Content-Type', 'application/json').send('{bad').expect(400)).body.error.code, 'BAD_REQUEST');
  assert.equal((await request(app).post('/api/tokens/revoke').set(bearer(admin)).send({ jti: 'x'.repeat(20_000) }).expect(413)).body.error.code, 'TOO_LARGE');
  // Nothing changed: settings as before, no ref.
  assert.equal((await request(app).get('/api/repos/main/settings').expect(200)).body.deltas.previousCommits, 3);
  assert.deepEqual((await request(app).get('/api/repos/main/refs').expect(200)).body.refs, {});
});

test('one preamble order for every route: 404, then 401/403, then 400, then ref prefixes, then NOT_OWNED', async () => {
  const bad = { updates: [{ ref: 'a', commit: 'not a checksum' }] };
  const code = async (req: request.Test) => {
    const r = await req;
    return `${r.status} ${r.body?.error?.code ?? ''}`.trim();
  };
  // No such repository: 404 whoever asks, whatever the body.
  assert.equal(await code(request(app).post('/api/repos/nope/refs').send(bad)), '404 NOT_FOUND');
  // Credentials before validation: a stranger learns nothing of the body's faults.
  assert.equal(await code(request(app).post('/api/repos/main/refs').send(bad)), '401 UNAUTHORIZED');
  assert.equal(await code(request(app).post('/api/repos/main/refs').set('Authorization', 'Bearer nonsense').send(bad)), '401 UNAUTHORIZED');
  assert.equal(await code(request(app).post('/api/repos/main/refs').set(bearer(admin.slice(0, -2))).send(bad)), '401 UNAUTHORIZED');
  // Validation before the ref prefixes and ownership.
  assert.equal(await code(request(app).post('/api/repos/sample/refs').set(bearer(push)).send(bad)), '400 INVALID_ARGUMENT');
  // Ref prefixes before ownership: a token for os/ only, moving a ref outside it.
  assert.equal(await code(request(app).post('/api/repos/main/refs').set(bearer(narrow)).send({ updates: [{ ref: 'other', commit: null }] })), '403 FORBIDDEN');
  // Then ownership (sample was made by ostree, not Cairn).
  assert.equal(await code(request(app).post('/api/repos/sample/refs').set(bearer(push)).send({ updates: [{ ref: 'a', commit: null }] })), '403 NOT_OWNED');
  assert.equal(await code(request(app).post('/api/repos/sample/objects/missing').set(bearer(push)).send({ objects: [] })), '403 NOT_OWNED');
  // Admin routes: 401, 403, then the body.
  assert.equal(await code(request(app).post('/api/repos').send({ nme: 1 })), '401 UNAUTHORIZED');
  assert.equal(await code(request(app).post('/api/repos').set(bearer(push)).send({ nme: 1 })), '403 FORBIDDEN');
  assert.equal(await code(request(app).post('/api/repos').set(bearer(admin)).send({ nme: 1 })), '400 INVALID_ARGUMENT');
  // Reads of a public repository look at no credentials (as its files); the list of repositories does.
  assert.equal(await code(request(app).get('/api/repos/main/refs')), '200');
  assert.equal(await code(request(app).get('/api/repos/main/refs').set('Authorization', 'Bearer nonsense')), '200');
  assert.equal(await code(request(app).get('/api/repos').set('Authorization', 'Bearer nonsense')), '401 UNAUTHORIZED');
});

test('a private repository: without a token that may read it, the 404 of a missing one; its readers see it', async () => {
  await request(app).patch('/api/repos/main/settings').set(bearer(admin)).send({ private: true }).expect(200);
  try {
    const anon = await request(app).get('/api/repos/main/refs').expect(404);
    assert.equal(anon.headers['www-authenticate'], undefined);
    assert.deepEqual(anon.body, { error: { code: 'NOT_FOUND', message: "no repository named main (or it is private and the request's credentials may not read it)" } });
    const other = await request(app).get('/api/repos/main/reflog').set(bearer(otherReader)).expect(404);
    assert.deepEqual(other.body, anon.body);
    // A write route: the caller who may not read it gets the same 404 before any 401/403.
    assert.deepEqual((await request(app).post('/api/repos/main/refs').set(bearer(otherReader)).send({ updates: [] }).expect(404)).body, anon.body);
    assert.deepEqual((await request(app).post('/api/repos/main/refs').send({ updates: [] }).expect(404)).body, anon.body);
    // One who may read it learns what it may not do: 403 for a push without push scope.
    const denied = await request(app).post('/api/repos/main/refs').set(bearer(mainReader)).send({ updates: [{ ref: 'a', commit: null }] }).expect(403);
    assert.equal(denied.body.error.code, 'FORBIDDEN');
    await request(app).get('/api/repos/main/settings').set(bearer(push)).expect(200);
    assert.deepEqual((await request(app).get('/api/repos/nope/refs').expect(404)).body, { error: { code: 'NOT_FOUND', message: "no repository named nope (or it is private and the request's credentials may not read it)" } });
    // The list shows it only to its readers.
    const names = async (t?: string) => ((await (t ? request(app).get('/api/repos').set(bearer(t)) : request(app).get('/api/repos')).expect(200)).body.repos as Array<{ name: string }>).map((r) => r.name);
    assert.ok(!(await names()).includes('main'));
    assert.ok((await names(push)).includes('main'));
  } finally {
    await request(app).patch('/api/repos/main/settings').set(bearer(admin)).send({ private: false }).expect(200);
  }
});
