import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import { CairnError } from '../../storage/errors';
import { sha256Hex } from '../../storage/objects/checksum';
import { contentChecksumOf, decodeArchiveHeader, encodeArchiveHeader, type FileHeader } from '../../storage/objects/content';
import { encodeDirMeta } from '../../storage/objects/dirmeta';
import { inflateFilezBytes, MAX_ONE_PIECE_INFLATE, verifyFilez, verifyFilezBytes } from '../../storage/objects/filez';
import { ObjectType } from '../../storage/objects/types';
import { verifyObject, type VerifyJob } from '../../storage/repo/verify';
import { defaultVerifyThreads, VerifyPool } from '../../storage/repo/verify-pool';
import { pseudoRandomBytes } from '../helpers/ostree';

/**
 * The verification threads decide exactly as the request thread: the same
 * verifyObject, the same errors, for good and bad objects alike; and the
 * one-piece .filez check agrees with the streaming one.
 */

const regular: FileHeader = { uid: 0, gid: 0, mode: 0o100644, symlinkTarget: '', xattrs: [] };
const link: FileHeader = { uid: 0, gid: 0, mode: 0o120777, symlinkTarget: 'target', xattrs: [] };
const MAX = 16 * 1024 * 1024 * 1024;

function filez(body: Buffer, declared = body.length, header = regular): Buffer {
  return Buffer.concat([encodeArchiveHeader(header, declared), deflateRawSync(body, { level: 6 })]);
}

/** Named cases: [what, job] — good ones and every kind of refusal. */
function cases(): Array<[string, VerifyJob]> {
  const text = Buffer.from('hello world\n'.repeat(500));
  const random = pseudoRandomBytes(7, 200_000);
  const good = (body: Buffer, header = regular) => ({ checksum: contentChecksumOf(header, body), type: ObjectType.File, data: filez(body, body.length, header), maxFileSize: MAX });
  const okText = good(text);
  const okRandom = good(random);
  const empty = good(Buffer.alloc(0));
  const symlink = { checksum: contentChecksumOf(link, Buffer.alloc(0)), type: ObjectType.File, data: encodeArchiveHeader(link, 0), maxFileSize: MAX };
  const dirmeta = encodeDirMeta({ uid: 0, gid: 0, mode: 0o40755, xattrs: [] });
  const corrupt = Buffer.from(okRandom.data);
  corrupt[corrupt.length - 100] ^= 0xff;
  const bomb = Buffer.concat([encodeArchiveHeader(regular, 100), deflateRawSync(Buffer.alloc(8 * 1024 * 1024))]);
  const hugeHeader = Buffer.alloc(16);
  hugeHeader.writeUInt32BE(0x7fffffff, 0);
  return [
    ['text file', okText],
    ['random file', okRandom],
    ['empty file', empty],
    ['symlink', symlink],
    ['dirmeta', { checksum: sha256Hex(dirmeta), type: ObjectType.DirMeta, data: dirmeta, maxFileSize: MAX }],
    ['wrong content checksum', { ...okText, checksum: okRandom.checksum }],
    ['wrong metadata checksum', { checksum: okText.checksum, type: ObjectType.DirMeta, data: dirmeta, maxFileSize: MAX }],
    ['metadata that does not parse', { checksum: sha256Hex(Buffer.from('junk')), type: ObjectType.DirTree, data: Buffer.from('junk'), maxFileSize: MAX }],
    ['corrupt deflate', { ...okRandom, data: corrupt }],
    ['truncated body', { ...okRandom, data: okRandom.data.subarray(0, okRandom.data.length - 50) }],
    ['truncated header', { ...okRandom, data: okRandom.data.subarray(0, 20) }],
    ['empty upload', { ...okRandom, data: Buffer.alloc(0) }],
    ['trailing data', { ...okText, data: Buffer.concat([okText.data, Buffer.alloc(10, 0x5a)]) }],
    ['declares less than it inflates to', { ...okText, data: filez(text, text.length - 1) }],
    ['declares more than it inflates to', { ...okText, data: filez(text, text.length + 1) }],
    ['bomb', { ...okText, data: bomb }],
    ['over the size limit', { ...okText, maxFileSize: 100 }],
    ['symlink with a body', { ...symlink, data: Buffer.concat([symlink.data, Buffer.from([3, 0])]) }],
    ['enormous header', { ...okText, data: hugeHeader }],
  ];
}

/** The size a .filez declares. */
function verifyFilezBytesSize(data: Buffer): number {
  return decodeArchiveHeader(data).size;
}

type Outcome = { ok: true } | { ok: false; code: string; message: string; details: unknown; isCairn: boolean };

async function outcome(p: Promise<void>): Promise<Outcome> {
  try {
    await p;
    return { ok: true };
  } catch (e) {
    const err = e as CairnError;
    return { ok: false, code: err.code, message: err.message, details: err.details, isCairn: e instanceof CairnError };
  }
}

