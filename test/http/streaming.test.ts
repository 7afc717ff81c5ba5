import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FsBackend } from '../../storage/backends/fs';
import { listenApp, makeApp, makeDataDir, rawRequest, type TestData } from './helpers';

const openFds = () => readdirSync('/proc/self/fd').length;

async function settle(baseline: number): Promise<number> {
  for (let i = 0; i < 100 && openFds() > baseline; i++) await new Promise((r) => setTimeout(r, 20));
  return openFds();
}

/** Reads the first chunk of the body, then drops the connection. */
function abortAfterFirstChunk(port: number, p: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      res.once('data', (c: Buffer) => {
        req.destroy();
        resolve(c.length);
      });
    });
    req.on('error', (e) => ((e as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(e)));
    req.end();
  });
}

describe('streaming large files', () => {
  let data: TestData;
  let server: { port: number; close(): Promise<void> };
  const big = randomBytes(16 * 1024 * 1024);
  const rel = 'deltas/Zz/stream-part/0';
  before(async () => {
    data = makeDataDir();
    mkdirSync(path.join(data.repoDir, path.dirname(rel)), { recursive: true });
    writeFileSync(path.join(data.repoDir, rel), big);
    server = await listenApp(makeApp(data));
  });
  after(async () => {
    await server.close();
    data.cleanup();
  });

  test('the backend stream the server pipes releases its descriptor when consumed or destroyed', async () => {
    // The server relies on this: a stream that never emits 'close' leaves the
    // descriptor to the garbage collector (EBADF on reused fd numbers).
    const backend = new FsBackend(data.repoDir);
    for (const consume of [true, false]) {
      const opened = await backend.openRead(rel, { start: 0, end: 1024 * 1024 - 1 });
      assert.ok(opened);
      const closed = new Promise<void>((resolve) => opened.stream.once('close', () => resolve()));
      if (consume) opened.stream.resume();
      else opened.stream.destroy();
      const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 2000).unref());
      assert.notEqual(await Promise.race([closed, timeout]), 'timeout', consume ? 'no close after end' : 'no close after destroy');
    }
  });

  test('full bodies are exact and no descriptor stays open afterwards', async () => {
    const baseline = openFds();
    for (let i = 0; i < 5; i++) {
      const res = await rawRequest(server.port, `/repo/sample/${rel}`);
      assert.equal(res.status, 200);
      assert.ok(res.body.equals(big));
    }
    assert.ok((await settle(baseline)) <= baseline, 'file descriptors leaked');
  });

  test('clients that go away mid-body leak no file descriptor', async () => {
    const baseline = openFds();
    for (let i = 0; i < 20; i++) assert.ok((await abortAfterFirstChunk(server.port, `/repo/sample/${rel}`)) > 0);
    assert.ok((await settle(baseline)) <= baseline, `file descriptors leaked: ${openFds()} > ${baseline}`);
    const ok = await rawRequest(server.port, `/repo/sample/${rel}`, { headers: { Range: 'bytes=-10' } });
    assert.equal(ok.status, 206);
    assert.ok(ok.body.equals(big.subarray(big.length - 10)));
  });

  test('a file replaced mid-response is sent whole in its old version', async () => {
    const file = path.join(data.repoDir, rel);
    const body = await new Promise<Buffer>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: server.port, path: `/repo/sample/${rel}`, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.once('data', () => {
          writeFileSync(`${file}.new`, randomBytes(1000));
          renameSync(`${file}.new`, file);
        });
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(Buffer.concat(chunks)));
      });
      req.on('error', reject);
      req.end();
    });
    assert.ok(body.equals(big));
    const now = await rawRequest(server.port, `/repo/sample/${rel}`);
    assert.equal(now.body.length, 1000);
  });
});
