// pump (server/files/pump.ts): the bytes of a range arrive exactly, in
// order, whatever the timing of reads and writes; errors and early stops
// report once and always close the reader; buffers are never overwritten
// while a write still holds them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import type { BlobReader } from '../../storage/backends/backend';
import { pump } from '../../server/files/pump';
import { pseudoRandomBytes } from '../helpers/ostree';
import { mulberry32 } from '../helpers/prng';

function memoryReader(data: Buffer, opts: { failAt?: number; truncateTo?: number; delay?: () => number } = {}) {
  const state = { closed: 0, reads: 0 };
  const wait = () => new Promise((r) => setTimeout(r, opts.delay?.() ?? 0));
  const reader: BlobReader = {
    info: { size: data.length, mtimeMs: 0, version: 'v' },
    async read(buffer, length, position) {
      state.reads++;
      await wait();
      if (opts.failAt !== undefined && position >= opts.failAt) throw new Error('disk on fire');
      const limit = opts.truncateTo ?? data.length;
      const n = Math.max(0, Math.min(length, limit - position));
      data.copy(buffer, 0, position, position + n);
      return n;
    },
    async close() {
      state.closed++;
    },
  };
  return { reader, state };
}

/** Keeps copies of what it is given, acknowledging after a random delay (so writes overlap reads). */
function slowSink(seed: number) {
  const rnd = mulberry32(seed);
  const chunks: Buffer[] = [];
  const held: { chunk: Buffer; copy: Buffer }[] = [];
  const sink = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _enc, cb) {
      const copy = Buffer.from(chunk);
      held.push({ chunk, copy });
      setTimeout(() => {
        // The buffer handed to us must still hold the same bytes when the write completes.
        assert.ok(chunk.equals(copy), 'a buffer was reused while its write was pending');
        chunks.push(copy);
        cb();
      }, Math.floor(rnd() * 3));
    },
  });
  return { sink, result: () => Buffer.concat(chunks) };
}

function run(range: Parameters<typeof pump>[0], out: Writable): Promise<{ err: Error | null; bytes: number }> {
  return new Promise((resolve) => {
    let calls = 0;
    pump(range, out, (err, bytes) => {
      calls++;
      assert.equal(calls, 1, 'done called once');
      resolve({ err, bytes });
    });
  });
}

test('sends whole blobs and ranges exactly, with overlapping reads and writes', async () => {
  const data = pseudoRandomBytes(1, 3 * 256 * 1024 + 12345);
  const rnd = mulberry32(2);
  const ranges = [
    [0, data.length - 1],
    [0, 0],
    [5, 256 * 1024 + 7],
    [256 * 1024, 2 * 256 * 1024 - 1],
    [data.length - 1, data.length - 1],
    [1000, data.length - 1000],
  ] as const;
  for (const [i, [start, end]] of ranges.entries()) {
    const { reader, state } = memoryReader(data, { delay: () => Math.floor(rnd() * 3) });
    const { sink, result } = slowSink(i);
    const r = await run({ reader, start, end }, sink);
    assert.equal(r.err, null);
    assert.equal(r.bytes, end - start + 1);
    assert.ok(result().equals(data.subarray(start, end + 1)), `range ${start}-${end}`);
    assert.equal(state.closed, 1);
  }
});

test('a read error or a blob shorter than announced is an error, reported once, reader closed', async () => {
  const data = pseudoRandomBytes(3, 1_000_000);
  const failing = memoryReader(data, { failAt: 512 * 1024 });
  const a = await run({ reader: failing.reader, start: 0, end: data.length - 1 }, slowSink(1).sink);
  assert.match(String(a.err), /disk on fire/);
  assert.equal(a.bytes, 512 * 1024);
  assert.equal(failing.state.closed, 1);
  const short = memoryReader(data, { truncateTo: 300_000 });
  const b = await run({ reader: short.reader, start: 0, end: data.length - 1 }, slowSink(2).sink);
  assert.match(String(b.err), /blob ended at byte 300000/);
  assert.equal(short.state.closed, 1);
});

test('stopping early reports once and closes the reader', async () => {
  const data = pseudoRandomBytes(4, 4_000_000);
  const { reader, state } = memoryReader(data, { delay: () => 1 });
  const { sink } = slowSink(5);
  let stop!: () => void;
  const result = new Promise<{ err: Error | null; bytes: number }>((resolve) => {
    stop = pump({ reader, start: 0, end: data.length - 1 }, sink, (err, bytes) => resolve({ err, bytes }));
  });
  await new Promise((r) => setTimeout(r, 15));
  stop();
  stop(); // twice is harmless
  const r = await result;
  assert.equal(r.err, null);
  assert.ok(r.bytes < data.length);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(state.closed, 1);
});

test('a failed write stops the copy with its error', async () => {
  const data = pseudoRandomBytes(6, 1_000_000);
  const { reader, state } = memoryReader(data);
  let n = 0;
  const sink = new Writable({
    write(_chunk, _enc, cb) {
      cb(++n === 2 ? new Error('connection reset') : null);
    },
  });
  sink.on('error', () => undefined);
  const r = await run({ reader, start: 0, end: data.length - 1 }, sink);
  assert.match(String(r.err), /connection reset/);
  assert.equal(state.closed, 1);
});
