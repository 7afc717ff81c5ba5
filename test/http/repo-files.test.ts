import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { FILES, OBJECTS, type ObjectVector, S1, S1_S2_DELTA_DIR } from '../helpers/fixtures';
import { binary, makeApp, makeDataDir, type TestData } from './helpers';

const objKey = (v: Pick<ObjectVector, 'checksum' | 'ext'>) => `objects/${v.checksum.slice(0, 2)}/${v.checksum.slice(2)}.${v.ext}`;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// The same assertions with the small-file cache on (default) and off (every file streamed).
for (const cacheMode of ['cached', 'streamed'] as const) {
  describe(`repository files (${cacheMode})`, () => {
    let data: TestData;
    let app: ReturnType<typeof makeApp>;
    before(() => {
      data = makeDataDir();
      app = makeApp(data, cacheMode === 'streamed' ? { fileCache: false } : {});
    });
    after(() => data.cleanup());

    const get = (p: string) => request(app).get(p).buffer(true).parse(binary);

    test('every object is served byte for byte with Content-Length, twice', async () => {
      for (const v of OBJECTS) {
        const want = readFileSync(path.join(data.repoDir, objKey(v)));
        assert.equal(want.length, v.size);
        for (let i = 0; i < 2; i++) {
          const res = await get(`/repo/sample/${objKey(v)}`).expect(200);
          assert.ok(Buffer.isBuffer(res.body));
          assert.equal(sha256(res.body), sha256(want), `${v.what} bytes`);
          assert.equal(res.headers['content-length'], String(v.size));
          assert.equal(res.headers['content-type'], 'application/octet-stream');
          assert.equal(res.headers['content-encoding'], undefined);
        }
      }
    });

    test('summary, summary.sig, config, ref, delta index, superblocks and parts (paths with +)', async () => {
      for (const f of Object.values(FILES)) {
        if ('extra' in f && f.extra) continue;
        const res = await get(`/repo/sample/${f.rel}`).expect(200);
        if ('sha256' in f) assert.equal(sha256(res.body), f.sha256, f.what);
        assert.equal(res.body.length, f.size, f.what);
        assert.equal(res.headers['content-length'], String(f.size));
      }
      assert.ok(S1_S2_DELTA_DIR.includes('+'));
    });

    test('no Content-Encoding even when the client asks for compression', async () => {
      const res = await get('/repo/sample/summary').set('Accept-Encoding', 'gzip, deflate, br').expect(200);
      assert.equal(res.headers['content-encoding'], undefined);
      assert.equal(sha256(res.body), FILES.summary.sha256);
    });

    test('HEAD gives the headers of GET and no body', async () => {
      const res = await request(app).head(`/repo/sample/${FILES.fromToPart0.rel}`).expect(200);
      assert.equal(res.headers['content-length'], String(FILES.fromToPart0.size));
      assert.equal(res.headers['cache-control'], 'public, max-age=31536000, immutable');
      assert.ok(res.headers.etag);
      assert.equal(res.text ?? '', '');
      await request(app).head('/repo/sample/objects/00/nothing.commit').expect(404);
    });

    test('a literal + is a plus, %20 is a space, each decoded once', async () => {
      const dir = path.join(data.repoDir, 'deltas', 'zz');
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, 'a+b'), 'plus');
      writeFileSync(path.join(dir, 'a b'), 'space');
      writeFileSync(path.join(dir, 'a%2Bb'), 'percent');
      assert.equal((await get('/repo/sample/deltas/zz/a+b').expect(200)).body.toString(), 'plus');
      assert.equal((await get('/repo/sample/deltas/zz/a%2Bb').expect(200)).body.toString(), 'plus');
      assert.equal((await get('/repo/sample/deltas/zz/a%20b').expect(200)).body.toString(), 'space');
      assert.equal((await get('/repo/sample/deltas/zz/a%252Bb').expect(200)).body.toString(), 'percent');
    });

    test('404: unknown repo, absent object, folders, local-only folders', async () => {
      const missing = [
        '/repo/nope/config',
        '/repo/nope/',
        `/repo/sample/objects/${S1.slice(0, 2)}/${'0'.repeat(62)}.commit`,
        '/repo/sample/objects/3f',
        '/repo/sample/objects/3f/',
        '/repo/sample/objects',
        '/repo/sample/',
        '/repo/sample',
        '/repo/',
        '/repo',
        '/repo/sample/refs/heads',
        '/repo/sample/refs/heads/sample/nothing',
        '/repo/sample/deltas/zz',
      ];
      for (const dir of ['tmp', 'state', 'extensions']) {
        mkdirSync(path.join(data.repoDir, dir), { recursive: true });
        writeFileSync(path.join(data.repoDir, dir, 'secret'), 'local');
        missing.push(`/repo/sample/${dir}/secret`);
      }
      for (const p of missing) {
        const res = await request(app).get(p);
        assert.equal(res.status, 404, p);
        assert.equal(res.headers['content-length'], '0', p);
        assert.equal(res.headers.etag, undefined, p);
      }
    });

    test('other methods on repository files are not served', async () => {
      await request(app).put('/repo/sample/config').send('x').expect(404);
      await request(app).delete('/repo/sample/config').expect(404);
      assert.equal(readFileSync(path.join(data.repoDir, 'config')).length, FILES.config.size);
    });
  });
}
