// The HTTP/1.1 front answering repository files (server/files/answer.ts)
// against node's own path (the app without the front) on the same data: for
// every kind of request a client makes, the same status, the same headers
// (but Date) in the same order and the same bytes; and the front takes
// exactly the requests it should, leaving the rest to the app.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { listen, type ListeningServer } from '../../server/listen';
import { createServerContext } from '../../server/bootstrap';
import type { Answerer } from '../../server/http1/front';
import type { ServerContext } from '../../server/context';
import type { Mount } from '../../server/app';
import { exchange, requestText, type ParsedResponse } from '../helpers/raw-http';
import { pseudoRandomBytes } from '../helpers/ostree';
import { makeApp, makeDataDir, type TestData } from './helpers';

const COMMIT = 'objects/3f/d0406929e83910fc100bb8ea1da75799549be4e5d2cf3ffbd292054da936a3.commit';
const FILEZ = 'objects/ad/e302966d6b52df9363c72c72a4079e589d89fdde5397e9da2dacb46c3b720b.filez';
const LARGE = `objects/ee/${'e'.repeat(62)}.filez`; // above the cache's 256 KiB: streamed
const PAST = new Date('2026-01-02T03:04:05Z');

let data: TestData;
let mounts: Mount[];
let ctx: ServerContext;
let withFront: ListeningServer;
let nodeOnly: ListeningServer;
const takenByFront: string[] = [];

before(async () => {
  data = makeDataDir();
  const large = path.join(data.repoDir, LARGE);
  mkdirSync(path.dirname(large), { recursive: true });
  writeFileSync(large, pseudoRandomBytes(5, 600_000));
  utimesSync(large, PAST, PAST); // a Last-Modified that cannot change between the two requests
  // Two --mount folders: a repository nested in a folder (as libostree's tests serve theirs), and a catch-all.
  cpSync(data.repoDir, path.join(data.dataDir, 'httpd', 'ostree', 'gnomerepo'), { recursive: true, preserveTimestamps: true });
  mkdirSync(path.join(data.dataDir, 'root'));
  writeFileSync(path.join(data.dataDir, 'root', 'hello.txt'), 'hello\n');
  utimesSync(path.join(data.dataDir, 'root', 'hello.txt'), PAST, PAST);
  writeFileSync(path.join(data.dataDir, 'root', 'httpd'), 'shadowed by the /httpd mount\n');
  mounts = [
    { prefix: '/httpd', dir: path.join(data.dataDir, 'httpd') },
    { prefix: '/', dir: path.join(data.dataDir, 'root') },
  ];
  ctx = await createServerContext(data.dataDir, data.registry, { signing: false, deltas: false });
  await data.registry.create('secret');
  await ctx.settings.update('secret', { private: true });
  const app = makeApp(data, { context: ctx, mounts });
  const front = app.locals.cairn.front!.answer;
  const recording: Answerer = (head) => {
    const r = front(head);
    const note = (taken: boolean) => taken && takenByFront.push(`${head.method} ${head.target}`);
    if (r instanceof Promise) void r.then((a) => note(a !== null), () => undefined);
    else note(r !== null);
    return r;
  };
  withFront = await listen(app, { port: 0, host: '127.0.0.1', front: { answer: recording } });
  nodeOnly = await listen(makeApp(data, { context: ctx, mounts }), { port: 0, host: '127.0.0.1' });
});

after(async () => {
  await withFront.close(100);
  await nodeOnly.close(100);
  await ctx.deltaJobs?.close();
  data.cleanup();
});

async function ask(port: number, method: string, target: string, headers: string[]): Promise<ParsedResponse> {
  const x = await exchange(port, [requestText(target, headers, method)], { expect: 1, heads: [method === 'HEAD'] });
  return x.responses[0]!;
}

/** Both servers answer alike; returns the front's answer. */
async function same(method: string, target: string, headers: string[] = []): Promise<ParsedResponse> {
  const a = await ask(withFront.port, method, target, headers);
  const b = await ask(nodeOnly.port, method, target, headers);
  const what = `${method} ${target} ${headers.join(' ')}`;
  assert.equal(a.status, b.status, what);
  // Each answer has its own request id (generated: none was sent); both carry one, in the same place.
  assert.match(String(a.headers['x-request-id']), /^[A-Za-z0-9._-]{1,64}$/, what);
  assert.match(String(b.headers['x-request-id']), /^[A-Za-z0-9._-]{1,64}$/, what);
  const strip = (r: ParsedResponse) => ({ ...r.headers, date: undefined, 'x-request-id': undefined });
  assert.deepEqual(strip(a), strip(b), what);
  assert.deepEqual(a.names, b.names, `${what}: header order`);
  assert.ok(a.body.equals(b.body), `${what}: body`);
  return a;
}

