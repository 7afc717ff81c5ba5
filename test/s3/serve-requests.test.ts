// S3 requests per client request when `cairn serve --storage s3://…` serves files (issue #13,
// Performance): a GET the file cache cannot answer is one S3 GET (its answer gives the bytes and
// their version: no HEAD first), a cache hit one HEAD (validating the cached copy). Counted on a real
// Ceph RGW with bench/s3-count.ts preloaded into the server (as bench:s3 does), for a stock
// `ostree pull` and for a GET of every object: cold (a fresh server) and warm. It was 2.1 requests
// per client request cold, 1.03 warm (bench/results/s3-latest.json of 2026-11-30). Also: the bytes
// are the store's and the headers of a file served cold are those it has warm and for a HEAD.

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { S3Backend } from '../../storage/backends/s3';
import { mainToken, S3_COUNTER, settledCounts, withoutPolicyDeltas } from './s3-counts';
import { e2eWorkers, startCairn, type CairnProcess } from '../helpers/cairn-process';
import { commitTree, initRepo, makeSourceTree, makeTempDir, ostree, removeTempDirs } from '../helpers/ostree';
import { cli } from '../e2e/publish-helpers';
import { emptyPrefix, freshPrefix, s3ClientEnv, s3TestStore, type S3TestStore } from './ceph';

const REF = 'os/serve-requests';
const SECRET = 'cairn-s3-serve-requests-secret-0123456789abcdef';
/** Larger than the file cache's entry bound (256 KiB): served streamed. */
const BIG = 400_000;
let store: S3TestStore;
let prefix: string;
let work: string;
let cairn: CairnProcess | undefined;

before(async () => {
  store = await s3TestStore();
  prefix = freshPrefix('serve-requests');
  work = await makeTempDir('cairn-serve-requests-');
});

after(async () => {
  await cairn?.stop();
  await emptyPrefix(store, prefix).catch(() => undefined);
  await removeTempDirs();
});

const OBJECT_CLASSES = /^(commit|dirtree|dirmeta|filez.*|commitmeta)$/;
/**
 * The keys a client's requests read: objects, refs, summary and its signature. Not `config`: the
 * server HEADs it on its own too, as it reads server state (`state`) and lists deltas while running,
 * a few a second, requests no client asked for (so /config is not counted either).
 */
const FILE_CLASSES = /^(commit|dirtree|dirmeta|filez.*|commitmeta|ref|summary|summary\.sig|delta)$/;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


/** The S3 requests `run` made the server send: total and a table by operation and kind of key. */
async function counted(dir: string, run: () => Promise<void>): Promise<{ total: number; onObjects: number; onFiles: number; table: string }> {
  const before = await settledCounts(dir);
  await run();
  const after = await settledCounts(dir);
  const during: string[] = [];
  let total = 0;
  let onObjects = 0;
  let onFiles = 0;
  for (const [k, v] of after) {
    const n = v - (before.get(k) ?? 0);
    if (n === 0) continue;
    total += n;
    if (OBJECT_CLASSES.test(k.slice(k.indexOf(' ') + 1))) onObjects += n;
    if (FILE_CLASSES.test(k.slice(k.indexOf(' ') + 1))) onFiles += n;
    during.push(`${k}: ${n}`);
  }
  return { total, onObjects, onFiles, table: during.sort().join('\n') };
}

const HEADERS = ['etag', 'last-modified', 'content-length', 'cache-control', 'content-type', 'accept-ranges'];
const headersOf = (r: Response) => Object.fromEntries(HEADERS.map((h) => [h, r.headers.get(h)]));

