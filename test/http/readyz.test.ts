// GET /readyz (issue 10, item 6): 200 while the data folder can be listed and
// written through its storage backend, 503 NOT_READY (JSON error, no change
// made) when the probe's write fails. Tests run as root, for whom permissions
// do not stop a write: the probe's own key is made a folder instead, which no
// rename can replace.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import request from 'supertest';
import { READY_PROBE_KEY } from '../../server/api/health';
import type { CairnApp } from '../../server/app';
import { createLogger } from '../../server/logging';
import { makeApp, publishingSetup, type TestData } from './helpers';

let data: TestData;
let app: CairnApp;
const lines: string[] = [];

before(async () => {
  ({ data, app } = await publishingSetup({ logger: createLogger({ level: 'warn', write: (l) => void lines.push(l) }) }));
});

after(() => data.cleanup());

const probe = () => path.join(data.dataDir, READY_PROBE_KEY);
const tempFiles = () => (existsSync(path.join(data.dataDir, 'tmp')) ? readdirSync(path.join(data.dataDir, 'tmp')) : []);

test('ready: 200 {status: "ready"}, no-store, the probe leaves nothing behind', async () => {
  const r = await request(app).get('/readyz').expect(200);
  assert.deepEqual(r.body, { status: 'ready' });
  assert.equal(r.headers['cache-control'], 'no-store');
  assert.equal(existsSync(probe()), false, 'probe removed');
  assert.deepEqual(tempFiles(), [], 'no temporary file');
  // beside it, liveness is unchanged
  await request(app).get('/healthz').expect(200);
});

test('not writable: 503 NOT_READY as a JSON error, then ready again once writable', async () => {
  mkdirSync(probe());
  writeFileSync(path.join(probe(), 'in-the-way'), 'x'); // a non-empty folder: the rename onto it fails
  const r = await request(app).get('/readyz').expect(503);
  assert.match(r.headers['content-type'], /^application\/json/);
  assert.equal(r.body.error.code, 'NOT_READY');
  assert.equal(typeof r.body.error.message, 'string');
  assert.ok(!JSON.stringify(r.body).includes(data.dataDir), 'no path of the server in the answer');
  assert.deepEqual(readdirSync(probe()), ['in-the-way'], 'nothing changed');
  assert.deepEqual(tempFiles(), [], 'no temporary file');
  assert.ok(lines.some((l) => JSON.parse(l).msg === 'not ready'), 'logged');
  // liveness does not depend on it
  await request(app).get('/healthz').expect(200);

  rmSync(probe(), { recursive: true });
  assert.deepEqual((await request(app).get('/readyz').expect(200)).body, { status: 'ready' });
});

test('without a server context (read-only serving) /readyz is there too', async () => {
  const bare = makeApp(data);
  await request(bare).get('/readyz').expect(200);
});