test('files, ranges, validators and misses: identical answers, taken by the front', async () => {
  takenByFront.length = 0;
  const etag = (await same('GET', `/repo/sample/${COMMIT}`)).headers.etag!;
  const summary = await same('GET', '/repo/sample/summary');
  const cases: [string, string, string[]][] = [
    ['HEAD', `/repo/sample/${COMMIT}`, []],
    ['GET', `/repo/sample/${FILEZ}`, []],
    ['GET', `/repo/sample/${FILEZ}?cache-bust=1`, []],
    ['GET', '/repo/sample/config', []],
    ['GET', '/repo/sample/refs/heads/sample/main', []],
    ['GET', '/repo/sample/summary.sig', []],
    ['GET', `/repo/sample/${LARGE}`, []],
    ['HEAD', `/repo/sample/${LARGE}`, []],
    ['GET', `/repo/sample/${LARGE}`, ['Range: bytes=100-199']],
    ['GET', `/repo/sample/${LARGE}`, ['Range: bytes=-10']],
    ['GET', `/repo/sample/${LARGE}`, ['Range: bytes=999999999-']],
    ['GET', `/repo/sample/${COMMIT}`, ['Range: bytes=0-3']],
    ['GET', `/repo/sample/${COMMIT}`, [`If-None-Match: ${etag}`]],
    ['GET', '/repo/sample/summary', [`If-None-Match: ${summary.headers.etag}`]],
    ['GET', '/repo/sample/summary', [`If-Modified-Since: ${summary.headers['last-modified']!.replace('GMT', 'UTC')}`]],
    ['GET', `/repo/sample/objects/00/${'0'.repeat(62)}.commitmeta`, []],
    ['HEAD', `/repo/sample/objects/00/${'0'.repeat(62)}.dirtree`, []],
  ];
  for (const [method, target, headers] of cases) await same(method, target, headers);
  await new Promise((r) => setTimeout(r, 50)); // the recording of async answers
  const expected = [`GET /repo/sample/${COMMIT}`, 'GET /repo/sample/summary', ...cases.map(([m, t]) => `${m} ${t}`)];
  assert.deepEqual([...takenByFront].sort(), [...expected].sort());
});

test('every answer about a file is the front\'s (errors, auth, missing deltas, odd paths); keys, the API and other methods are the app\'s', async () => {
  takenByFront.length = 0;
  const cases: [string, string, number][] = [
    ['GET', '/repo/secret/config', 404], // private repository: answered as one that does not exist
    ['GET', '/repo/nope/config', 404], // unknown repository
    ['GET', '/repo/sample/deltas/AA/BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB/superblock', 404], // may start an on-demand delta
    ['GET', '/repo/sample/keys/gpg.asc', 404],
    ['GET', '/repo/sample/objects/../config', 400],
    ['GET', '/repo/sample/refs/heads/sample%2Fmain', 400], // encoded slash
    ['GET', '/repo/sample/', 404],
    ['GET', '/healthz', 200],
    ['POST', '/repo/sample/config', 404],
  ];
  for (const [method, target, status] of cases) {
    const a = await same(method, target);
    assert.equal(a.status, status, `${method} ${target}`);
  }
  await new Promise((r) => setTimeout(r, 50));
  const appsOwn = new Set(['GET /repo/sample/keys/gpg.asc', 'GET /healthz', 'POST /repo/sample/config']);
  const expected = cases.map(([m, t]) => `${m} ${t}`).filter((c) => !appsOwn.has(c));
  assert.deepEqual([...takenByFront].sort(), expected.sort());
});

test('--mount folders: identical answers, all taken by the front but the built-in routes', async () => {
  takenByFront.length = 0;
  const repo = '/httpd/ostree/gnomerepo';
  const taken: [string, string, string[]][] = [
    ['GET', `${repo}/config`, []],
    ['GET', `${repo}/${COMMIT}`, []],
    ['HEAD', `${repo}/${FILEZ}`, []],
    ['GET', `${repo}/${LARGE}`, ['Range: bytes=10-99']],
    ['GET', `${repo}/refs/heads/sample/main`, []],
    ['GET', `${repo}/summary.sig`, []],
    ['GET', `${repo}/objects/00/${'0'.repeat(62)}.commit`, []], // 404
    ['GET', '/hello.txt', []],
    ['GET', '/nothing-here', []], // 404 from the catch-all
  ];
  for (const [method, target, headers] of taken) await same(method, target, headers);
  const etag = (await same('GET', `${repo}/summary`)).headers.etag!;
  await same('GET', `${repo}/summary`, [`If-None-Match: ${etag}`]);
  const odd: [string, string][] = [
    ['GET', '/httpd'], // a mount's bare prefix: 404
    ['GET', '/httpd/'],
    ['GET', '/hello%2etxt'],
    ['GET', '/repo'],
  ];
  for (const [method, target] of odd) await same(method, target);
  await same('GET', '/api/nothing'); // the app's
  await new Promise((r) => setTimeout(r, 50));
  const expected = [...taken.map(([m, t]) => `${m} ${t}`), `GET ${repo}/summary`, `GET ${repo}/summary`, ...odd.map(([m, t]) => `${m} ${t}`)];
  assert.deepEqual([...takenByFront].sort(), [...expected].sort());
});
