import assert from 'node:assert/strict';
import { cpSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import request from 'supertest';
import { CairnError } from '../../storage/errors';
import { errorMiddleware, statusForCode } from '../../server/errors';
import { createLogger } from '../../server/logging';
import { FILES, FIXTURE_REPO, S1 } from '../helpers/fixtures';
import { binary, makeApp, makeDataDir, type TestData } from './helpers';

describe('app: health, metrics, API errors, repositories appearing, mounts', () => {
  let data: TestData;
  let app: ReturnType<typeof makeApp>;
  let mountDir: string;
  before(() => {
    data = makeDataDir();
    mountDir = path.join(data.dataDir, 'httpd');
    mkdirSync(path.join(mountDir, 'ostree', 'gnomerepo'), { recursive: true });
    cpSync(FIXTURE_REPO, path.join(mountDir, 'ostree', 'gnomerepo'), { recursive: true });
    writeFileSync(path.join(mountDir, 'healthz'), 'shadowed');
    mkdirSync(path.join(mountDir, 'repo', 'sample'), { recursive: true });
    writeFileSync(path.join(mountDir, 'repo', 'sample', 'config'), 'shadowed');
    app = makeApp(data, { mounts: [{ prefix: '/', dir: mountDir }] });
  });
  after(() => data.cleanup());

  test('GET /healthz', async () => {
    const res = await request(app).get('/healthz').expect(200);
    assert.match(res.headers['content-type'], /^application\/json/);
    assert.deepEqual(res.body, { status: 'ok', repos: 1 });
    assert.equal(res.headers['x-powered-by'], undefined);
  });

  test('a repository created while the app runs is served at once (also a symlinked one)', async () => {
    await request(app).get('/repo/late/config').expect(404);
    cpSync(FIXTURE_REPO, path.join(data.dataDir, 'repos', 'late'), { recursive: true });
    const res = await request(app).get('/repo/late/config').buffer(true).parse(binary).expect(200);
    assert.equal(res.body.length, FILES.config.size);
    symlinkSync(path.join(data.dataDir, 'repos', 'late'), path.join(data.dataDir, 'repos', 'linked'));
    await request(app).get(`/repo/linked/objects/${S1.slice(0, 2)}/${S1.slice(2)}.commit`).expect(200);
    assert.equal((await request(app).get('/healthz').expect(200)).body.repos, 3);
  });

  test('unknown API routes answer the JSON error shape', async () => {
    for (const p of ['/api/nope', '/api', '/api/v1/repos/x?y=1']) {
      const res = await request(app).get(p).expect(404);
      assert.match(res.headers['content-type'], /^application\/json/);
      assert.equal(res.body.error.code, 'NOT_FOUND');
      assert.equal(typeof res.body.error.message, 'string');
      assert.deepEqual(Object.keys(res.body), ['error']);
    }
    const post = await request(app).post('/api/nope').send({ a: 1 }).expect(404);
    assert.equal(post.body.error.code, 'NOT_FOUND');
  });

  test('mounts serve a folder with the repository-file rules; built-in routes keep priority', async () => {
    const cfg = await request(app).get('/ostree/gnomerepo/config').buffer(true).parse(binary).expect(200);
    assert.equal(cfg.body.length, FILES.config.size);
    const sum = await request(app).get('/ostree/gnomerepo/summary').expect(200);
    assert.equal(sum.headers['cache-control'], 'no-cache');
    const obj = await request(app).get(`/ostree/gnomerepo/objects/${S1.slice(0, 2)}/${S1.slice(2)}.commit`).expect(200);
    assert.equal(obj.headers['cache-control'], 'public, max-age=31536000, immutable');
    await request(app).get('/ostree/gnomerepo/objects/').expect(404);
    await request(app).get('/ostree/gnomerepo/nothing').expect(404);
    // /healthz and /repo/ win over the mount's files of the same name
    assert.equal((await request(app).get('/healthz').expect(200)).body.status, 'ok');
    const repoCfg = await request(app).get('/repo/sample/config').buffer(true).parse(binary).expect(200);
    assert.equal(repoCfg.body.length, FILES.config.size);
    await request(app).get('/metrics').expect(200);
  });

  test('GET /metrics exposes request counters with bounded route labels, bytes and cache counters', async () => {
    const fresh = makeApp(data);
    await request(fresh).get('/repo/sample/summary').expect(200);
    await request(fresh).get('/repo/sample/summary').expect(200);
    await request(fresh).get(`/repo/sample/objects/${S1.slice(0, 2)}/${S1.slice(2)}.commit`).expect(200);
    await request(fresh).get('/repo/sample/objects/aa/bb.commit').expect(404);
    await request(fresh).get('/healthz').expect(200);
    await request(fresh).get('/nothing/here').expect(404);
    const res = await request(fresh).get('/metrics').expect(200);
    assert.match(res.headers['content-type'], /^text\/plain/);
    const m = res.text;
    const value = (line: string) => {
      const row = m.split('\n').find((l) => l.startsWith(line + ' '));
      assert.ok(row, `missing ${line}\n${m.split('\n').filter((l) => l.startsWith('cairn_http_requests_total')).join('\n')}`);
      return Number(row.slice(line.length + 1));
    };
    assert.equal(value('cairn_http_requests_total{route="repo_file",method="GET",status="200"}'), 2);
    assert.equal(value('cairn_http_requests_total{route="repo_object",method="GET",status="200"}'), 1);
    assert.equal(value('cairn_http_requests_total{route="repo_object",method="GET",status="404"}'), 1);
    assert.equal(value('cairn_http_requests_total{route="healthz",method="GET",status="200"}'), 1);
    assert.equal(value('cairn_http_requests_total{route="unmatched",method="GET",status="404"}'), 1);
    assert.equal(value('cairn_http_response_bytes_total{route="repo_file"}'), 2 * FILES.summary.size);
    assert.equal(value('cairn_http_request_duration_seconds_count{route="repo_object",method="GET"}'), 2);
    assert.equal(value('cairn_cache_misses_total{cache="files"}'), 2);
    assert.equal(value('cairn_cache_hits_total{cache="files"}'), 1);
    assert.ok(m.includes('cairn_process_resident_memory_bytes'), 'default process metrics');
    assert.ok(!m.includes('nothing/here'), 'no raw paths in labels');
  });

  test('two apps in one process have separate registries', () => {
    assert.doesNotThrow(() => makeApp(data));
  });
});

describe('error rendering', () => {
  const lines: string[] = [];
  const log = createLogger({ level: 'error', write: (l) => void lines.push(l) });
  const app = express();
  app.get('/api/cairn/:code', (req) => {
    throw new CairnError(req.params.code as never, `message for ${req.params.code}`);
  });
  app.get('/api/crash', () => {
    throw new Error('secret internals at /srv/data');
  });
  app.get('/api/io', () => {
    throw new CairnError('IO', 'storage error on /srv/data/repos/x: EACCES');
  });
  app.get('/repo/x/crash', () => {
    throw new Error('boom');
  });
  app.post('/api/json', express.json(), (_req, res) => void res.json({}));
  app.use(errorMiddleware(log));

  test('CairnError codes map to statuses', async () => {
    const want: Record<string, number> = {
      NOT_FOUND: 404, INVALID_ARGUMENT: 400, INVALID_PATH: 400, INVALID_REF: 400, INVALID_CHECKSUM: 400,
      INVALID_GVARIANT: 400, INVALID_OBJECT: 400, CHECKSUM_MISMATCH: 400, TOO_LARGE: 413, CONFLICT: 409,
      ALREADY_EXISTS: 409, UNSUPPORTED: 501, IO: 500, SOMETHING_NEW: 500,
    };
    for (const [code, status] of Object.entries(want)) {
      assert.equal(statusForCode(code), status, code);
      if (status >= 500) continue;
      const res = await request(app).get(`/api/cairn/${code}`).expect(status);
      assert.deepEqual(res.body, { error: { code, message: `message for ${code}` } });
    }
  });

  test('5xx never leak messages or stacks; they go to the log', async () => {
    const crash = await request(app).get('/api/crash').expect(500);
    assert.deepEqual(crash.body, { error: { code: 'INTERNAL', message: 'internal server error' } });
    const io = await request(app).get('/api/io').expect(500);
    assert.equal(io.body.error.code, 'IO');
    assert.ok(!JSON.stringify(io.body).includes('/srv'));
    const file = await request(app).get('/repo/x/crash').expect(500);
    // File routes answer errors with no body at all (a body corrupts libostree's mirror fallback).
    assert.equal(file.headers['content-length'], '0');
    assert.equal(file.headers['x-cairn-error'], 'Internal Server Error');
    assert.ok(lines.some((l) => JSON.parse(l).err === 'secret internals at /srv/data'));
  });

  test('body-parser errors keep their 4xx status', async () => {
    const res = await request(app).post('/api/json').set('Content-Type', 'application/json').send('{bad').expect(400);
    assert.equal(res.body.error.code, 'BAD_REQUEST');
  });
});
