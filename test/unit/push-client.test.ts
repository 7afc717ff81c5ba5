// Unit tests of cairn push's client parts that need no OSTree: URL parsing, retry policy, upload
// planning, the worker pool, progress formatting, the streamed multipart body (parsed back with
// busboy, the parser multer uses on the server) and the HTTP client's retry behaviour against a
// scripted local server.

import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { PushApi } from '../../cli/push/api';
import { describeFailure } from '../../cli/push/errors';
import { ApiClient, ApiError, TransportError } from '../../cli/push/http';
import { LocalObjectError, multipartBody, type UploadPart } from '../../cli/push/multipart';
import { chunk, planBatches, uploadPhases, type Sized } from '../../cli/push/plan';
import { runPool } from '../../cli/push/pool';
import { updateRef } from '../../cli/push/push';
import { formatBytes, formatDuration, RateMeter, renderUploadLine } from '../../cli/push/progress';
import { backoffDelay, isRetryableStatus, retryAfterMs, type RetryPolicy } from '../../cli/push/retry';
import { parsePushUrl } from '../../cli/push/target';
import { UsageError } from '../../cli/command';
import { ObjectType } from '../../storage/objects/types';

// busboy ships no types (and multer's depend on it only at runtime): the little we use, typed here.
type Busboy = NodeJS.WritableStream & {
  on(ev: 'file', f: (name: string, stream: NodeJS.ReadableStream, info: { filename: string }) => void): Busboy;
  on(ev: 'field', f: (name: string) => void): Busboy;
  on(ev: 'close', f: () => void): Busboy;
  on(ev: 'error', f: (e: Error) => void): Busboy;
  end(b: Buffer): void;
};
// eslint-disable-next-line @typescript-eslint/no-require-imports
const busboy = require('busboy') as (o: { headers: Record<string, string> }) => Busboy;

const C = (n: number) => n.toString(16).padStart(64, '0');

test('push URL: the API sits beside /repo/NAME, under the same prefix', () => {
  assert.deepEqual(parsePushUrl('http://h:8080/repo/main'), { repoUrl: 'http://h:8080/repo/main', repo: 'main', apiBase: 'http://h:8080/api/repos/main' });
  assert.equal(parsePushUrl('https://h/ostree/repo/os-images/').apiBase, 'https://h/ostree/api/repos/os-images');
  for (const bad of ['h:8080/repo/main', 'ftp://h/repo/main', 'http://h/main', 'http://h/repo/main?x=1', 'http://h/repo/']) {
    assert.throws(() => parsePushUrl(bad), UsageError, bad);
  }
});

test('retry: which statuses, backoff bounds, Retry-After', () => {
  for (const s of [408, 429, 500, 502, 503, 504]) assert.ok(isRetryableStatus(s), String(s));
  for (const s of [400, 401, 403, 404, 409, 413, 422]) assert.ok(!isRetryableStatus(s), String(s));
  const p: RetryPolicy = { retries: 5, baseMs: 100, maxMs: 1000 };
  assert.equal(backoffDelay(0, p, () => 0), 50);
  assert.equal(backoffDelay(0, p, () => 1), 100);
  assert.equal(backoffDelay(3, p, () => 0), 400);
  assert.equal(backoffDelay(3, p, () => 1), 800);
  assert.equal(backoffDelay(30, p, () => 1), 1000, 'capped');
  assert.equal(retryAfterMs('2', p), 1000, 'capped by the policy');
  assert.equal(retryAfterMs('0', p), 0);
  assert.equal(retryAfterMs(new Date(10_500).toUTCString(), p, 10_000), 0, 'HTTP dates are whole seconds');
  assert.equal(retryAfterMs('soon', p), undefined);
  assert.equal(retryAfterMs(undefined, p), undefined);
});

function obj(i: number, type: ObjectType, size: number): Sized {
  return { name: `${C(i)}.x`, type, size };
}