const pool = new VerifyPool({ threads: 2, inThreadBytes: 0 });
after(() => pool.close());

test('verifyObject decides the same in a verification thread as on the calling thread, good and bad objects alike', async () => {
  let refused = 0;
  for (const [what, job] of cases()) {
    const here = await outcome(verifyObject(job));
    const there = await outcome(pool.verify(job));
    assert.deepEqual(there, here, what);
    if (!here.ok) {
      refused++;
      assert.ok(here.isCairn, `${what}: a CairnError`);
      assert.ok(['INVALID_OBJECT', 'CHECKSUM_MISMATCH', 'TOO_LARGE', 'INVALID_GVARIANT'].includes(here.code), `${what}: ${here.code}`);
    }
  }
  assert.equal(refused, cases().length - 5, 'the five good objects pass, every other case is refused');
});

test('many jobs at once: each answered by its own verdict, in any order', async () => {
  const all = cases();
  const jobs = Array.from({ length: 200 }, (_, i) => all[i % all.length]!);
  const expected = await Promise.all(jobs.map(([, j]) => outcome(verifyObject(j))));
  const got = await Promise.all(jobs.map(([, j]) => outcome(pool.verify(j))));
  assert.deepEqual(got, expected);
});

test('the one-piece .filez check refuses what the streaming check refuses, with the same code', async () => {
  for (const [what, job] of cases()) {
    if (job.type !== ObjectType.File) continue;
    const one = await outcome(verifyFilezBytes(job.data, { maxSize: job.maxFileSize }).then(() => undefined));
    // The streaming check in small chunks, as an upload arrives.
    const chunks: Buffer[] = [];
    for (let i = 0; i < job.data.length; i += 1000) chunks.push(job.data.subarray(i, i + 1000));
    const streamed = await outcome(verifyFilez(chunks, { maxSize: job.maxFileSize }).then(() => undefined));
    assert.equal(one.ok, streamed.ok, what);
    if (!one.ok && !streamed.ok) {
      assert.equal(one.code, streamed.code, what);
      // Trailing data: the streaming check may only know a lower bound ("at least N bytes").
      assert.equal(one.message.replace(/^at least /, ''), streamed.message.replace(/^at least /, ''), what);
    }
  }
  // inflateFilezBytes: the same check, with the content.
  for (const [what, job] of cases()) {
    if (job.type !== ObjectType.File) continue;
    const checked = await outcome(verifyFilezBytes(job.data, { maxSize: job.maxFileSize }).then(() => undefined));
    let content: Buffer | undefined;
    const inflated = await outcome(Promise.resolve().then(() => void (content = inflateFilezBytes(job.data, { maxSize: job.maxFileSize }).content)));
    assert.deepEqual(inflated, checked, what);
    if (inflated.ok) assert.equal(content!.length, verifyFilezBytesSize(job.data), what);
  }
  // Beyond MAX_ONE_PIECE_INFLATE the "one-piece" check streams: a large declared size is never inflated whole.
  const big = Buffer.alloc(MAX_ONE_PIECE_INFLATE + 1, 0x61);
  const r = await verifyFilezBytes(filez(big));
  assert.equal(r.checksum, contentChecksumOf(regular, big));
});

test('a pool of 0 threads verifies on the calling thread; a closed pool too', async () => {
  const inline = new VerifyPool({ threads: 0 });
  for (const [what, job] of cases()) assert.deepEqual(await outcome(inline.verify(job)), await outcome(verifyObject(job)), what);
  const closing = new VerifyPool({ threads: 1, inThreadBytes: 0 });
  const [, job] = cases()[0]!;
  await closing.verify(job);
  await closing.close();
  await closing.verify(job);
});

test('default verification threads follow the CPUs, shared among serving processes', () => {
  const table: Array<[cpus: number, processes: number, threads: number]> = [
    [1, 1, 1],
    [2, 1, 2],
    [4, 1, 4],
    [8, 1, 8],
    [64, 1, 8],
    [2, 2, 1],
    [4, 3, 1],
    [16, 15, 1],
    [64, 16, 4],
    [0, 1, 1],
  ];
  for (const [cpus, processes, threads] of table) assert.equal(defaultVerifyThreads(cpus, processes), threads, `${cpus} CPUs, ${processes} processes`);
});

test('closing a pool with jobs in flight settles every job (verified, or refused with an error): none hangs', async () => {
  const p = new VerifyPool({ threads: 2, inThreadBytes: 0 });
  const [, job] = cases()[1]!;
  const jobs = Array.from({ length: 100 }, () => p.verify(job).then(() => 'ok', (e: Error) => (e instanceof CairnError ? `refused ${e.code}` : 'failed')));
  await new Promise((r) => setImmediate(r));
  await p.close();
  const outcomes = await Promise.all(jobs);
  assert.ok(outcomes.every((o) => o === 'ok' || o === 'failed'), outcomes.join(','));
});
