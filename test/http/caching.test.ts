import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { FILES, S1 } from '../helpers/fixtures';
import { binary, makeApp, makeDataDir, type TestData } from './helpers';

const IMMUTABLE = 'public, max-age=31536000, immutable';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const S1_COMMIT = `objects/${S1.slice(0, 2)}/${S1.slice(2)}.commit`;
/** libostree's form: `UTC`, not `GMT`. */
const utcDate = (ms: number) => new Date(ms).toUTCString().replace(/GMT$/, 'UTC');

/** Replaces a file the way ostree does (new file, rename over), with a chosen mtime. */
function replaceFile(file: string, bytes: Buffer | string, mtimeSec: number): void {
  const tmp = `${file}.new`;
  writeFileSync(tmp, bytes);
  utimesSync(tmp, mtimeSec, mtimeSec);
  renameSync(tmp, file);
}

describe('validators, caching and freshness', () => {
  let data: TestData;
  let app: ReturnType<typeof makeApp>;
  const past = Math.floor(Date.now() / 1000) - 3600;
  before(() => {
    data = makeDataDir();
    // Mutable files get Last-Modified only once their second is over; make them old.
    for (const f of ['summary', 'summary.sig', 'config', FILES.ref.rel]) utimesSync(path.join(data.repoDir, f), past, past);
    app = makeApp(data);
  });
  after(() => data.cleanup());
  const get = (p: string) => request(app).get(p).buffer(true).parse(binary);

  test('objects and delta files: strong ETag, immutable Cache-Control, 304 on If-None-Match', async () => {
    const res = await get(`/repo/sample/${S1_COMMIT}`).expect(200);
    assert.equal(res.headers['cache-control'], IMMUTABLE);
    assert.equal(res.headers.etag, `"${S1}.commit"`);
    const again = await get(`/repo/sample/${S1_COMMIT}`).set('If-None-Match', res.headers.etag).expect(304);
    assert.equal(again.body.length, 0);
    assert.equal(again.headers.etag, res.headers.etag);
    await get(`/repo/sample/${S1_COMMIT}`).set('If-None-Match', '"other"').expect(200);

    for (const f of [FILES.scratchSuperblock, FILES.fromToPart0]) {
      const d = await get(`/repo/sample/${f.rel}`).expect(200);
      assert.equal(d.headers['cache-control'], IMMUTABLE, f.rel);
      assert.match(d.headers.etag, /^"[^"]+"$/);
    }
  });

  test('mutable files revalidate: ETag, Last-Modified, no-cache', async () => {
    for (const f of [FILES.summary, FILES.summarySig, FILES.config, FILES.ref, FILES.deltaIndex]) {
      const res = await get(`/repo/sample/${f.rel}`).expect(200);
      assert.equal(res.headers['cache-control'], 'no-cache', f.rel);
      assert.match(res.headers.etag, /^"[^"]+"$/, f.rel);
      assert.notEqual(res.headers['cache-control'], IMMUTABLE);
    }
    const s = await get('/repo/sample/summary').expect(200);
    assert.equal(s.headers['last-modified'], new Date(past * 1000).toUTCString());
  });

  test('.commitmeta is not immutable (signatures get added to it)', async () => {
    const res = await get(`/repo/sample/objects/${S1.slice(0, 2)}/${S1.slice(2)}.commitmeta`).expect(200);
    assert.equal(res.headers['cache-control'], 'no-cache');
  });

  test('summary: 304 on If-None-Match, and on If-Modified-Since in the client\'s UTC form', async () => {
    const first = await get('/repo/sample/summary').expect(200);
    const etag = first.headers.etag;
    const lm = first.headers['last-modified'];
    assert.ok(etag && lm);
    const inm = await get('/repo/sample/summary').set('If-None-Match', etag).expect(304);
    assert.equal(inm.body.length, 0);
    assert.equal(inm.headers['content-length'], undefined);
    // exactly what libostree sends: both headers, date suffixed UTC
    await get('/repo/sample/summary').set('If-None-Match', etag).set('If-Modified-Since', utcDate(past * 1000)).expect(304);
    await get('/repo/sample/summary').set('If-Modified-Since', utcDate(past * 1000)).expect(304);
    await get('/repo/sample/summary').set('If-Modified-Since', utcDate(Date.now())).expect(304);
    await get('/repo/sample/summary').set('If-Modified-Since', lm).expect(304);
    // older copy, or a mismatching ETag (which wins over the date): full body
    const older = await get('/repo/sample/summary').set('If-Modified-Since', utcDate((past - 10) * 1000)).expect(200);
    assert.equal(sha256(older.body), FILES.summary.sha256);
    await get('/repo/sample/summary').set('If-None-Match', '"stale"').set('If-Modified-Since', utcDate(Date.now())).expect(200);
    await get('/repo/sample/summary').set('If-Modified-Since', 'not a date').expect(200);
  });

  test('a summary rewritten on disk is served fresh on the next request, cache warm', async () => {
    const file = path.join(data.repoDir, 'summary');
    const before1 = await get('/repo/sample/summary').expect(200);
    await get('/repo/sample/summary').expect(200); // warm
    const etag = before1.headers.etag;

    // Same size, same second as before: only the backend version can tell.
    const next = randomBytes(FILES.summary.size);
    replaceFile(file, next, past);
    const after1 = await get('/repo/sample/summary').expect(200);
    assert.equal(sha256(after1.body), sha256(next));
    assert.notEqual(after1.headers.etag, etag);
    // the client's old validators no longer match
    const revalidate = await get('/repo/sample/summary').set('If-None-Match', etag).set('If-Modified-Since', utcDate(past * 1000)).expect(200);
    assert.equal(sha256(revalidate.body), sha256(next));
    // in-place rewrite too (no rename), later mtime
    writeFileSync(file, 'in place');
    utimesSync(file, past + 5, past + 5);
    assert.equal((await get('/repo/sample/summary').expect(200)).body.toString(), 'in place');
  });

  test('a ref moved by another process is seen at once', async () => {
    const file = path.join(data.repoDir, FILES.ref.rel);
    const a = 'a'.repeat(64) + '\n';
    const b = 'b'.repeat(64) + '\n';
    replaceFile(file, a, past);
    assert.equal((await get(`/repo/sample/${FILES.ref.rel}`).expect(200)).body.toString(), a);
    replaceFile(file, b, past);
    assert.equal((await get(`/repo/sample/${FILES.ref.rel}`).expect(200)).body.toString(), b);
  });

  test('a file deleted behind our back is 404 even when it was cached', async () => {
    const dir = path.join(data.repoDir, 'refs', 'heads', 'gone');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'ref'), 'c'.repeat(64));
    await get('/repo/sample/refs/heads/gone/ref').expect(200);
    await get('/repo/sample/refs/heads/gone/ref').expect(200);
    renameSync(path.join(dir, 'ref'), path.join(dir, 'moved'));
    await get('/repo/sample/refs/heads/gone/ref').expect(404);
  });

  test('a file modified in the current second gets no Last-Modified (it would not be a safe validator)', async () => {
    const file = path.join(data.repoDir, 'deltas', 'fresh');
    for (let i = 0; i < 3; i++) {
      writeFileSync(file, `x${i}`);
      const mtimeSec = Math.floor(statSync(file).mtimeMs / 1000);
      const res = await get('/repo/sample/deltas/fresh').expect(200);
      const dateSec = Date.parse(res.headers.date) / 1000;
      // (the server decided at or before its Date header, so only the same-second case is certain)
      if (dateSec === mtimeSec) assert.equal(res.headers['last-modified'], undefined);
      else assert.ok([undefined, new Date(mtimeSec * 1000).toUTCString()].includes(res.headers['last-modified']));
      // and a date in that same second never makes a 304
      const ims = await get('/repo/sample/deltas/fresh').set('If-Modified-Since', utcDate(mtimeSec * 1000));
      if (Date.parse(ims.headers.date) / 1000 === mtimeSec) assert.equal(ims.status, 200);
    }
  });
});