test('cairn serve --storage s3://…: one S3 request per file served, cold (one GET) and warm (one HEAD); same bytes and headers', async (t) => {
  const counts = path.join(work, 'counts');
  await fsp.mkdir(counts);
  const env = {
    ...s3ClientEnv(store),
    CAIRN_TOKEN_SECRET: SECRET,
    CAIRN_BENCH_S3_COUNTS: counts,
    CAIRN_LOG: 'info', // the request log: how many requests the client made
  };
  const start = () => startCairn({ dataDir: path.join(work, 'scratch'), extraArgs: ['--storage', `s3://${store.bucket}/${prefix.replace(/\/$/, '')}`], nodeArgs: ['--require', S3_COUNTER], env });
  cairn = await start();

  // Publish a commit: ~150 small objects and one file above the cache's bound.
  const extra: Record<string, Buffer> = {};
  for (let i = 0; i < 120; i++) extra[`d${i % 10}/f${i}`] = Buffer.from(`file ${i}\n`.repeat(20 + i));
  const tree = await makeSourceTree(path.join(work, 'tree'), { seed: 29, bigFileBytes: BIG, extra });
  const local = await initRepo(path.join(work, 'local'), 'archive');
  const commit = await commitTree(local, { branch: REF, tree, subject: 'counted pull', timestamp: 1_709_251_200 });
  const token = (scope: string, more: string[] = []) => mainToken(SECRET, scope, more);
  // No deltas: the client pulls objects, and no compile reads the store while we count.
  await withoutPolicyDeltas(cairn.url, await token('admin'));
  const push = await cli(['push', '--url', `${cairn.url}/repo/main`, '--token', await token('push', ['--prefix', 'os/']), '--repo', local, REF]);
  assert.equal(push.code, 0, push.stderr);

  // A fresh server: nothing cached.
  await cairn.stop();
  cairn = await start();
  let base = `${cairn.url}/repo/main`;
  assert.equal((await fetch(`${base}/config`)).status, 200); // the server's own start-up reads are over

  const logged = () => cairn!.requests().filter((r) => r.path.startsWith('/repo/main/') && r.path !== '/repo/main/config').length;
  const pull = async (name: string) => {
    const client = await initRepo(path.join(work, name), 'archive');
    await ostree(['remote', 'add', '--no-gpg-verify', 'cairn', base], { repo: client });
    const n0 = logged();
    const c = await counted(counts, async () => {
      await ostree(['pull', 'cairn', REF], { repo: client });
    });
    // The request log may lag the last answers: its count once it stops changing.
    let n = logged();
    for (let i = 0; i < 20; i++) {
      await sleep(200);
      if (logged() === n) break;
      n = logged();
    }
    n -= n0;
    assert.equal((await ostree(['rev-parse', `cairn:${REF}`], { repo: client })).trim(), commit);
    await ostree(['fsck'], { repo: client });
    return { ...c, requests: n };
  };
  assert.ok(await cairn.waitForRequest((r) => r.path === '/repo/main/config'), 'the server logs requests');
  const cold = await pull('client-cold');
  const warm = await pull('client-warm');
  const perCold = cold.onFiles / cold.requests;
  const perWarm = warm.onFiles / warm.requests;
  t.diagnostic(`${e2eWorkers()} worker(s), ostree pull: cold ${cold.requests} client requests, ${cold.onFiles} S3 requests on their keys (${perCold.toFixed(2)} each; ${cold.total} in all); warm ${warm.requests}, ${warm.onFiles} (${perWarm.toFixed(2)} each; ${warm.total} in all)`);
  assert.ok(cold.requests > 120, `${cold.requests} client requests`);
  assert.ok(perCold <= 1.1, `cold: ${perCold.toFixed(2)} S3 requests per client request:\n${cold.table}`);
  assert.ok(perWarm <= 1.1, `warm: ${perWarm.toFixed(2)} S3 requests per client request:\n${warm.table}`);

  // Every object by a plain GET: the store's bytes; one S3 request each, whether cold or warm.
  const b = new S3Backend(store.client, store.bucket, `${prefix}repos/main/`);
  const keys: string[] = [];
  for await (const k of b.list('objects')) keys.push(k);
  const bigKey = (await Promise.all(keys.map(async (k) => ({ k, size: (await b.stat(k))!.size })))).find((o) => o.size > BIG)?.k;
  assert.ok(bigKey, 'one object above the cache bound');
  const smallKey = keys.find((k) => k.endsWith('.dirtree'))!;
  // Fresh again: headers of files served cold, then warm, then for a HEAD.
  await cairn.stop();
  cairn = await start();
  base = `${cairn.url}/repo/main`;
  assert.equal((await fetch(`${base}/config`)).status, 200);
  const stored = new Map<string, Buffer>();
  for (const k of keys) stored.set(k, (await b.read(k))!.data);
  const heads = new Map<string, Array<Record<string, string | null>>>();
  const getAll = async () => {
    for (const k of keys) {
      const r = await fetch(`${base}/${k}`);
      assert.equal(r.status, 200, k);
      const body = Buffer.from(await r.arrayBuffer());
      assert.ok(body.equals(stored.get(k)!), `${k}: the store's bytes`);
      if (k === bigKey || k === smallKey) heads.set(k, [...(heads.get(k) ?? []), headersOf(r)]);
    }
  };
  const coldGets = await counted(counts, getAll);
  const warmGets = await counted(counts, getAll);
  t.diagnostic(`GET of ${keys.length} objects: cold ${coldGets.total} S3 requests, warm ${warmGets.total}`);
  // Exactly one on the objects' keys (a GET cold; warm a HEAD, or a GET for the uncached big file); the rest (state, config) is the server's own.
  assert.equal(coldGets.onObjects, keys.length, `cold: ${coldGets.total} S3 requests for ${keys.length} GETs:\n${coldGets.table}`);
  assert.equal(warmGets.onObjects, keys.length, `warm: ${warmGets.total} S3 requests for ${keys.length} GETs:\n${warmGets.table}`);
  assert.ok(/^GetObject filez ≤ 256 KiB: \d+$/m.test(coldGets.table) && !/^HeadObject (dirtree|filez)/m.test(coldGets.table), `cold: no HEAD before a GET:\n${coldGets.table}`);
  for (const k of [bigKey, smallKey]) {
    const head = await fetch(`${base}/${k}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    const [c, w] = heads.get(k)!;
    assert.ok(c!.etag && c!['last-modified'] && c!['content-length'] === String((await b.stat(k))!.size), JSON.stringify(c));
    assert.deepEqual(c, w, `${k}: cold and warm headers`);
    assert.deepEqual(headersOf(head), c, `${k}: HEAD and GET headers`);
  }

  // The streamed file's validators on a miss: a 304 with no body; a range: its bytes.
  const etag = heads.get(bigKey)![0]!.etag!;
  const notModified = await fetch(`${base}/${bigKey}`, { headers: { 'if-none-match': etag } });
  assert.equal(notModified.status, 304);
  assert.equal((await notModified.arrayBuffer()).byteLength, 0);
  const ranged = await fetch(`${base}/${bigKey}`, { headers: { range: 'bytes=100-199' } });
  assert.equal(ranged.status, 206);
  assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(stored.get(bigKey)!.subarray(100, 200)));
  // A small file's range on a miss (a fresh server) and a missing object.
  await cairn.stop();
  cairn = await start();
  const small = await fetch(`${cairn.url}/repo/main/${smallKey}`, { headers: { range: 'bytes=1-3' } });
  assert.equal(small.status, 206);
  assert.ok(Buffer.from(await small.arrayBuffer()).equals((await b.read(smallKey))!.data.subarray(1, 4)));
  const missing = await fetch(`${cairn.url}/repo/main/objects/00/${'0'.repeat(62)}.filez`);
  assert.equal(missing.status, 404);
});

test('on S3 a replaced mutable file and a deleted object are seen at once, cached or not', async () => {
  assert.ok(cairn, 'the first test started the server');
  const base = `${cairn.url}/repo/main`;
  const b = new S3Backend(store.client, store.bucket, `${prefix}repos/main/`);
  const keys: string[] = [];
  for await (const k of b.list('objects')) if (k.endsWith('.dirmeta')) keys.push(k);
  const key = keys[0]!;
  const bytes = (await b.read(key))!.data;
  // Cached in every worker (a GET per worker at most), then deleted in the store: 404 at once.
  for (let i = 0; i < 4; i++) assert.ok(Buffer.from(await (await fetch(`${base}/${key}`)).arrayBuffer()).equals(bytes));
  await b.remove(key);
  for (let i = 0; i < 4; i++) assert.equal((await fetch(`${base}/${key}`)).status, 404);
  await b.write(key, bytes);
  // A ref replaced: the new value at once.
  const ref = `refs/heads/${REF}`;
  const old = (await b.read(ref))!.data.toString();
  for (let i = 0; i < 4; i++) assert.equal(await (await fetch(`${base}/${ref}`)).text(), old);
  const next = `${'ab'.repeat(32)}\n`;
  await b.write(ref, Buffer.from(next));
  for (let i = 0; i < 4; i++) assert.equal(await (await fetch(`${base}/${ref}`)).text(), next);
  await b.write(ref, Buffer.from(old));
});
