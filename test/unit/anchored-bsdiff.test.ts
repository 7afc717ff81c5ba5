// The anchored bsdiff for large files (storage/deltas/anchored.ts): whatever the edit, the stream it
// writes is an ordinary bsdiff-4 stream that bspatch turns back into the new file exactly, and for
// files edited in a few places it is about as small as a full bsdiff.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import { anchoredBsdiff, ANCHORED_MIN_SIZE } from '../../storage/deltas/anchored';
import { bsdiff, bspatch } from '../../storage/deltas/bsdiff';
import { pseudoRandomBytes } from '../helpers/ostree';

/** Binary-like bytes: random runs, zero runs and a repeated table (compressible, varied). */
function structured(seed: number, size: number): Buffer {
  const out = Buffer.alloc(size);
  const noise = pseudoRandomBytes(seed, size);
  const table = pseudoRandomBytes(seed + 1, 700);
  for (let o = 0, k = 0; o < size; k++) {
    const len = Math.min(size - o, 200 + ((k * 7919) % 3000));
    if (k % 3 === 0) noise.copy(out, o, o, o + len);
    else if (k % 3 === 1) for (let i = 0; i < len; i++) out[o + i] = table[i % table.length]!;
    o += len;
  }
  return out;
}

function roundTrip(old: Buffer, nw: Buffer): Buffer {
  const patch = anchoredBsdiff(old, nw);
  assert.ok(bspatch(old, patch, nw.length).equals(nw), 'bspatch(old, anchoredBsdiff(old, new)) is new');
  return patch;
}

const SIZE = 3 * 1024 * 1024;
const base = structured(11, SIZE);

test('a few patched spots, a replaced block, an insertion and a deletion round-trip; the patch is as small as a full bsdiff', () => {
  const nw = Buffer.from(base);
  for (const at of [100, 700_000, 1_500_000, 2_900_000]) nw.write('patched', at);
  pseudoRandomBytes(5, 4096).copy(nw, 1_000_000);
  const edited = Buffer.concat([nw.subarray(0, 2_000_000), Buffer.from('inserted '.repeat(100)), nw.subarray(2_000_000, 2_500_000), nw.subarray(2_520_000)]);
  const patch = roundTrip(base, edited);
  const full = bsdiff(base, edited);
  const [a, f] = [deflateRawSync(patch).length, deflateRawSync(full).length];
  assert.ok(a <= f * 1.1 + 256, `anchored ${a} B vs full bsdiff ${f} B (deflated)`);
});

test('identical files, moved blocks, appended and truncated tails round-trip', () => {
  roundTrip(base, Buffer.from(base));
  const third = SIZE / 3;
  roundTrip(base, Buffer.concat([base.subarray(2 * third), base.subarray(0, third), base.subarray(third, 2 * third)]));
  roundTrip(base, Buffer.concat([base, pseudoRandomBytes(9, 300_000)]));
  roundTrip(base, base.subarray(0, SIZE - 400_000));
  roundTrip(base, base.subarray(123_457));
});

test('dissimilar or small inputs fall back to a plain bsdiff', () => {
  const other = structured(99, SIZE);
  assert.ok(anchoredBsdiff(base, other).equals(bsdiff(base, other)), 'under half matched: plain bsdiff');
  const small = base.subarray(0, ANCHORED_MIN_SIZE - 1);
  const smallNew = Buffer.concat([small.subarray(0, 1000), Buffer.from('x'), small.subarray(1000)]);
  assert.ok(anchoredBsdiff(small, smallNew).equals(bsdiff(small, smallNew)), 'below the size: plain bsdiff');
  roundTrip(base, Buffer.alloc(0));
});