describe('range requests', () => {
  let data: TestData;
  let apps: Array<[string, ReturnType<typeof makeApp>]>;
  const big = randomBytes(3 * 1024 * 1024 + 17);
  const rel = 'deltas/Ab/big+part/0';
  before(() => {
    data = makeDataDir();
    mkdirSync(path.join(data.repoDir, 'deltas/Ab/big+part'), { recursive: true });
    writeFileSync(path.join(data.repoDir, rel), big);
    apps = [
      ['cached', makeApp(data, { fileCache: { maxFileBytes: 8 * 1024 * 1024 } })],
      ['streamed', makeApp(data, { fileCache: false })],
    ];
  });
  after(() => data.cleanup());

  for (const mode of ['cached', 'streamed']) {
    test(`206/416/200 on a large file (${mode})`, async () => {
      const app = apps.find(([m]) => m === mode)![1];
      const get = (range?: string) => {
        const r = request(app).get(`/repo/sample/${rel}`).buffer(true).parse(binary);
        return range === undefined ? r : r.set('Range', range);
      };
      const full = await get().expect(200);
      assert.equal(full.headers['content-length'], String(big.length));
      assert.equal(full.headers['accept-ranges'], 'bytes');
      assert.ok(full.body.equals(big));

      const cases: Array<[string, number, number]> = [
        ['bytes=0-0', 0, 0],
        ['bytes=10-1033', 10, 1033],
        ['bytes=1048576-', 1048576, big.length - 1],
        ['bytes=-100', big.length - 100, big.length - 1],
        [`bytes=-${big.length + 5}`, 0, big.length - 1],
        [`bytes=100-${big.length * 2}`, 100, big.length - 1],
      ];
      for (const [h, start, end] of cases) {
        const res = await get(h).expect(206);
        assert.equal(res.headers['content-range'], `bytes ${start}-${end}/${big.length}`, h);
        assert.equal(res.headers['content-length'], String(end - start + 1), h);
        assert.ok(res.body.equals(big.subarray(start, end + 1)), h);
      }
      for (const h of [`bytes=${big.length}-`, `bytes=${big.length + 10}-${big.length + 20}`, 'bytes=-0']) {
        const res = await get(h).expect(416);
        assert.equal(res.headers['content-range'], `bytes */${big.length}`, h);
      }
      // several ranges, nonsense, or reversed: the whole file
      for (const h of ['bytes=0-1,5-6', 'items=0-5', 'bytes=5-2', 'bytes=abc']) {
        const res = await get(h).expect(200);
        assert.equal(res.body.length, big.length, h);
      }
      // If-Range: the range only if the copy is current
      const etag = full.headers.etag;
      assert.equal((await get('bytes=0-9').set('If-Range', etag).expect(206)).body.length, 10);
      assert.equal((await get('bytes=0-9').set('If-Range', '"old"').expect(200)).body.length, big.length);
      // HEAD with a range
      const head = await request(app).head(`/repo/sample/${rel}`).set('Range', 'bytes=0-99').expect(206);
      assert.equal(head.headers['content-length'], '100');
    });
  }

  test('ranges of small cached files', async () => {
    const app = apps[0][1];
    const res = await request(app).get('/repo/sample/summary').set('Range', 'bytes=2-5').buffer(true).parse(binary).expect(206);
    assert.equal(res.headers['content-range'], `bytes 2-5/${FILES.summary.size}`);
    assert.equal(res.body.length, 4);
  });
});
