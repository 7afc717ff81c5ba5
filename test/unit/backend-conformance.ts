import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CairnError } from '../../storage/errors';
import type { Backend, ByteRange } from '../../storage/backends/backend';
import { full } from '../../storage/backends/full';

/**
 * The storage-driver conformance suite (the distribution/distribution
 * pattern): every Backend implementation runs it through its own
 * `*.test.ts` file, e.g.
 *
 *   backendConformance('FsBackend', async () => { …; return { backend, cleanup } });
 *
 * `makeBackend` must return a fresh, empty backend each time; `cleanup`
 * removes whatever it created. Only the Backend interface is used here, so
 * the same tests hold the fs driver and the S3 driver to one contract. The
 * methods beyond a driver's own (write-once create, compare-and-swap, locks,
 * prepared writes, positional readers) are tested through `full(backend)`
 * (storage/backends/full.ts), which passes through what a driver has
 * natively (S3: If-None-Match / If-Match) and supplies the rest.
 */
export interface ConformanceOptions {
  /**
   * Whether a driver's own openReader keeps reading the version it opened
   * after the key is replaced (the filesystem: an open descriptor; default
   * true). When false (S3 without bucket versioning) a read after the
   * replacement must fail with CONFLICT instead; it never returns other bytes.
   */
  readerKeepsReplacedVersion?: boolean;
}
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

