import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FILES } from '../helpers/fixtures';
import { listenApp, makeApp, makeDataDir, rawRequest, type TestData } from './helpers';

/**
 * Traversal and malformed paths, sent raw on the wire. A secret file sits
 * beside the repositories (inside the data folder) and another outside it:
 * no request may ever read either.
 */
describe('malformed and escaping paths', () => {
  let data: TestData;
  let server: { port: number; close(): Promise<void> };
  let mountDir: string;
  before(async () => {
    data = makeDataDir();
    writeFileSync(path.join(data.dataDir, 'secret'), 'SECRET-IN-DATA');
    writeFileSync(path.join(data.dataDir, 'repos', 'secret'), 'SECRET-IN-REPOS');
    mountDir = path.join(data.dataDir, 'mounted');
    mkdirSync(path.join(mountDir, 'pub'), { recursive: true });
    writeFileSync(path.join(mountDir, 'pub', 'file'), 'public');
    server = await listenApp(makeApp(data, { mounts: [{ prefix: '/m', dir: mountDir }] }));
  });
  after(async () => {
    await server.close();
    data.cleanup();
  });

  const bad400 = [
    '/repo/sample/../../etc/passwd',
    '/repo/sample/../secret',
    '/repo/../secret',
    '/repo/sample/objects/../config',
    '/repo/sample/./config',
    '/repo/sample/%2e%2e/secret',
    '/repo/sample/%2E%2E/%2E%2E/secret',
    '/repo/sample/..%2Fsecret',
    '/repo/sample/objects%2F..%2F..%2Fsecret',
    '/repo/sample%2F..%2Fsecret',
    '/repo/sample/objects%2f3f',
    '/repo/sample/..%5Csecret',
    '/repo/sample/..\\secret',
    '/repo/sample/config%00',
    '/repo/sample/config%00.png',
    '/repo/sample/%00',
    '/repo/sample//etc/passwd',
    '/repo/sample/objects//3f',
    '/repo/sample/%E0%A4%A',
    '/repo/sample/%zz',
    `/repo/sample/${'a'.repeat(256)}`,
    `/repo/sample/objects/${'b'.repeat(1000)}`,
    '/m/../secret',
    '/m/pub/../../secret',
    '/m/%2e%2e/secret',
    '/m/pub%2Ffile',
    '/m/pub/file%00',
  ];

  for (const p of bad400) {
    test(`400 for ${p.length > 80 ? p.slice(0, 80) + '…' : p}`, async () => {
      const res = await rawRequest(server.port, p);
      assert.equal(res.status, 400);
      assert.equal(res.body.length, 0, 'file-route errors have no body');
      assert.ok(String(res.headers['x-cairn-error']).length > 0, 'the reason is in X-Cairn-Error');
      assert.ok(!String(res.headers['x-cairn-error']).includes('SECRET'));
      assert.ok(!res.body.toString().includes('SECRET'));
      assert.ok(!res.body.toString().includes('root:'));
      assert.ok(!/at .*\.js:\d+/.test(res.body.toString()), 'no stack trace');
    });
  }

  test('absolute-form and odd request targets never escape', async () => {
    for (const p of ['//etc/passwd', '/repo//etc/passwd', '/repo/sample/%2Fetc%2Fpasswd', '/%2e%2e/%2e%2e/etc/passwd']) {
      const res = await rawRequest(server.port, p);
      assert.ok(res.status === 400 || res.status === 404, `${p}: ${res.status}`);
      assert.ok(!res.body.toString().includes('root:'));
    }
  });

  test('HEAD with a traversal is a 400 too', async () => {
    const res = await rawRequest(server.port, '/repo/sample/../../etc/passwd', { method: 'HEAD' });
    assert.equal(res.status, 400);
    assert.equal(res.body.length, 0);
  });

  test('the server is still up and serving after all of that', async () => {
    const res = await rawRequest(server.port, '/repo/sample/config');
    assert.equal(res.status, 200);
    assert.equal(res.body.length, FILES.config.size);
    assert.equal((await rawRequest(server.port, '/m/pub/file')).body.toString(), 'public');
  });

  test('unknown and illegal repository names are 404', async () => {
    for (const p of ['/repo/nope/config', '/repo/.hidden/config', '/repo/-x/config', `/repo/${'r'.repeat(100)}/config`]) {
      assert.equal((await rawRequest(server.port, p)).status, 404, p);
    }
  });
});
