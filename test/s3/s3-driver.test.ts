import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { CairnError } from '../../storage/errors';
import { FsBackend } from '../../storage/backends/fs';
import { S3Backend, makeS3Client, parseS3Url } from '../../storage/backends/s3';
import { backendFor, childLocation, childNames, locationKind, stateStore } from '../../storage/backends/factory';
import { full } from '../../storage/backends/full';
import { emptyPrefix, freshPrefix, s3TestStore, type S3TestStore } from './ceph';

// S3-specific behaviour of the driver against a real Ceph RADOS Gateway,
// beyond the conformance suite (test/unit/backend-conformance-s3.test.ts).

const MiB = 1024 * 1024;
let store: S3TestStore;
const prefixes: string[] = [];

before(async () => {
  store = await s3TestStore();
});
after(async () => {
  for (const p of prefixes) await emptyPrefix(store, p);
});

function fresh(what: string, opts: ConstructorParameters<typeof S3Backend>[3] = {}): S3Backend {
  const prefix = freshPrefix(what);
  prefixes.push(prefix);
  return new S3Backend(store.client, store.bucket, prefix, { partSize: 5 * MiB, ...opts });
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

async function* chunked(data: Buffer, size: number): AsyncIterable<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function uploadsUnder(prefix: string): Promise<number> {
  const r = await store.client.send(new ListMultipartUploadsCommand({ Bucket: store.bucket, Prefix: prefix }));
  return (r.Uploads ?? []).length;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('S3 locations and the driver factory', () => {
  test('parseS3Url', () => {
    assert.deepEqual(parseS3Url('s3://bucket'), { bucket: 'bucket', prefix: '' });
    assert.deepEqual(parseS3Url('s3://bucket/'), { bucket: 'bucket', prefix: '' });
    assert.deepEqual(parseS3Url('s3://my.bucket-1/a/b/'), { bucket: 'my.bucket-1', prefix: 'a/b/' });
    for (const bad of ['s3://', 's3://B', 's3://a', 'http://bucket/x', 's3://bucket/../x', 's3://bucket/a//b', 's3://bucket/a\0b']) {
      assert.throws(() => parseS3Url(bad), (e: unknown) => e instanceof CairnError, bad);
    }
  });

  test('backendFor: a path, file:// or s3://; anything else refused; childLocation', () => {
    assert.ok(backendFor('/tmp/cairn-x') instanceof FsBackend);
    assert.equal(backendFor('file:///tmp/cairn%20x').location, '/tmp/cairn x');
    const s3 = backendFor('s3://cairn-tests/repos/main', { s3Client: store.settings });
    assert.ok(s3 instanceof S3Backend);
    assert.equal(s3.location, 's3://cairn-tests/repos/main/');
    assert.equal(locationKind('s3://bkt/x'), 's3');
    assert.equal(locationKind('./data'), 'fs');
    assert.throws(() => backendFor('http://example/x'), (e: unknown) => e instanceof CairnError && e.code === 'INVALID_ARGUMENT');
    assert.throws(() => backendFor(''), (e: unknown) => e instanceof CairnError);
    assert.equal(childLocation('s3://bkt/data', 'repos/main'), 's3://bkt/data/repos/main');
    assert.equal(childLocation('s3://bkt', 'repos/main'), 's3://bkt/repos/main');
    assert.equal(childLocation('/srv/data', 'repos/main'), '/srv/data/repos/main');
    assert.throws(() => childLocation('s3://bkt/data', '../other'), (e: unknown) => e instanceof CairnError && e.code === 'INVALID_PATH');
  });

  test('backendFor s3:// takes the endpoint from CAIRN_S3_ENDPOINT and credentials from the standard AWS variables', async () => {
    const saved = { ...process.env };
    try {
      process.env.AWS_ACCESS_KEY_ID = store.settings.credentials!.accessKeyId;
      process.env.AWS_SECRET_ACCESS_KEY = store.settings.credentials!.secretAccessKey;
      process.env.AWS_REGION = 'us-east-1';
      const prefix = freshPrefix('factory');
      prefixes.push(prefix);
      const b = backendFor(`s3://${store.bucket}/${prefix}`, { env: { CAIRN_S3_ENDPOINT: store.settings.endpoint } });
      await b.write('config', Buffer.from('[core]\n'));
      assert.equal((await b.read('config'))?.data.toString(), '[core]\n');
      // the same bytes through the test's own client: one store
      const direct = new S3Backend(store.client, store.bucket, prefix);
      assert.equal((await direct.read('config'))?.data.toString(), '[core]\n');
      // wrong credentials fail with a typed IO error, not a crash
      const bad = backendFor(`s3://${store.bucket}/${prefix}`, { s3Client: { ...store.settings, credentials: { accessKeyId: 'nobody', secretAccessKey: 'nothing' } } });
      await assert.rejects(bad.read('config'), (e: unknown) => e instanceof CairnError && e.code === 'IO');
    } finally {
      process.env = saved;
    }
  });
});

describe('S3Backend against Ceph RGW', () => {
  test('multipart: a streamed 11 MiB write goes in 5 MiB parts, its ETag checked; ranged reads across parts', async () => {
    const b = fresh('multipart');
    const big = Buffer.alloc(11 * MiB + 3);
    for (let i = 0; i + 4 <= big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
    await b.write('objects/ab/big.filez', chunked(big, 300_000));
    const info = await b.stat('objects/ab/big.filez');
    assert.ok(info);
    assert.equal(info.size, big.length);
    assert.match(info.version, /^[0-9a-f]{32}-3$/, 'three parts');
    assert.equal(sha((await b.read('objects/ab/big.filez'))!.data), sha(big));
    const o = await b.openRead('objects/ab/big.filez', { start: 5 * MiB - 10, end: 5 * MiB + 9 });
    assert.ok(o);
    assert.deepEqual(await collect(o.stream), big.subarray(5 * MiB - 10, 5 * MiB + 10));
    const r = await b.openReader('objects/ab/big.filez');
    assert.ok(r);
    const buf = Buffer.alloc(64 * 1024);
    assert.equal(await r.read(buf, buf.length, 10 * MiB), buf.length);
    assert.deepEqual(buf, big.subarray(10 * MiB, 10 * MiB + buf.length));
    await r.close();
    // a big Buffer takes the same path; create() of an existing big key writes nothing
    await b.write('objects/ab/buf.filez', big);
    assert.match((await b.stat('objects/ab/buf.filez'))!.version, /-3$/);
    assert.equal(await b.create('objects/ab/buf.filez', chunked(Buffer.alloc(6 * MiB, 1), MiB)), false);
    assert.equal((await b.stat('objects/ab/buf.filez'))!.size, big.length);
    assert.equal(await b.create('objects/ab/new.filez', chunked(big, MiB)), true);
    assert.equal(sha((await b.read('objects/ab/new.filez'))!.data), sha(big));
    assert.equal(await uploadsUnder(b.prefix), 0, 'no upload left open');
  });

  test('a source failing in the middle of a multipart upload leaves no object and aborts the upload', async () => {
    const b = fresh('multipart-fail');
    await b.write('objects/cd/x.filez', Buffer.from('old'));
    const failing = async function* (): AsyncIterable<Buffer> {
      for (let i = 0; i < 12; i++) yield Buffer.alloc(MiB, i);
      throw new Error('source broke');
    };
    await assert.rejects(b.write('objects/cd/x.filez', failing()));
    await assert.rejects(b.write('objects/cd/y.filez', failing()));
    assert.equal((await b.read('objects/cd/x.filez'))?.data.toString(), 'old');
    assert.equal(await b.stat('objects/cd/y.filez'), null);
    assert.equal(await uploadsUnder(b.prefix), 0);
  });

  test('bytes changed on the way are refused by their digest (Content-MD5): nothing is stored', async () => {
    const prefix = freshPrefix('digest');
    prefixes.push(prefix);
    const client = makeS3Client(store.settings);
    // Flip one byte of every body after the driver computed its digest.
    client.middlewareStack.add(
      (next) => async (args) => {
        const req = (args as { request?: { body?: unknown } }).request;
        if (req && Buffer.isBuffer(req.body) && req.body.length > 0) {
          const copy = Buffer.from(req.body);
          copy[copy.length >> 1] ^= 0xff;
          req.body = copy;
        }
        return next(args);
      },
      { step: 'finalizeRequest', name: 'corrupt-body' },
    );
    const b = new S3Backend(client, store.bucket, prefix, { partSize: 5 * MiB });
    await assert.rejects(b.write('objects/ef/small.filez', Buffer.from('some bytes')), (e: unknown) => e instanceof CairnError && e.code === 'IO');
    await assert.rejects(b.write('objects/ef/big.filez', chunked(Buffer.alloc(6 * MiB, 7), MiB)), (e: unknown) => e instanceof CairnError && e.code === 'IO');
    const clean = new S3Backend(store.client, store.bucket, prefix);
    assert.equal(await clean.stat('objects/ef/small.filez'), null);
    assert.equal(await clean.stat('objects/ef/big.filez'), null);
    assert.equal(await uploadsUnder(prefix), 0);
  });

  test('a conditional PUT that landed but whose answer was lost (the SDK retries it): reported as won, not lost', async () => {
    const prefix = freshPrefix('lost-answer');
    prefixes.push(prefix);
    const client = makeS3Client(store.settings);
    let drop = 0;
    // Below the SDK's retry loop: the request reaches the store, then its answer "is lost".
    client.middlewareStack.add(
      (next) => async (args) => {
        const r = await next(args);
        const req = (args as { request?: { method?: string } }).request;
        if (drop > 0 && req?.method === 'PUT') {
          drop--;
          throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET', $metadata: {} });
        }
        return r;
      },
      { step: 'deserialize', name: 'lose-answer' },
    );
    const b = new S3Backend(client, store.bucket, prefix);
    drop = 1;
    assert.equal(await b.create('objects/ab/x.commit', Buffer.from('commit bytes')), true);
    drop = 1;
    const v1 = (await b.stat('objects/ab/x.commit'))!.version;
    const v2 = await b.compareAndSwap('objects/ab/x.commit', Buffer.from('other bytes'), v1);
    assert.ok(v2, 'the swap that landed is reported as won');
    assert.equal((await b.read('objects/ab/x.commit'))?.data.toString(), 'other bytes');
    assert.equal(drop, 0, 'an answer was dropped each time');
    // a real loss stays a loss
    assert.equal(await b.compareAndSwap('objects/ab/x.commit', Buffer.from('third'), v1), null);
  });

  test('list pages through more than 1000 keys', async () => {
    const b = fresh('paging');
    const keys = Array.from({ length: 1234 }, (_, i) => `objects/${(i % 256).toString(16).padStart(2, '0')}/${i}.dirmeta`);
    for (let i = 0; i < keys.length; i += 64) await Promise.all(keys.slice(i, i + 64).map((k) => b.write(k, Buffer.from(k))));
    await b.write('objectsx', Buffer.from('not under objects/'));
    const got: string[] = [];
    for await (const k of b.list('objects')) got.push(k);
    assert.equal(got.length, keys.length);
    assert.deepEqual(got.sort(), [...keys].sort());
  });

  test('openRead past the end reads nothing (as the filesystem); openReader fails with CONFLICT after a replacement', async () => {
    const b = fresh('ranges');
    await b.write('k', Buffer.from('0123456789'));
    const o = await b.openRead('k', { start: 20, end: 30 });
    assert.ok(o);
    assert.equal(o.info.size, 10);
    assert.equal((await collect(o.stream)).length, 0);
    await b.write('e', Buffer.alloc(0));
    const e = await b.openRead('e', { start: 0, end: 1023 });
    assert.ok(e);
    assert.equal(e.info.size, 0);
    assert.equal((await collect(e.stream)).length, 0);
    const r = await b.openReader('k');
    assert.ok(r);
    await b.write('k', Buffer.from('abcdefghij'));
    await assert.rejects(r.read(Buffer.alloc(4), 4, 0), (err: unknown) => err instanceof CairnError && err.code === 'CONFLICT');
    await b.remove('k');
    await assert.rejects(r.read(Buffer.alloc(4), 4, 0), (err: unknown) => err instanceof CairnError && err.code === 'CONFLICT');
  });

  test('compareAndSwap of a record another client wrote: the ETag is the version, unquoted', async () => {
    const b = fresh('cas-foreign');
    const put = await store.client.send(new PutObjectCommand({ Bucket: store.bucket, Key: `${b.prefix}refs/heads/main`, Body: 'x\n' }));
    const version = (await b.stat('refs/heads/main'))!.version;
    assert.equal(`"${version}"`, put.ETag);
    assert.ok(await b.compareAndSwap('refs/heads/main', Buffer.from('y\n'), version));
    assert.equal(await b.compareAndSwap('refs/heads/main', Buffer.from('z\n'), version), null);
    assert.equal((await b.read('refs/heads/main'))?.data.toString(), 'y\n');
  });

  test('locks: a live holder keeps its lease past several lease times; a dead holder\'s lease is taken over after one lease; waiting is bounded', async () => {
    const a = fresh('locks', { lockLeaseMs: 600 });
    const other = new S3Backend(store.client, store.bucket, a.prefix, { lockLeaseMs: 600 }); // another replica on the same prefix
    const releaseA = await a.lock('refs');
    const t0 = Date.now();
    let tookAt = 0;
    const waiter = other.lock('refs').then((r) => {
      tookAt = Date.now() - t0;
      return r;
    });
    await new Promise((r) => setTimeout(r, 2000)); // more than three leases: A renews meanwhile
    assert.equal(tookAt, 0, 'the waiter did not take a lock whose holder renews it');
    await releaseA();
    const releaseB = await waiter;
    assert.ok(tookAt >= 2000, `taken after the release (${tookAt} ms)`);
    // bounded waiting
    const impatient = new S3Backend(store.client, store.bucket, a.prefix, { lockLeaseMs: 600, lockTimeoutMs: 300 });
    await assert.rejects(impatient.lock('refs'), (e: unknown) => e instanceof CairnError && e.code === 'IO');
    await releaseB();
    // a holder that died (its record stays 'held', never renewed): taken over after one lease, not before
    await a.write('tmp/cairn-summary.lock', Buffer.from(JSON.stringify({ host: 'gone', pid: 1, token: 'dead', state: 'held', seq: 7 }) + '\n'));
    const t1 = Date.now();
    const releaseC = await other.lock('summary');
    const waited = Date.now() - t1;
    assert.ok(waited >= 600, `waited a lease (${waited} ms)`);
    assert.ok(waited < 5000, `not much longer (${waited} ms)`);
    const rec = JSON.parse((await a.read('tmp/cairn-summary.lock'))!.data.toString()) as { state: string; token: string };
    assert.equal(rec.state, 'held');
    assert.notEqual(rec.token, 'dead');
    await releaseC();
    assert.equal(JSON.parse((await a.read('tmp/cairn-summary.lock'))!.data.toString()).state, 'released');
  });

  test('a holder whose lease was taken over stops renewing and its release changes nothing', async () => {
    const a = fresh('locks-lost', { lockLeaseMs: 400 });
    const releaseA = await a.lock('refs');
    // Someone breaks in (as a waiter would after A stalled for a lease): a compare-and-swap on A's record.
    const cur = (await a.read('tmp/cairn-refs.lock'))!;
    const breaker = Buffer.from(JSON.stringify({ host: 'b', pid: 2, token: 'breaker', state: 'held', seq: 0 }) + '\n');
    assert.ok(await a.compareAndSwap('tmp/cairn-refs.lock', breaker, cur.info.version));
    await new Promise((r) => setTimeout(r, 600)); // A's next renewals find another version: they stop
    await releaseA();
    assert.deepEqual((await a.read('tmp/cairn-refs.lock'))!.data, breaker, "the breaker's record stands");
  });

  test('sweep removes prepared writes that were never committed and uploads left open, once older than the grace', async () => {
    const b = fresh('sweep');
    const p = await b.prepare('summary', Buffer.from('never committed')); // a writer that died before commit
    void p;
    const upload = await store.client.send(new CreateMultipartUploadCommand({ Bucket: store.bucket, Key: `${b.prefix}objects/aa/dead.filez` }));
    assert.ok(upload.UploadId);
    await b.write('objects/aa/live.filez', Buffer.from('live'));
    assert.deepEqual(await b.sweep(), [], 'younger than the default grace (1 h)');
    await new Promise((r) => setTimeout(r, 1100)); // Last-Modified has whole seconds
    const removed = await b.sweep({ graceMs: 0 });
    assert.equal(removed.length, 2, removed.join('\n'));
    assert.match(removed.join('\n'), /removed temporary object tmp\/cairn-s3-.*\.tmp/);
    assert.match(removed.join('\n'), /aborted multipart upload of objects\/aa\/dead\.filez/);
    const left: string[] = [];
    for await (const k of b.list('')) left.push(k);
    assert.deepEqual(left, ['objects/aa/live.filez']);
    assert.equal(await uploadsUnder(b.prefix), 0);
    assert.equal(await b.stat('summary'), null);
  });

  test('childNames lists the "folders" below a key (common prefixes, sorted), none when absent; stateStore of an s3:// location is the S3 driver', async () => {
    const b = fresh('children');
    const location = `s3://${store.bucket}/${b.prefix.replace(/\/$/, '')}`;
    assert.deepEqual(await childNames(location, 'repos', { s3Client: store.settings }), []);
    for (const k of ['repos/b/config', 'repos/a/config', 'repos/a/objects/ab/x.commit', 'repos/c d/config', 'reposx/z/config', 'repos/loose']) await b.write(k, Buffer.from(k));
    assert.deepEqual(await childNames(location, 'repos', { s3Client: store.settings }), ['a', 'b', 'c d']);
    const state = stateStore(location, { s3Client: store.settings });
    assert.equal(state.blocking, false);
    assert.equal(state.location, b.location);
    assert.equal((await state.read('repos/a/config'))?.data.toString(), 'repos/a/config');
  });

  test('S3Backend is a whole Backend itself (full() returns it unwrapped); statFast is a promise', async () => {
    const b = fresh('full');
    const f = full(b);
    assert.equal(f, b);
    assert.equal(f.blocking, false);
    assert.ok(f.statFast('x') instanceof Promise);
    assert.equal(await f.statFast('x'), null);
  });
});
