import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CairnError } from '../../storage/errors';
import type { Backend, ByteRange } from '../../storage/backends/backend';

/**
 * The storage-driver conformance suite (the distribution/distribution
 * pattern): every Backend implementation runs it through its own
 * `*.test.ts` file, e.g.
 *
 *   backendConformance('FsBackend', async () => { …; return { backend, cleanup } });
 *
 * `makeBackend` must return a fresh, empty backend each time; `cleanup`
 * removes whatever it created. Only the Backend interface is used here, so
 * the same tests hold the fs driver and a future S3 driver to one contract.
 */
export interface BackendUnderTest {
  backend: Backend;
  cleanup: () => Promise<void>;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

async function listAll(b: Backend, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const k of b.list(prefix)) out.push(k);
  return out.sort();
}

async function* chunked(data: Buffer, size: number): AsyncIterable<Buffer> {
  for (let i = 0; i < data.length; i += size) {
    yield data.subarray(i, i + size);
    if ((i / size) % 8 === 0) await new Promise((r) => setImmediate(r));
  }
}

const invalidPath = (e: unknown) => e instanceof CairnError && e.code === 'INVALID_PATH';

/** Keys every driver must refuse with INVALID_PATH. */
export const BAD_KEYS: ReadonlyArray<[string, string]> = [
  ['empty', ''],
  ['dot-dot', '..'],
  ['dot-dot prefix', '../etc/passwd'],
  ['dot-dot inside', 'objects/../../x'],
  ['dot-dot last', 'objects/..'],
  ['dot segment', './config'],
  ['dot inside', 'objects/./x'],
  ['absolute', '/etc/passwd'],
  ['NUL', 'objects/ab\0cd'],
  ['NUL at end', 'config\0'],
  ['backslash', 'objects\\..\\x'],
  ['backslash alone', 'a\\b'],
  ['empty segment', 'objects//x'],
  ['trailing slash', 'objects/'],
  ['over-long key', `${'d/'.repeat(2100)}f`],
  ['over-long segment', `objects/${'x'.repeat(256)}`],
];