export function backendConformance(name: string, makeBackend: () => Promise<BackendUnderTest>, opts: ConformanceOptions = {}): void {
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

    test('openReader (the driver\'s or full()\'s): positional reads of one version, absent keys null', () =>
      withBackend(async (b) => {
        const f = full(b);
        assert.equal(await f.openReader('nope'), null);
        const data = Buffer.from('0123456789abcdefghij');
        await b.write('objects/r/reader', data);
        const r = await f.openReader('objects/r/reader');
        assert.ok(r);
        assert.equal(r.info.size, data.length);
        assert.equal(r.info.version, (await b.stat('objects/r/reader'))?.version);
        const buf = Buffer.alloc(8);
        assert.equal(await r.read(buf, 5, 3), 5);
        assert.equal(buf.subarray(0, 5).toString(), '34567');
        assert.equal(await r.read(buf, 8, 16), 4); // short at the end
        assert.equal(buf.subarray(0, 4).toString(), 'ghij');
        assert.equal(await r.read(buf, 8, 20), 0);
        // A replacement of the key never makes an open reader read other bytes:
        // it reads the version it opened, or (drivers that cannot keep it) fails with CONFLICT.
        await b.write('objects/r/reader', Buffer.from('ZZZZZZZZZZZZZZZZZZZZ'));
        const strict = opts.readerKeepsReplacedVersion !== false;
        try {
          assert.equal(await r.read(buf, 4, 0), 4);
          assert.equal(buf.subarray(0, 4).toString(), '0123');
        } catch (e) {
          if (strict || !(e instanceof CairnError && e.code === 'CONFLICT')) throw e;
        }
        await r.close();
        // a reader of an empty blob reads nothing
        await b.write('objects/r/empty', Buffer.alloc(0));
        const er = await f.openReader('objects/r/empty');
        assert.ok(er);
        assert.equal(er.info.size, 0);
        assert.equal(await er.read(buf, 8, 0), 0);
        await er.close();
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

    test('removeMany: no keys, absent and repeated keys, keys in several folders; exactly those go, and their folders as remove does', () =>
      withBackend(async (b) => {
        await b.removeMany([]);
        const doomed = [
          'objects/aa/1111.filez',
          'objects/aa/2222.dirtree',
          'objects/ab/3333.commit',
          'state/3333.commitpartial',
          'refs/heads/a/b',
          'x/y/z',
          'refs/heads/with space+plus',
          'refs/heads/ünïcødé/ref',
        ];
        const kept = ['objects/aa/keep.filez', 'objects/ac/keep.commit', 'refs/heads/c/d', 'x/w'];
        for (const k of [...doomed, ...kept]) await b.write(k, Buffer.from(k));
        await b.removeMany([...doomed, 'absent', 'objects/zz/absent.commit', doomed[0]!, 'x/y/z']);
        assert.deepEqual(await listAll(b, ''), [...kept].sort());
        for (const k of doomed) assert.equal(await b.stat(k), null, k);
        for (const k of kept) assert.deepEqual((await b.read(k))?.data, Buffer.from(k), k);
        // no folder in the way: the removed keys' prefixes can become keys
        await b.write('x/y', Buffer.from('y'));
        await b.write('refs/heads/a', Buffer.from('a'));
        await b.write('objects/ab', Buffer.from('ab'));
        assert.deepEqual(await listAll(b, 'x'), ['x/w', 'x/y']);
        assert.deepEqual((await b.read('refs/heads/a'))?.data, Buffer.from('a'));
        // removing everything left, absent keys among them, leaves nothing
        await b.removeMany([...kept, 'x/y', 'refs/heads/a', 'objects/ab', ...doomed]);
        assert.deepEqual(await listAll(b, ''), []);
        await b.removeMany(['absent']);
      }));

    test('removeMany: an invalid key among valid ones is refused with INVALID_PATH before anything is removed', () =>
      withBackend(async (b) => {
        await b.write('objects/aa/1.filez', Buffer.from('1'));
        await b.write('refs/heads/main', Buffer.from('m'));
        for (const [why, key] of BAD_KEYS) {
          await assert.rejects(b.removeMany(['objects/aa/1.filez', key, 'refs/heads/main']), invalidPath, why);
        }
        assert.deepEqual(await listAll(b, ''), ['objects/aa/1.filez', 'refs/heads/main']);
      }));

    test('removeMany: more than 1,000 keys (S3: several DeleteObjects requests) over many folders, and absent ones among them', () =>
      withBackend(async (b) => {
        const keys = Array.from({ length: 1500 }, (_, i) => `objects/${(i % 40).toString(16).padStart(2, '0')}/${i.toString().padStart(62, '0')}.filez`);
        const kept = keys.filter((_, i) => i % 500 === 7);
        let next = 0;
        await Promise.all(
          Array.from({ length: 16 }, async () => {
            while (next < keys.length) {
              const k = keys[next++]!;
              await b.write(k, Buffer.from('x'));
            }
          }),
        );
        const doomed = keys.filter((k) => !kept.includes(k));
        await b.removeMany([...doomed, ...Array.from({ length: 50 }, (_, i) => `objects/ff/absent-${i}.filez`)]);
        assert.deepEqual(await listAll(b, ''), [...kept].sort());
        await b.removeMany(kept);
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
          await assert.rejects(b.removeMany([key]), invalidPath, `removeMany: ${why}`);
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

    test('statFast and readFast (full(): the driver\'s statNow/readNow or a promise) agree with stat and read', () =>
      withBackend(async (b) => {
        const f = full(b);
        await b.write('refs/heads/main', Buffer.from('x'.repeat(64) + '\n'));
        assert.deepEqual(await f.statFast('refs/heads/main'), await b.stat('refs/heads/main'));
        assert.deepEqual(await f.readFast('refs/heads/main'), await b.read('refs/heads/main'));
        assert.equal(await f.statFast('refs/heads/nope'), null);
        assert.equal(await f.readFast('refs/heads/nope'), null);
        if (f.blocking) assert.ok(!(f.statFast('refs/heads/main') instanceof Promise), 'a blocking driver answers at once');
      }));

    test('create writes once: an existing key is left untouched; concurrent creators have exactly one winner', () =>
      withBackend(async (b) => {
        const f = full(b);
        const key = 'objects/3f/d0406929e83910fc100bb8ea1da75799549be4e5d2cf3ffbd292054da936a3.commit';
        assert.equal(await f.create(key, Buffer.from('first')), true);
        const v = await b.stat(key);
        assert.equal(await f.create(key, Buffer.from('second')), false);
        assert.equal((await b.read(key))?.data.toString(), 'first');
        assert.equal((await b.stat(key))?.version, v?.version, 'not rewritten');
        // streamed sources too
        assert.equal(await f.create('objects/ab/streamed.filez', chunked(Buffer.alloc(300_000, 5), 65536)), true);
        assert.equal(await f.create('objects/ab/streamed.filez', chunked(Buffer.alloc(300_000, 6), 65536)), false);
        assert.deepEqual((await b.read('objects/ab/streamed.filez'))?.data, Buffer.alloc(300_000, 5));
        // concurrent creators of one new key: exactly one wins, and its bytes are there
        const payloads = Array.from({ length: 6 }, (_, i) => Buffer.alloc(10_000 + i, 0x41 + i));
        const won = await Promise.all(payloads.map((p) => f.create('objects/cd/race.dirtree', p)));
        assert.equal(won.filter(Boolean).length, 1, `winners: ${JSON.stringify(won)}`);
        assert.deepEqual((await b.read('objects/cd/race.dirtree'))?.data, payloads[won.indexOf(true)]);
        // a removed key can be created again; invalid keys are refused
        await b.remove(key);
        assert.equal(await f.create(key, Buffer.from('again')), true);
        await assert.rejects(f.create('../x', Buffer.from('x')), invalidPath);
        assert.deepEqual(await listAll(b, 'objects'), [key, 'objects/ab/streamed.filez', 'objects/cd/race.dirtree'].sort());
      }));

    test('compareAndSwap: replaces only the expected version; null expects absence', () =>
      withBackend(async (b) => {
        const f = full(b);
        const v1 = await f.compareAndSwap('refs/heads/main', Buffer.from('a\n'), null);
        assert.ok(v1, 'created while absent');
        assert.equal((await b.stat('refs/heads/main'))?.version, v1, 'the version returned is the stored one');
        assert.equal(await f.compareAndSwap('refs/heads/main', Buffer.from('b\n'), null), null, 'not absent any more');
        const v2 = await f.compareAndSwap('refs/heads/main', Buffer.from('b\n'), v1);
        assert.ok(v2);
        assert.notEqual(v2, v1);
        assert.equal((await b.read('refs/heads/main'))?.data.toString(), 'b\n');
        // a stale expectation changes nothing
        assert.equal(await f.compareAndSwap('refs/heads/main', Buffer.from('c\n'), v1), null);
        assert.equal((await b.read('refs/heads/main'))?.data.toString(), 'b\n');
        assert.equal((await b.stat('refs/heads/main'))?.version, v2);
        // an expectation on an absent key fails
        assert.equal(await f.compareAndSwap('refs/heads/other', Buffer.from('x\n'), v2), null);
        assert.equal(await b.stat('refs/heads/other'), null);
        // a plain write() changes the version: a compare-and-swap against the old one loses
        await b.write('refs/heads/main', Buffer.from('w\n'));
        assert.equal(await f.compareAndSwap('refs/heads/main', Buffer.from('d\n'), v2), null);
        assert.equal((await b.read('refs/heads/main'))?.data.toString(), 'w\n');
        await assert.rejects(f.compareAndSwap('refs/../../x', Buffer.from('x'), null), invalidPath);
      }));

    test('compareAndSwap: two (and eight) concurrent writers from one version, exactly one wins; no update is lost', () =>
      withBackend(async (b) => {
        const f = full(b);
        const v0 = await f.compareAndSwap('summary', Buffer.from('0'), null);
        assert.ok(v0);
        for (const n of [2, 8]) {
          const base = (await b.stat('summary'))!.version;
          const results = await Promise.all(Array.from({ length: n }, (_, i) => f.compareAndSwap('summary', Buffer.from(`writer ${n}.${i}`), base)));
          const winners = results.flatMap((v, i) => (v === null ? [] : [i]));
          assert.equal(winners.length, 1, `${n} writers: exactly one wins (${JSON.stringify(results)})`);
          const got = await b.read('summary');
          assert.equal(got?.data.toString(), `writer ${n}.${winners[0]}`);
          assert.equal(got?.info.version, results[winners[0]!]);
        }
        // read-modify-CAS counters: every increment lands exactly once
        await b.write('counter', Buffer.from('0'));
        const worker = async (): Promise<number> => {
          let retries = 0;
          for (let done = 0; done < 5; ) {
            const cur = await b.read('counter');
            assert.ok(cur);
            const next = Buffer.from(String(Number(cur.data.toString()) + 1));
            if ((await f.compareAndSwap('counter', next, cur.info.version)) !== null) done++;
            else retries++;
          }
          return retries;
        };
        await Promise.all([worker(), worker(), worker(), worker()]);
        assert.equal((await b.read('counter'))?.data.toString(), '20');
      }));

    test('lock: one holder at a time per name, names independent, released locks can be taken again', () =>
      withBackend(async (b) => {
        const f = full(b);
        await assert.rejects(async () => f.lock('Bad Name'), (e: unknown) => e instanceof CairnError && e.code === 'INVALID_ARGUMENT');
        const release = await f.lock('refs');
        let secondHeld = false;
        const second = f.lock('refs').then((r) => {
          secondHeld = true;
          return r;
        });
        const other = await f.lock('summary'); // another name is free
        await release.confirm(); // still the holder's (HeldLock.confirm)
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(secondHeld, false, 'the second waiter waits while the first holds the lock');
        await release();
        await release(); // twice is harmless
        const release2 = await second;
        await release2.confirm();
        assert.equal(secondHeld, true);
        await other();
        await release2();
        // taken again at once after release
        const t0 = Date.now();
        const again = await f.lock('refs');
        await again();
        assert.ok(Date.now() - t0 < 5000);
        // mutual exclusion under contention: no two holders overlap
        let inside = 0;
        let overlaps = 0;
        await Promise.all(
          Array.from({ length: 4 }, async () => {
            for (let i = 0; i < 3; i++) {
              const r = await f.lock('gc');
              inside++;
              if (inside > 1) overlaps++;
              await new Promise((res) => setTimeout(res, 5));
              inside--;
              await r();
            }
          }),
        );
        assert.equal(overlaps, 0);
      }));

    test('prepare: nothing visible before commit; commit replaces atomically; discard leaves nothing', () =>
      withBackend(async (b) => {
        const f = full(b);
        await b.write('summary', Buffer.from('old'));
        const p = await f.prepare('summary', chunked(Buffer.alloc(100_000, 0x73), 8192));
        const q = await f.prepare('refs/heads/new', Buffer.from('n'));
        assert.equal((await b.read('summary'))?.data.toString(), 'old');
        assert.equal(await b.stat('refs/heads/new'), null);
        await p.commit();
        assert.deepEqual((await b.read('summary'))?.data, Buffer.alloc(100_000, 0x73));
        await assert.rejects(p.commit(), (e: unknown) => e instanceof CairnError);
        await q.discard();
        await q.discard();
        assert.equal(await b.stat('refs/heads/new'), null);
        await assert.rejects(f.prepare('../x', Buffer.from('x')), invalidPath);
        assert.deepEqual((await listAll(b, '')).filter((k) => !k.startsWith('tmp/')), ['summary']);
        // what is left in tmp/ is nothing a sweep would need to remove later
        assert.deepEqual((await listAll(b, 'tmp')).filter((k) => !/^tmp\/cairn-[a-z0-9-]+\.lock$/.test(k)), []);
      }));

    test('sweep: a fresh store has nothing to remove; live data is never swept', () =>
      withBackend(async (b) => {
        const f = full(b);
        await b.write('objects/ab/x.commit', Buffer.from('x'));
        const removed = await f.sweep({ graceMs: 0 });
        assert.ok(Array.isArray(removed));
        assert.deepEqual(removed, []);
        assert.deepEqual(await listAll(b, 'objects'), ['objects/ab/x.commit']);
      }));

    test('touch: a later mtime, the same bytes; an absent key is no error and stays absent', () =>
      withBackend(async (b) => {
        await b.write('objects/ab/t.filez', Buffer.from('touched bytes'));
        const before = await b.stat('objects/ab/t.filez');
        await new Promise((r) => setTimeout(r, 1100)); // S3 dates have whole seconds
        await b.touch('objects/ab/t.filez');
        const after = await b.stat('objects/ab/t.filez');
        assert.ok(after && before && after.mtimeMs > before.mtimeMs, `mtime ${before?.mtimeMs} -> ${after?.mtimeMs}`);
        assert.equal(after.size, before.size);
        assert.equal((await b.read('objects/ab/t.filez'))?.data.toString(), 'touched bytes');
        await b.touch('objects/ab/none.filez');
        assert.equal(await b.stat('objects/ab/none.filez'), null);
        await assert.rejects(b.touch('../x'), invalidPath);
      }));

    test('create from a stream, and concurrent creators of one key from streams: one winner, its bytes whole', () =>
      withBackend(async (b) => {
        const bodies = [0, 1, 2, 3].map((i) => Buffer.alloc(300_000, 0x41 + i));
        const won = await Promise.all(bodies.map((d) => b.create('deltas/aa/bb/0', chunked(d, 65_536))));
        assert.equal(won.filter(Boolean).length, 1, `winners: ${won}`);
        const got = (await b.read('deltas/aa/bb/0'))!.data;
        assert.ok(got.equals(bodies[won.indexOf(true)]!), 'the winner\'s bytes, whole');
        assert.deepEqual((await listAll(b, '')).filter((k) => !k.startsWith('tmp/')), ['deltas/aa/bb/0']);
      }));
  });
}
