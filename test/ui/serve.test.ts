// How the web UI is served (issue 10 item 5): one route for `/` and `/ui/…`,
// the same HTML document for every page with a strict Content-Security-Policy
// and no inline script or style, immutable assets under a build digest, and
// nothing taken from the API's or the repositories' paths.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import request from 'supertest';
import type { CairnApp } from '../../server/app';
import { binary, makeApp, makeDataDir, type TestData } from '../http/helpers';

let data: TestData;
let app: CairnApp;

before(async () => {
  data = makeDataDir();
  await data.registry.create('main');
  app = makeApp(data);
});
after(() => data.cleanup());

const assetsOf = (html: string) => [...html.matchAll(/(?:src|href)="(\/ui\/assets\/[^"]+)"/g)].map((m) => m[1]!);

test('every page of the UI answers the same HTML: CSP default-src self, no inline script or style, revalidated by ETag', async () => {
  const home = await request(app).get('/').expect(200);
  assert.match(home.headers['content-type'], /^text\/html; charset=utf-8/);
  assert.match(home.headers['content-security-policy'], /(^|;\s*)default-src 'self'(;|$)/);
  assert.equal(home.headers['x-content-type-options'], 'nosniff');
  assert.equal(home.headers['cache-control'], 'no-cache');
  const html = home.text;
  assert.match(html, /<script type="module" src="\/ui\/assets\/[0-9a-f]{20}\/app\.js"><\/script>/);
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
  assert.doesNotMatch(html, /<style|\sstyle=|\son[a-z]+=/i, 'no inline style or handler');
  assert.doesNotMatch(html, /https?:\/\//, 'nothing from another origin (no CDN)');

  for (const p of ['/ui', '/ui/repos/main', '/ui/repos/main/history?ref=os%2Fstable', `/ui/repos/main/commits/${'a'.repeat(64)}/tree?path=/usr`, '/ui/jobs', '/ui/no/such/page']) {
    const r = await request(app).get(p).expect(200);
    assert.equal(r.text, html, p);
    assert.match(r.headers['content-security-policy'], /default-src 'self'/, p);
  }
  const etag = home.headers.etag;
  assert.ok(etag);
  await request(app).get('/ui/repos/main').set('If-None-Match', etag).expect(304);
  const head = await request(app).head('/').expect(200);
  assert.equal(head.text, undefined);
});

test('assets: every one the HTML names is served with its type, immutable for a year; another build is 404', async () => {
  const html = (await request(app).get('/').expect(200)).text;
  const assets = assetsOf(html);
  assert.ok(assets.some((a) => a.endsWith('/app.js')) && assets.some((a) => a.endsWith('.css')), assets.join());
  for (const a of assets) {
    const r = await request(app).get(a).expect(200);
    assert.match(r.headers['content-type'], a.endsWith('.js') ? /^text\/javascript/ : a.endsWith('.css') ? /^text\/css/ : /^image\/svg\+xml/, a);
    assert.equal(r.headers['cache-control'], 'public, max-age=31536000, immutable');
    assert.ok(r.headers.etag);
    await request(app).get(a).set('If-None-Match', r.headers.etag).expect(304);
  }
  // The modules the entry point imports are there too (relative imports under the same build).
  const app1 = (await request(app).get(assets.find((a) => a.endsWith('/app.js'))!).expect(200)).text;
  const base = assets.find((a) => a.endsWith('/app.js'))!.replace(/app\.js$/, '');
  for (const m of app1.matchAll(/from '\.\/([^']+)'/g)) await request(app).get(base + m[1]).expect(200);

  const build = base.split('/')[3]!;
  await request(app).get(`/ui/assets/${'0'.repeat(20)}/app.js`).expect(404);
  await request(app).get(`/ui/assets/${build}/nope.js`).expect(404);
  await request(app).get(`/ui/assets/${build}/../../../package.json`).expect(404);
  await request(app).get(`/ui/assets/${build}/%2e%2e/%2e%2e/package.json`).expect(404);
});

test('the UI takes only its own paths: unknown /api/ paths are 404 JSON, other paths 404, repositories untouched', async () => {
  const api = await request(app).get('/api/no-such-thing').expect(404);
  assert.equal(api.body.error.code, 'NOT_FOUND');
  await request(app).get('/uix').expect(404);
  await request(app).get('/index.html').expect(404);
  await request(app).get('/repo/main/config').expect(200);
  await request(app).get('/healthz').expect(200);
  await request(app).post('/').expect(404);
});

test('the UI wins over a --mount whose prefix covers its paths, as /api/ does; the mount serves the rest', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cairn-ui-mount-'));
  try {
    mkdirSync(path.join(dir, 'ui'), { recursive: true });
    writeFileSync(path.join(dir, 'ui', 'jobs'), 'a file of the mount');
    writeFileSync(path.join(dir, 'other'), 'served by the mount');
    const mounted = makeApp(data, { mounts: [{ prefix: '/', dir }] });
    const html = (await request(app).get('/').expect(200)).text;
    assert.equal((await request(mounted).get('/').expect(200)).text, html);
    assert.equal((await request(mounted).get('/ui/jobs').expect(200)).text, html);
    assert.equal(String((await request(mounted).get('/other').buffer(true).parse(binary).expect(200)).body), 'served by the mount');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