test('plan: the tree (content, dirtrees, dirmetas), then the commit, then commitmeta', () => {
  const objs = [obj(1, ObjectType.Commit, 300), obj(2, ObjectType.DirTree, 50), obj(3, ObjectType.File, 9), obj(4, ObjectType.DirMeta, 5), obj(5, ObjectType.CommitMeta, 7), obj(6, ObjectType.File, 1)];
  assert.deepEqual(
    uploadPhases(objs).map((p) => p.map((o) => o.type)),
    [[ObjectType.DirTree, ObjectType.File, ObjectType.DirMeta, ObjectType.File], [ObjectType.Commit], [ObjectType.CommitMeta]],
  );
  assert.deepEqual(uploadPhases([obj(1, ObjectType.Commit, 1)]).length, 1, 'empty phases are dropped');
});

test('plan: large objects alone by PUT (largest first), small ones packed by count and bytes', () => {
  const limits = { largeObjectBytes: 100, maxBatchBytes: 250, maxBatchObjects: 3 };
  const objs = [obj(1, ObjectType.File, 100), obj(2, ObjectType.File, 10), obj(3, ObjectType.File, 500), obj(4, ObjectType.File, 99), obj(5, ObjectType.File, 99), obj(6, ObjectType.File, 99), obj(7, ObjectType.File, 1), obj(8, ObjectType.File, 1), obj(9, ObjectType.File, 1), obj(10, ObjectType.File, 1)];
  const jobs = planBatches(objs, limits);
  assert.deepEqual(
    jobs.map((j) => [j.kind, j.objects.map((o) => o.size)]),
    [
      ['put', [500]],
      ['put', [100]],
      ['multipart', [10, 99, 99]],
      ['multipart', [99, 1, 1]],
      ['multipart', [1, 1]],
    ],
  );
  for (const j of jobs) if (j.kind === 'multipart') assert.ok(j.bytes <= limits.maxBatchBytes && j.objects.length <= limits.maxBatchObjects);
  assert.equal(jobs.reduce((n, j) => n + j.objects.length, 0), objs.length, 'every object exactly once');
  assert.deepEqual(chunk([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
});

test('pool: bounded concurrency; after a failure nothing new starts, running work finishes, first error thrown', async () => {
  let running = 0;
  let peak = 0;
  const started: number[] = [];
  const finished: number[] = [];
  await assert.rejects(
    runPool([0, 1, 2, 3, 4, 5, 6, 7], 3, async (i) => {
      started.push(i);
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setImmediate(r));
      running--;
      if (i === 2) throw new Error('boom 2');
      if (i === 4) throw new Error('boom 4');
      finished.push(i);
    }),
    /boom 2/,
  );
  assert.equal(peak, 3);
  assert.ok(!started.includes(7), `started ${started}`);
  assert.deepEqual(started.filter((i) => i !== 2 && i !== 4).sort(), finished.sort(), 'everything started also finished');
  let n = 0;
  await runPool([], 4, async () => void n++);
  assert.equal(n, 0);
});

test('progress: formatting and the status line', () => {
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1500), '1.50 kB');
  assert.equal(formatBytes(123_456_789), '123 MB');
  assert.equal(formatDuration(75), '1:15');
  assert.equal(formatDuration(3725), '1:02:05');
  assert.equal(formatDuration(NaN), '--:--');
  const line = renderUploadLine({ objects: 5, totalObjects: 10, bytes: 50_000_000, totalBytes: 100_000_000, rate: 10_000_000 }, 100);
  assert.match(line, /^\[#{15}-{15}\]  50% 5\/10 objects 50\.0 MB\/100 MB 10\.0 MB\/s ETA 0:05$/);
  assert.ok(renderUploadLine({ objects: 5, totalObjects: 10, bytes: 5, totalBytes: 10, rate: 0 }, 30).length < 30, 'fits a narrow terminal');
  const m = new RateMeter(1000);
  m.sample(0, 0);
  assert.equal(m.sample(500, 500), 1000);
  m.sample(1000, 1000);
  assert.equal(m.sample(3000, 1000), 0, 'a stall drops the rate once the window has passed');
});

function part(name: string, data: Buffer, chunks = 3): UploadPart {
  return {
    name,
    size: data.length,
    async *open() {
      const step = Math.ceil(data.length / chunks) || 1;
      for (let i = 0; i < data.length; i += step) yield data.subarray(i, i + step);
    },
  };
}

async function collect(src: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of src) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

test('multipart: exact Content-Length, every part parsed back byte for byte as a file field', async () => {
  const parts = [part(`${C(1)}.filez`, Buffer.from('hello\r\n--not-a-boundary\r\n')), part(`${C(2)}.dirtree`, Buffer.alloc(0)), part(`${C(3)}.commit`, Buffer.alloc(70_000, 7))];
  let seen = 0;
  const mp = multipartBody(parts, (n) => (seen += n));
  const body = await collect(mp.body);
  assert.equal(body.length, mp.length);
  assert.equal(seen, parts.reduce((n, p) => n + p.size, 0));
  const got = new Map<string, Buffer>();
  await new Promise<void>((resolve, reject) => {
    const bb = busboy({ headers: { 'content-type': mp.contentType } });
    bb.on('file', (name, stream, info) => {
      assert.equal(info.filename, name);
      const bufs: Buffer[] = [];
      stream.on('data', (d: Buffer) => bufs.push(d));
      stream.on('end', () => got.set(name, Buffer.concat(bufs)));
    });
    bb.on('field', (name) => reject(new Error(`${name} parsed as a text field`)));
    bb.on('close', resolve);
    bb.on('error', reject);
    bb.end(body);
  });
  assert.deepEqual([...got.keys()], parts.map((p) => p.name));
  for (const p of parts) assert.deepEqual(got.get(p.name), await collect(p.open()));
});

test('multipart: a local file that changed size since it was statted fails the request, clearly', async () => {
  const shrunk = { ...part(`${C(1)}.filez`, Buffer.from('abc')), size: 5 };
  await assert.rejects(collect(multipartBody([shrunk]).body), (e: Error) => e instanceof LocalObjectError && /shrank/.test(e.message));
  const grown = { ...part(`${C(1)}.filez`, Buffer.from('abcdef')), size: 5 };
  await assert.rejects(collect(multipartBody([grown]).body), (e: Error) => e instanceof LocalObjectError && /grew/.test(e.message));
});

/** A local server answering from a script: each handler takes one request. */
async function scripted(handlers: Array<(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void>) {
  const seen: Array<{ method: string; url: string; auth?: string; body: Buffer }> = [];
  const server = http.createServer((req, res) => {
    const bufs: Buffer[] = [];
    req.on('data', (d: Buffer) => bufs.push(d));
    req.on('end', () => {
      const body = Buffer.concat(bufs);
      seen.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, body });
      const h = handlers.shift();
      if (!h) {
        res.statusCode = 500;
        res.end('script exhausted');
      } else h(req, res, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { base: `http://127.0.0.1:${port}/api/repos/main`, seen, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

const json = (status: number, o: unknown, headers: Record<string, string> = {}) => (_req: http.IncomingMessage, res: http.ServerResponse) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(o));
};
const fast: RetryPolicy = { retries: 3, baseMs: 1, maxMs: 5 };

test('http: retries 503/429 and dropped connections, sends the bearer token, gives back progress of failed attempts', async () => {
  const s = await scripted([
    json(503, { error: { code: 'UNAVAILABLE', message: 'restarting' } }),
    (req) => req.socket.destroy(),
    json(429, { error: { code: 'SLOW_DOWN', message: 'later' } }, { 'retry-after': '0' }),
    json(200, { stored: [`${C(1)}.filez`], present: [] }),
  ]);
  try {
    const retries: number[] = [];
    const api = new PushApi(new ApiClient({ apiBase: s.base, token: 'tok', retry: fast, onRetry: (_r, _e, attempt) => retries.push(attempt) }));
    let bytes = 0;
    const r = await api.uploadBatch([part(`${C(1)}.filez`, Buffer.from('0123456789'))], (n) => (bytes += n));
    assert.deepEqual(r, { stored: [`${C(1)}.filez`], present: [] });
    assert.deepEqual(retries, [1, 2, 3]);
    assert.equal(bytes, 10, 'bytes of failed attempts are taken back');
    assert.equal(s.seen.length, 4);
    for (const q of s.seen) {
      assert.equal(q.auth, 'Bearer tok');
      assert.equal(q.method, 'POST');
      assert.equal(q.url, '/api/repos/main/objects');
      assert.ok(q.body.includes(Buffer.from('0123456789')), 'each attempt sends the whole body again');
    }
  } finally {
    await s.close();
  }
});

test('http: final statuses are not retried and keep the error envelope', async () => {
  const conflict = { code: 'CONFLICT', message: 'ref moved', details: { conflicts: [{ ref: 'os/stable', expected: C(1), actual: C(2) }] } };
  const s = await scripted([json(409, { error: conflict }), json(502, { error: { code: 'BAD_GATEWAY', message: 'x' } }), json(502, { error: { code: 'BAD_GATEWAY', message: 'y' } })]);
  try {
    const api = new PushApi(new ApiClient({ apiBase: s.base, retry: { ...fast, retries: 1 } }));
    const err = await api.updateRefs([{ ref: 'os/stable', commit: C(3), expected: C(1) }], false).catch((e: unknown) => e);
    assert.ok(err instanceof ApiError);
    assert.equal(err.status, 409);
    assert.equal(s.seen.length, 1, '409 is final');
    assert.deepEqual(JSON.parse(s.seen[0]!.body.toString()), { updates: [{ ref: 'os/stable', commit: C(3), expected: C(1) }], force: false });
    const line = describeFailure(err, 'updating ref os/stable', { tokenGiven: true });
    assert.match(line, new RegExp(`ref os/stable was expected at ${C(1)} but the server has ${C(2)}`));
    const err2 = await api.refs().catch((e: unknown) => e);
    assert.ok(err2 instanceof ApiError && err2.status === 502 && err2.message === 'y', 'gave up after the retries');
    assert.equal(s.seen.length, 3);
  } finally {
    await s.close();
  }
});

test('http: a server that is not there is a TransportError after the retries', async () => {
  const s = await scripted([]);
  const base = s.base;
  await s.close();
  const api = new PushApi(new ApiClient({ apiBase: base, retry: { ...fast, retries: 2 } }));
  const err = await api.missing([`${C(1)}.filez`]).catch((e: unknown) => e);
  assert.ok(err instanceof TransportError, String(err));
  assert.match(describeFailure(err, 'checking objects', { tokenGiven: false }), /^checking objects: cannot reach the server \(.*ECONNREFUSED/);
});

test('http: a stalled server is abandoned after the stall timeout, then retried', async () => {
  const s = await scripted([() => undefined /* never answers */, json(200, { refs: { a: C(1) } })]);
  try {
    const api = new PushApi(new ApiClient({ apiBase: s.base, retry: fast, stallTimeoutMs: 200 }));
    assert.deepEqual(await api.refs(), { a: C(1) });
    assert.equal(s.seen.length, 2);
  } finally {
    await s.close();
  }
});

test('ref update: a retry that meets our own commit (the lost answer of a first attempt that won) is a success', async () => {
  const mine = { code: 'CONFLICT', message: 'moved', details: { conflicts: [{ ref: 'os/stable', expected: C(1), actual: C(3) }] } };
  const theirs = { code: 'CONFLICT', message: 'moved', details: { conflicts: [{ ref: 'os/stable', expected: C(1), actual: C(4) }] } };
  const s = await scripted([(req) => req.socket.destroy(), json(409, { error: mine }), (req) => req.socket.destroy(), json(409, { error: theirs }), json(409, { error: mine })]);
  try {
    const api = new PushApi(new ApiClient({ apiBase: s.base, retry: fast }));
    assert.deepEqual(await updateRef(api, 'os/stable', C(3), C(1), false), [{ ref: 'os/stable', old: C(1), new: C(3) }]);
    await assert.rejects(updateRef(api, 'os/stable', C(3), C(1), false), (e: Error) => e instanceof ApiError && e.status === 409, 'someone else won');
    await assert.rejects(updateRef(api, 'os/stable', C(3), C(1), false), (e: Error) => e instanceof ApiError && e.status === 409, 'a first-attempt 409 is a real conflict even when it shows our commit');
  } finally {
    await s.close();
  }
});