export function backendConformance(name: string, makeBackend: () => Promise<BackendUnderTest>): void {
  /** Runs `fn` against a fresh backend and always cleans up. */
  const withBackend = async (fn: (b: Backend) => Promise<void>): Promise<void> => {
    const { backend, cleanup } = await makeBackend();
    try {
      await fn(backend);
    } finally {
      await cleanup();
    }
  };

  describe(`Backend conformance: ${name}`, () => {
    test('write then read, stat and openRead give the same bytes and info', () =>
      withBackend(async (b) => {
        assert.equal(typeof b.location, 'string');
        const data = Buffer.from('[core]\nrepo_version=1\nmode=archive-z2\n');
        await b.write('config', data);
        const r = await b.read('config');
        assert.ok(r);
        assert.deepEqual(r.data, data);
        assert.equal(r.info.size, data.length);
        assert.equal(typeof r.info.version, 'string');
        assert.ok(r.info.version.length > 0);
        assert.ok(Number.isFinite(r.info.mtimeMs) && r.info.mtimeMs > 0);
        const st = await b.stat('config');
        assert.deepEqual(st, r.info);
        const o = await b.openRead('config');
        assert.ok(o);
        assert.deepEqual(o.info, r.info);
        assert.deepEqual(await collect(o.stream), data);
      }));

    test('empty blobs, binary bytes, and keys with +, spaces and unicode', () =>
      withBackend(async (b) => {
        const keys = [
          'deltas/P9/BAaSnoORD8EAu46h2nV5lUm+Tl0s8_+9KSBU2pNqM-LW823s3wgjLN27gsBJOtHPmeXIyPPOh9KIZFcBJ0EZ8/superblock',
          'refs/heads/with space',
          'refs/heads/ünïcødé/ref',
          'refs/heads/pct%2Fencoded',
        ];
        const bin = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        for (const k of keys) await b.write(k, bin);
        await b.write('empty', Buffer.alloc(0));
        for (const k of keys) assert.deepEqual((await b.read(k))?.data, bin, k);
        const e = await b.read('empty');
        assert.ok(e);
        assert.equal(e.data.length, 0);
        assert.equal(e.info.size, 0);
        const eo = await b.openRead('empty');
        assert.ok(eo);
        assert.equal((await collect(eo.stream)).length, 0);
        assert.deepEqual(await listAll(b, ''), [...keys, 'empty'].sort());
      }));

    test('write from an async iterable (streamed, multi-chunk)', () =>
      withBackend(async (b) => {
        const big = Buffer.alloc(3 * 1024 * 1024 + 17);
        for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
        await b.write('objects/ab/big.filez', chunked(big, 65536));
        const r = await b.read('objects/ab/big.filez');
        assert.ok(r);
        assert.equal(r.info.size, big.length);
        assert.equal(createHash('sha256').update(r.data).digest('hex'), createHash('sha256').update(big).digest('hex'));
        // Uint8Array chunks are accepted too
        await b.write('u8', (async function* () {
          yield new Uint8Array([1, 2]);
          yield new Uint8Array([3]);
        })());
        assert.deepEqual((await b.read('u8'))?.data, Buffer.from([1, 2, 3]));
      }));

    test('openReader (optional): positional reads of one version, absent keys null', () =>
      withBackend(async (b) => {
        if (!b.openReader) return; // optional: drivers without it stream with openRead
        assert.equal(await b.openReader('nope'), null);
        const data = Buffer.from('0123456789abcdefghij');
        await b.write('objects/r/reader', data);
        const r = await b.openReader('objects/r/reader');
        assert.ok(r);
        assert.equal(r.info.size, data.length);
        assert.equal(r.info.version, (await b.stat('objects/r/reader'))?.version);
        const buf = Buffer.alloc(8);
        assert.equal(await r.read(buf, 5, 3), 5);
        assert.equal(buf.subarray(0, 5).toString(), '34567');
        assert.equal(await r.read(buf, 8, 16), 4); // short at the end
        assert.equal(buf.subarray(0, 4).toString(), 'ghij');
        assert.equal(await r.read(buf, 8, 20), 0);
        // A replacement of the key does not change what an open reader reads.
        await b.write('objects/r/reader', Buffer.from('ZZZZZZZZZZZZZZZZZZZZ'));
        assert.equal(await r.read(buf, 4, 0), 4);
        assert.equal(buf.subarray(0, 4).toString(), '0123');
        await r.close();
      }));

    test('openRead with byte ranges (inclusive)', () =>
      withBackend(async (b) => {
        const data = Buffer.from('0123456789abcdefghij');
        await b.write('objects/r/range', data);
        const cases: Array<[ByteRange, string]> = [
          [{ start: 0, end: 0 }, '0'],
          [{ start: 0, end: 19 }, '0123456789abcdefghij'],
          [{ start: 5, end: 9 }, '56789'],
          [{ start: 19, end: 19 }, 'j'],
          [{ start: 10, end: 19 }, 'abcdefghij'],
        ];
        for (const [range, want] of cases) {
          const o = await b.openRead('objects/r/range', range);
          assert.ok(o);
          assert.equal(o.info.size, data.length, 'info describes the whole blob');
          assert.equal((await collect(o.stream)).toString(), want, JSON.stringify(range));
        }
        // a large range read streams correctly
        const big = Buffer.alloc(1024 * 1024, 7);
        big.write('tail', big.length - 4);
        await b.write('big', big);
        const o = await b.openRead('big', { start: big.length - 10, end: big.length - 1 });
        assert.ok(o);
        assert.deepEqual(await collect(o.stream), big.subarray(big.length - 10));
      }));

    test('absent keys: stat, read and openRead give null; remove of an absent key is fine', () =>
      withBackend(async (b) => {
        assert.equal(await b.stat('nope'), null);
        assert.equal(await b.read('nope'), null);
        assert.equal(await b.openRead('nope'), null);
        assert.equal(await b.openRead('nope', { start: 0, end: 1 }), null);
        assert.equal(await b.read('objects/zz/absent.commit'), null, 'absent parent folder');
        await b.remove('nope');
        await b.remove('objects/zz/absent.commit');
        await b.write('objects/ab/x', Buffer.from('x'));
        // a "folder" is not a blob
        assert.equal(await b.stat('objects/ab'), null);
        assert.equal(await b.read('objects'), null);
        assert.equal(await b.openRead('objects/ab'), null);
        // a blob is not a folder
        assert.equal(await b.read('objects/ab/x/y'), null);
        assert.equal(await b.stat('objects/ab/x/y'), null);
      }));

    test('remove deletes exactly one key', () =>
      withBackend(async (b) => {
        await b.write('refs/heads/a', Buffer.from('a'));
        await b.write('refs/heads/b', Buffer.from('b'));
        await b.remove('refs/heads/a');
        assert.equal(await b.stat('refs/heads/a'), null);
        assert.equal(await b.read('refs/heads/a'), null);
        assert.deepEqual((await b.read('refs/heads/b'))?.data, Buffer.from('b'));
        assert.deepEqual(await listAll(b, ''), ['refs/heads/b']);
        await b.remove('refs/heads/a');
        // a removed key can be written again
        await b.write('refs/heads/a', Buffer.from('again'));
        assert.deepEqual((await b.read('refs/heads/a'))?.data, Buffer.from('again'));
      }));

    test('remove leaves no folder in the way: a removed key\'s prefixes can become keys', () =>
      withBackend(async (b) => {
        await b.write('x/y/z', Buffer.from('z'));
        await b.remove('x/y/z');
        assert.deepEqual(await listAll(b, 'x/'), []);
        assert.deepEqual(await listAll(b, 'x'), []);
        assert.deepEqual(await listAll(b, ''), []);
        // x/y was a folder of the removed key: now it can be a key
        await b.write('x/y', Buffer.from('y'));
        assert.deepEqual((await b.read('x/y'))?.data, Buffer.from('y'));
        assert.deepEqual(await listAll(b, 'x/'), ['x/y']);
        // and x too, once x/y is gone
        await b.remove('x/y');
        await b.write('x', Buffer.from('x'));
        assert.deepEqual((await b.read('x'))?.data, Buffer.from('x'));
        assert.deepEqual(await listAll(b, ''), ['x']);
        // refs: deleting ref a/b frees the name a, and siblings are untouched
        await b.write('refs/heads/a/b', Buffer.from('ab'));
        await b.write('refs/heads/c/d', Buffer.from('cd'));
        await b.write('refs/heads/c/e/f', Buffer.from('cef'));
        await b.remove('refs/heads/a/b');
        await b.remove('refs/heads/c/e/f');
        await b.write('refs/heads/a', Buffer.from('a'));
        await b.write('refs/heads/c/e', Buffer.from('ce'));
        assert.deepEqual(await listAll(b, 'refs/heads'), ['refs/heads/a', 'refs/heads/c/d', 'refs/heads/c/e']);
      }));

    test('remove racing writes into the folders it prunes: every write succeeds and stays', () =>
      withBackend(async (b) => {
        for (let round = 0; round < 30; round++) {
          await b.write(`p/q${round % 3}/r/old`, Buffer.from('old'));
          const key = `p/q${round % 3}/r/new${round}`;
          await Promise.all([b.remove(`p/q${round % 3}/r/old`), b.write(key, Buffer.from(`new ${round}`))]);
          assert.deepEqual((await b.read(key))?.data, Buffer.from(`new ${round}`), `round ${round}`);
          assert.equal(await b.stat(`p/q${round % 3}/r/old`), null);
          await b.remove(key);
        }
        assert.deepEqual(await listAll(b, ''), []);
      }));

    test('list: recursive, full keys, empty prefix, prefix with and without trailing slash', () =>
      withBackend(async (b) => {
        assert.deepEqual(await listAll(b, ''), [], 'a fresh backend is empty');
        const keys = [
          'config',
          'summary',
          'refs/heads/main',
          'refs/heads/sample/main',
          'refs/heads/sample/deep/er/ref',
          'refs/mirrors/org.example/main',
          'objects/3f/d0406929e83910fc100bb8ea1da75799549be4e5d2cf3ffbd292054da936a3.commit',
          'objects/3f/d0406929e83910fc100bb8ea1da75799549be4e5d2cf3ffbd292054da936a3.commitmeta',
          'objects/44/6a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488.dirmeta',
          'refsx/not-under-refs',
        ];
        for (const k of keys) await b.write(k, Buffer.from(k));
        assert.deepEqual(await listAll(b, ''), [...keys].sort());
        const heads = keys.filter((k) => k.startsWith('refs/heads/')).sort();
        assert.deepEqual(await listAll(b, 'refs/heads'), heads);
        assert.deepEqual(await listAll(b, 'refs/heads/'), heads);
        assert.deepEqual(await listAll(b, 'refs'), keys.filter((k) => k.startsWith('refs/')).sort());
        assert.deepEqual(await listAll(b, 'objects/3f/'), keys.filter((k) => k.startsWith('objects/3f/')).sort());
        assert.deepEqual(await listAll(b, 'refs/heads/sample/deep'), ['refs/heads/sample/deep/er/ref']);
        assert.deepEqual(await listAll(b, 'nothing'), [], 'absent prefix');
        assert.deepEqual(await listAll(b, 'nothing/'), []);
        assert.deepEqual(await listAll(b, 'deltas/P9'), []);
        // removals show up
        await b.remove('refs/heads/main');
        assert.deepEqual(await listAll(b, 'refs/heads'), heads.filter((k) => k !== 'refs/heads/main'));
      }));

    test('list refuses escaping prefixes', () =>
      withBackend(async (b) => {
        for (const p of ['..', '../', '/etc', 'a/../..', 'a\0b', 'a\\b']) {
          await assert.rejects(listAll(b, p), invalidPath, JSON.stringify(p));
        }
      }));

    test('invalid keys are refused with INVALID_PATH by every method', () =>
      withBackend(async (b) => {
        for (const [why, key] of BAD_KEYS) {
          await assert.rejects(b.write(key, Buffer.from('x')), invalidPath, `write: ${why}`);
          await assert.rejects(b.read(key), invalidPath, `read: ${why}`);
          await assert.rejects(b.stat(key), invalidPath, `stat: ${why}`);
          await assert.rejects(b.openRead(key), invalidPath, `openRead: ${why}`);
          await assert.rejects(b.remove(key), invalidPath, `remove: ${why}`);
        }
        // and nothing was written anywhere
        assert.deepEqual(await listAll(b, ''), []);
        // the longest legal segment is fine
        const ok = `objects/${'x'.repeat(255)}`;
        await b.write(ok, Buffer.from('ok'));
        assert.deepEqual((await b.read(ok))?.data, Buffer.from('ok'));
      }));

    test('replacing content changes version (and size); the new bytes are read', () =>
      withBackend(async (b) => {
        await b.write('refs/heads/main', Buffer.from('a'.repeat(64) + '\n'));
        const v1 = await b.stat('refs/heads/main');
        assert.ok(v1);
        // same size, different bytes: the validator must still change
        await b.write('refs/heads/main', Buffer.from('b'.repeat(64) + '\n'));
        const v2 = await b.stat('refs/heads/main');
        assert.ok(v2);
        assert.equal(v2.size, v1.size);
        assert.notEqual(v2.version, v1.version);
        assert.equal((await b.read('refs/heads/main'))?.data.toString(), 'b'.repeat(64) + '\n');
        await b.write('refs/heads/main', Buffer.from('short'));
        const v3 = await b.stat('refs/heads/main');
        assert.ok(v3);
        assert.equal(v3.size, 5);
        assert.notEqual(v3.version, v2.version);
        assert.notEqual(v3.version, v1.version);
        // an untouched blob keeps its version
        assert.equal((await b.stat('refs/heads/main'))?.version, v3.version);
      }));

    test('overwrite is atomic: concurrent readers never see partial or mixed content', () =>
      withBackend(async (b) => {
        const A = Buffer.alloc(200 * 1024, 0x61);
        const B = Buffer.alloc(37 * 1024 + 3, 0x62);
        const C = Buffer.alloc(0);
        const versions = [A, B, C];
        const check = (data: Buffer, how: string): void => {
          const ok = versions.some((v) => v.length === data.length && v.equals(data));
          if (!ok) assert.fail(`${how} saw ${data.length} bytes starting ${data.subarray(0, 8).toString('hex')}: a partial or mixed blob`);
        };
        await b.write('summary', A);
        let done = false;
        let reads = 0;
        const reader = async (how: 'read' | 'stream' | 'range'): Promise<void> => {
          while (!done) {
            if (how === 'read') {
              const r = await b.read('summary');
              assert.ok(r, 'the key never disappears during a replace');
              check(r.data, how);
              assert.equal(r.info.size, r.data.length, 'info matches the bytes returned');
            } else if (how === 'stream') {
              const o = await b.openRead('summary');
              assert.ok(o, 'the key never disappears during a replace');
              const data = await collect(o.stream);
              check(data, how);
              assert.equal(o.info.size, data.length, 'info matches the bytes streamed');
            } else {
              const o = await b.openRead('summary', { start: 0, end: 1023 });
              assert.ok(o);
              const data = await collect(o.stream);
              const whole = versions.find((v) => v.length === o.info.size);
              assert.ok(whole, `size ${o.info.size} is one of the versions`);
              assert.deepEqual(data, whole.subarray(0, 1024));
            }
            reads++;
          }
        };
        const writer = async (): Promise<void> => {
          try {
            for (let i = 0; i < 150; i++) {
              const v = versions[i % versions.length]!;
              await b.write('summary', i % 2 ? v : chunked(v, 16 * 1024));
            }
          } finally {
            done = true;
          }
        };
        await Promise.all([writer(), reader('read'), reader('stream'), reader('range'), reader('read')]);
        assert.ok(reads > 20, `readers ran concurrently (${reads} reads)`);
        assert.deepEqual(await listAll(b, ''), ['summary'], 'no temporary leftovers');
      }));

    test('concurrent writers to one key: the result is exactly one of them', () =>
      withBackend(async (b) => {
        const payloads = Array.from({ length: 8 }, (_, i) => Buffer.alloc(50_000 + i * 1000, 0x30 + i));
        await Promise.all(payloads.map((p, i) => b.write('refs/heads/race', i % 2 ? p : chunked(p, 4096))));
        const r = await b.read('refs/heads/race');
        assert.ok(r);
        assert.ok(payloads.some((p) => p.equals(r.data)), 'one whole payload won');
        assert.deepEqual(await listAll(b, ''), ['refs/heads/race']);
      }));

    test('a failing source stream leaves no partial blob and no leftovers', () =>
      withBackend(async (b) => {
        const failing = async function* (): AsyncIterable<Buffer> {
          yield Buffer.alloc(64 * 1024, 1);
          await new Promise((r) => setImmediate(r));
          yield Buffer.alloc(64 * 1024, 2);
          throw new Error('source broke');
        };
        // new key: stays absent
        await assert.rejects(b.write('objects/aa/new.filez', failing()));
        assert.equal(await b.stat('objects/aa/new.filez'), null);
        assert.equal(await b.read('objects/aa/new.filez'), null);
        assert.deepEqual(await listAll(b, ''), []);
        // existing key: keeps its old bytes and version
        await b.write('summary', Buffer.from('old summary'));
        const before = await b.stat('summary');
        await assert.rejects(b.write('summary', failing()));
        const after = await b.read('summary');
        assert.ok(after);
        assert.equal(after.data.toString(), 'old summary');
        assert.equal(after.info.version, before?.version);
        // a source failing before its first chunk
        await assert.rejects(
          b.write(
            'summary',
            (async function* () {
              throw new Error('no data at all');
            })(),
          ),
        );
        assert.equal((await b.read('summary'))?.data.toString(), 'old summary');
        assert.deepEqual(await listAll(b, ''), ['summary'], 'nothing but the real key is visible');
        // and the backend still works afterwards
        await b.write('objects/aa/new.filez', Buffer.from('fine'));
        assert.equal((await b.read('objects/aa/new.filez'))?.data.toString(), 'fine');
      }));
  });
}
