import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { deflateRawSync } from 'node:zlib';
import { contentChecksumOf, encodeArchiveHeader, type FileHeader } from '../../storage/objects/content';
import type { Repo } from '../../storage/repo/repo';
import { WHOLE_OBJECT_BYTES } from '../../storage/repo/ingest';
import { pseudoRandomBytes } from '../helpers/ostree';
import { assertNoTrace, objectFile, publishingSetup, tempFiles, upload, type PublishingSetup } from './helpers';

/**
 * Multipart uploads through the verification threads: many small objects
 * stored byte for byte; a corrupt, truncated, lying or oversized object
 * refused with the same 4xx JSON error as the streaming path gives, naming
 * it, leaving neither the object nor a temporary file.
 */
let setup: PublishingSetup;
let main: Repo;
let token: string;

before(async () => {
  setup = await publishingSetup();
  main = setup.main;
  token = await setup.token({ sub: 'builder', scope: ['push'] });
});

after(() => setup.data.cleanup());

const HEADER: FileHeader = { uid: 0, gid: 0, mode: 0o100644, symlinkTarget: '', xattrs: [] };
let seed = 1000;

function fresh(size: number): { name: string; checksum: string; bytes: Buffer; content: Buffer } {
  const content = pseudoRandomBytes(seed++, size);
  const checksum = contentChecksumOf(HEADER, content);
  return { name: `${checksum}.filez`, checksum, bytes: Buffer.concat([encodeArchiveHeader(HEADER, size), deflateRawSync(content)]), content };
}

function refusal(res: { status: number; body: unknown }, code: string, object: string, what: string): void {
  assert.equal(res.status, code === 'TOO_LARGE' ? 413 : 400, `${what}: ${JSON.stringify(res.body)}`);
  const err = (res.body as { error: { code: string; message: string; details?: { object?: string } } }).error;
  assert.equal(err.code, code, what);
  assert.equal(err.details?.object, object, what);
  assert.ok(err.message.includes(object), `${what}: the message names the object`);
}

test('300 small objects and one larger than the whole-object limit in one request: all stored byte for byte', async () => {
  const objs = Array.from({ length: 300 }, (_, i) => fresh(50 + ((i * 997) % 20_000)));
  objs.push(fresh(WHOLE_OBJECT_BYTES + 100_000)); // streams
  const res = await upload(setup.app, token, objs.map((o) => [o.name, o.bytes])).expect(200);
  assert.equal((res.body as { stored: string[] }).stored.length, objs.length);
  for (const o of objs) assert.deepEqual(readFileSync(objectFile(main, o.checksum, 'filez')), o.bytes);
  assert.deepEqual(tempFiles(main), []);
  // Again: all present now.
  const again = await upload(setup.app, token, objs.slice(0, 10).map((o) => [o.name, o.bytes])).expect(200);
  assert.equal((again.body as { present: string[] }).present.length, 10);
});

test('refused objects answer 4xx naming the object, with the streaming path\'s code; nothing of them remains', async () => {
  const bad: Array<[string, (o: ReturnType<typeof fresh>) => Buffer, string]> = [
    ['corrupt deflate', (o) => {
      const b = Buffer.from(o.bytes);
      b[encodeArchiveHeader(HEADER, o.content.length).length] = 0x07; // a final block of the reserved type 3
      return b;
    }, 'INVALID_OBJECT'],
    ['truncated', (o) => o.bytes.subarray(0, o.bytes.length - 30), 'INVALID_OBJECT'],
    ['trailing junk', (o) => Buffer.concat([o.bytes, Buffer.alloc(10, 0x5a)]), 'INVALID_OBJECT'],
    ['header declares one byte less', (o) => Buffer.concat([encodeArchiveHeader(HEADER, o.content.length - 1), deflateRawSync(o.content)]), 'INVALID_OBJECT'],
    ['another object\'s bytes', () => fresh(1000).bytes, 'CHECKSUM_MISMATCH'],
  ];
  for (const [what, mangle, code] of bad) {
    for (const size of [3000, WHOLE_OBJECT_BYTES + 50_000]) {
      const good = fresh(500);
      const o = fresh(size);
      const label = `${what}, ${size} bytes`;
      // The good object before it is stored (verified objects are valid whatever follows); the bad one is not.
      const res = await upload(setup.app, token, [
        [good.name, good.bytes],
        [o.name, mangle(o)],
      ]);
      refusal(res, code, o.name, label);
      assertNoTrace(main, o.checksum, 'filez');
      assert.ok(existsSync(objectFile(main, good.checksum, 'filez')), `${label}: the good object before it was stored`);
    }
  }
});

test('a .filez declaring more than the file size limit is refused 413 before it is inflated', async () => {
  const saved = setup.ctx.ingestLimits;
  setup.ctx.ingestLimits = { ...saved, maxFileSize: 1000 };
  try {
    const o = fresh(5000);
    const res = await upload(setup.app, token, [[o.name, o.bytes]]);
    refusal(res, 'TOO_LARGE', o.name, 'declared size over the limit');
    assertNoTrace(main, o.checksum, 'filez');
  } finally {
    setup.ctx.ingestLimits = saved;
  }
});

test('a metadata object that does not hash to its name is refused, nothing stored', async () => {
  const o = fresh(100);
  const fakeName = `${o.checksum}.dirmeta`;
  const res = await upload(setup.app, token, [[fakeName, Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x41, 0xed])]]);
  assert.equal(res.status, 400, JSON.stringify(res.body));
  assert.ok(['INVALID_OBJECT', 'INVALID_GVARIANT', 'CHECKSUM_MISMATCH'].includes((res.body as { error: { code: string } }).error.code));
  assertNoTrace(main, o.checksum, 'dirmeta');
});
