import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { deflateRawSync } from 'node:zlib';
import { bsdiff, bspatch, suffixArray } from '../../storage/deltas/bsdiff';
import { CairnError } from '../../storage/errors';
import { parse } from '../../storage/gvariant';
import { contentChecksumOf, type FileHeader } from '../../storage/objects/content';
import { FILES, SUPERBLOCK_TYPE, readFileVector, readSourceTrees } from '../helpers/fixtures';
import { mulberry32 } from '../helpers/prng';

// ---------------------------------------------------------------------------
// helpers

const prng = mulberry32;

function randomBytes(n: number, seed: number, alphabet = 256): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * alphabet);
  return b;
}

/**
 * Something shaped like an executable: code-like bytes, string tables built
 * from a small vocabulary, zero padding, and blocks repeated from earlier on
 * (the repetitive parts are what make suffix sorting and the scan work).
 */
function binaryish(size: number, seed: number): Buffer {
  const r = prng(seed);
  const ri = (n: number) => Math.floor(r() * n);
  const words = Array.from({ length: 400 }, () => Buffer.from(Array.from({ length: 3 + ri(12) }, () => 97 + ri(26))));
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; ) {
    const kind = ri(10);
    const len = Math.min(size - i, 64 + ri(4096));
    if (kind < 5) {
      for (let j = 0; j < len; j++) b[i + j] = r() < 0.3 ? 0 : r() < 0.5 ? ri(16) * 16 : ri(256);
    } else if (kind < 7) {
      for (let j = 0; j < len; ) {
        const w = words[ri(words.length)]!;
        w.copy(b, i + j, 0, Math.min(w.length, len - j));
        j += w.length + 1;
      }
    } else if (kind === 7) {
      // zero padding: already zero
    } else if (i > 0) {
      const src = ri(i);
      b.copy(b, i, src, src + Math.min(len, i - src));
    }
    i += len;
  }
  return b;
}

/** bsdiff 4 control integer: 8-byte little-endian sign-magnitude. */
function off(x: number | bigint): Buffer {
  const v = BigInt(x);
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v < 0n ? -v | (1n << 63n) : v);
  return b;
}

function chunk(diff: Buffer | number[], extra: Buffer | number[], seek: number | bigint): Buffer {
  const d = Buffer.from(diff);
  const e = Buffer.from(extra);
  return Buffer.concat([off(d.length), off(e.length), off(seek), d, e]);
}

function ctrl(diffLen: number | bigint, extraLen: number | bigint, seek: number | bigint): Buffer {
  return Buffer.concat([off(diffLen), off(extraLen), off(seek)]);
}

interface Control {
  diff: number;
  extra: number;
  seek: number;
  seekRaw: Buffer;
}

/** Walks a well-formed stream's controls (independent of the implementation). */
function controls(patch: Buffer): Control[] {
  const out: Control[] = [];
  const sm = (at: number): number => {
    const mag = Number(patch.readBigUInt64LE(at) & ~(1n << 63n));
    return patch[at + 7]! & 0x80 ? -mag : mag;
  };
  for (let at = 0; at < patch.length; ) {
    const c = { diff: sm(at), extra: sm(at + 8), seek: sm(at + 16), seekRaw: patch.subarray(at + 16, at + 24) };
    out.push(c);
    at += 24 + c.diff + c.extra;
  }
  return out;
}

function isInvalidObject(e: unknown): boolean {
  return e instanceof CairnError && e.code === 'INVALID_OBJECT';
}

/** bspatch either returns exactly newSize bytes or throws INVALID_OBJECT. */
function patchOrInvalid(old: Buffer, patch: Buffer, newSize: number, what: string): Buffer | null {
  try {
    const out = bspatch(old, patch, newSize);
    assert.ok(Buffer.isBuffer(out), what);
    assert.equal(out.length, newSize, `${what}: output length`);
    return out;
  } catch (e) {
    if (!isInvalidObject(e)) assert.fail(`${what}: expected CairnError INVALID_OBJECT, got ${(e as Error)?.stack ?? String(e)}`);
    return null;
  }
}

function roundTrip(oldData: Buffer, newData: Buffer, what: string): Buffer {
  const patch = bsdiff(oldData, newData);
  const back = bspatch(oldData, patch, newData.length);
  assert.ok(back.equals(newData), `${what}: bspatch(old, bsdiff(old, new)) == new`);
  // Structural invariants of a bsdiff stream: diff + extra cover new exactly.
  const cs = controls(patch);
  assert.equal(
    cs.reduce((n, c) => n + c.diff + c.extra, 0),
    newData.length,
    `${what}: controls cover the new file`,
  );
  assert.equal(patch.length, newData.length + 24 * cs.length, `${what}: nothing but controls, diff and extra`);
  return patch;
}

const compressed = (b: Buffer): number => deflateRawSync(b, { level: 9 }).length;

// ---------------------------------------------------------------------------

describe('bsdiff: the real ostree S1→S2 delta (FORMATS.md §5)', () => {
  const PART_TYPE = '(a(uuu)aa(ayay)ayay)';
  /** Source and target content objects of the two `B` ops (TESTDATA.md). */
  const SOURCES: Record<string, string> = {
    '3174e78680e10ca2281638bbb921b0f2271f6bcb1cf4f890a1dd2b547f2153af': 'small1/README',
    '06f7adc6cc523e6aea87db1308e444f8146b42e28f0115051aea39df52176edc': 'small1/bin/tool',
  };
  const TARGETS: Record<string, string> = {
    '940d9ec6a8bdedabdccf1e6fe95d4e0dc644abdc49753c144c99d92e6a386b75': 'small2/README',
    '719cddf0cfba314df96009e41554f0ba4649052b0bbc192fc20c229b3be53ede': 'small2/bin/tool',
  };

  interface BspatchOp {
    source: string;
    target: string;
    header: FileHeader;
    size: number;
    patch: Buffer;
  }

  /** Decodes part 0 far enough to find each `B` op and what it applies to. */
  function bspatchOps(): BspatchOp[] {
    const [, , , , , , parts] = parse(SUPERBLOCK_TYPE, readFileVector(FILES.fromToSuperblock));
    const objects: Buffer = parts[0][4];
    const part = readFileVector(FILES.fromToPart0);
    assert.equal(part[0], 0x78, "part is 'x' + xz");
    const body = execFileSync('xz', ['-dc'], { input: part.subarray(1) });
    const [modes, xattrs, blob, ops] = parse(PART_TYPE, body) as [number[][], unknown[][], Buffer, Buffer];
    assert.deepEqual(xattrs, [[]]);

    let i = 0;
    const varint = (): number => {
      let v = 0;
      for (let shift = 0; ; shift += 7) {
        const b = ops[i++]!;
        v += (b & 0x7f) * 2 ** shift;
        if (!(b & 0x80)) return v;
      }
    };
    const be32 = (v: number): number => Buffer.from(Uint32Array.of(v).buffer).readUInt32BE(0);
    let obj = 0;
    let source = '';
    let open: { header: FileHeader; size: number } | null = null;
    const found: BspatchOp[] = [];
    while (i < ops.length) {
      const op = String.fromCharCode(ops[i++]!);
      const objType = objects[obj * 33];
      const target = objects.subarray(obj * 33 + 1, obj * 33 + 33).toString('hex');
      switch (op) {
        case 'S':
          if (objType === 1) {
            varint(); // mode index
            varint(); // xattr index
          }
          varint(); // size
          varint(); // offset
          obj++;
          break;
        case 'r':
          {
            const at = varint();
            source = blob.subarray(at, at + 32).toString('hex');
          }
          break;
        case 'o': {
          const [uid, gid, mode] = modes[varint()]!.map(be32) as [number, number, number];
          varint(); // xattr index (the only set is empty)
          open = { header: { uid, gid, mode, symlinkTarget: '', xattrs: [] }, size: varint() };
          break;
        }
        case 'B': {
          const at = varint();
          const len = varint();
          assert.ok(open, 'B inside an open object');
          found.push({ source, target, ...open, patch: blob.subarray(at, at + len) });
          break;
        }
        case 'c':
          obj++;
          open = null;
          break;
        case 'R':
          source = '';
          break;
        default:
          assert.fail(`unexpected opcode ${op} in this delta`);
      }
    }
    return found;
  }

  test('both B payloads, applied to the S1 files, give the S2 files and their object checksums', () => {
    const trees = readSourceTrees();
    const found = bspatchOps();
    assert.equal(found.length, 2, 'the delta has exactly two bspatch ops');
    assert.deepEqual(found.map((b) => SOURCES[b.source]), ['small1/README', 'small1/bin/tool']);
    for (const b of found) {
      const oldData = trees.get(SOURCES[b.source]!)!.data;
      const expected = trees.get(TARGETS[b.target]!)!.data;
      // The source bytes really are the object the delta names as read source.
      assert.equal(contentChecksumOf(b.header, oldData), b.source, `${SOURCES[b.source]} is the read source`);
      assert.equal(b.size, expected.length, 'o declares the new size');

      const out = bspatch(oldData, b.patch, b.size);
      assert.ok(out.equals(expected), `${TARGETS[b.target]} byte for byte`);
      assert.equal(contentChecksumOf(b.header, out), b.target, 'the result is the content object the delta promises');
    }
  });

  test('bsdiff reproduces ostree’s patches byte for byte', () => {
    const trees = readSourceTrees();
    for (const b of bspatchOps()) {
      const mine = bsdiff(trees.get(SOURCES[b.source]!)!.data, trees.get(TARGETS[b.target]!)!.data);
      assert.equal(mine.toString('hex'), b.patch.toString('hex'), `${TARGETS[b.target]}`);
    }
  });

  test('the real patches, truncated anywhere or with a wrong size, are refused', () => {
    const trees = readSourceTrees();
    for (const b of bspatchOps()) {
      const oldData = trees.get(SOURCES[b.source]!)!.data;
      for (let n = 0; n < b.patch.length; n++) {
        assert.throws(() => bspatch(oldData, b.patch.subarray(0, n), b.size), isInvalidObject, `truncated to ${n}`);
      }
      assert.throws(() => bspatch(oldData, b.patch, b.size - 1), isInvalidObject, 'size - 1');
      assert.throws(() => bspatch(oldData, b.patch, b.size + 1), isInvalidObject, 'size + 1');
      assert.throws(() => bspatch(oldData, Buffer.concat([b.patch, Buffer.alloc(1)]), b.size), isInvalidObject, 'trailing byte');
    }
  });
});

// ---------------------------------------------------------------------------

describe('bsdiff: stream format', () => {
  test('control integers are sign-magnitude, not two’s complement', () => {
    const old = Buffer.from('abcdef');
    // Copy "abc", seek back 3, copy "abc" again: seek −3 is 03 00 … 00 80.
    const patch = Buffer.concat([chunk([0, 0, 0], [], -3), chunk([0, 0, 0], [], 0)]);
    assert.equal(patch.subarray(16, 24).toString('hex'), '0300000000000080');
    assert.equal(bspatch(old, patch, 6).toString(), 'abcabc');
    // The two's-complement spelling of −3 is a magnitude of 2^63 − 3: refused.
    const twos = Buffer.from(patch);
    twos.writeBigInt64LE(-3n, 16);
    assert.throws(() => bspatch(old, twos, 6), isInvalidObject);
    // Negative zero is zero.
    assert.equal(bspatch(old, Buffer.concat([chunk([1], [], 0), ctrl(0, 0, 0).fill(0x80, 7, 8), chunk([1], [], 0)]), 2).toString(), 'bc');
  });

  test('diff adds mod 256; extra is verbatim', () => {
    const old = Buffer.from([0xff, 0x10, 0x80]);
    assert.deepEqual([...bspatch(old, chunk([0x02, 0xf0, 0x80], [7, 8], 0), 5)], [0x01, 0x00, 0x00, 7, 8]);
  });

  test('old bytes outside the old file count as 0 (as in bspatch.c)', () => {
    const old = Buffer.from([10, 20, 30]);
    // Seek to −2: positions −2, −1 read as 0, then 10, 20, 30, then 3 past the end read as 0.
    const patch = Buffer.concat([chunk([], [], -2), chunk([1, 1, 1, 1, 1, 1, 1, 1], [], 0)]);
    assert.deepEqual([...bspatch(old, patch, 8)], [1, 1, 11, 21, 31, 1, 1, 1]);
    // Far outside, either side.
    assert.deepEqual([...bspatch(old, chunk([5, 6], [], 0), 2)], [15, 26]);
    assert.deepEqual([...bspatch(old, Buffer.concat([chunk([], [], 2 ** 40), chunk([5], [], 0)]), 1)], [5]);
    assert.deepEqual([...bspatch(old, Buffer.concat([chunk([], [], -(2 ** 40)), chunk([5], [], 0)]), 1)], [5]);
    assert.deepEqual([...bspatch(Buffer.alloc(0), chunk([5], [6], 0), 2)], [5, 6]);
  });

  test('bsdiff writes negative seeks as sign-magnitude', () => {
    const a = randomBytes(4096, 1);
    const b = randomBytes(4096, 2);
    const patch = roundTrip(Buffer.concat([a, b]), Buffer.concat([b, a]), 'swapped halves');
    const back = controls(patch).find((c) => c.seek < 0);
    assert.ok(back, 'moving back to the first half needs a negative seek');
    assert.equal(back.seekRaw[7]! & 0x80, 0x80);
    assert.equal(Number(back.seekRaw.readBigUInt64LE() & ~(1n << 63n)), -back.seek);
  });

  test('suffix array matches a naive sort (SA-IS, incl. its recursion)', () => {
    const r = prng(7);
    for (let t = 0; t < 600; t++) {
      const alphabet = [1, 2, 3, 4, 256][t % 5]!;
      const s = randomBytes(Math.floor(r() * 400), 1000 + t, alphabet);
      const naive = [...Array(s.length).keys()].sort((x, y) => Buffer.compare(s.subarray(x), s.subarray(y)));
      assert.deepEqual([...suffixArray(s)], [s.length, ...naive], `alphabet ${alphabet}: ${s.toString('hex')}`);
    }
    // Periodic strings make the reduced string repeat too.
    for (const s of ['abababababababababababab', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'mississippimississippimississippi']) {
      const b = Buffer.from(s.repeat(7));
      const naive = [...Array(b.length).keys()].sort((x, y) => Buffer.compare(b.subarray(x), b.subarray(y)));
      assert.deepEqual([...suffixArray(b)], [b.length, ...naive], s);
    }
  });
});

// ---------------------------------------------------------------------------

describe('bsdiff: round trips', () => {
  test('edge shapes', () => {
    const some = randomBytes(5000, 3);
    roundTrip(Buffer.alloc(0), Buffer.alloc(0), 'both empty');
    assert.equal(bsdiff(some, Buffer.alloc(0)).length, 0, 'empty new: empty patch');
    roundTrip(some, Buffer.alloc(0), 'empty new');
    roundTrip(Buffer.alloc(0), some, 'empty old');
    roundTrip(Buffer.from('x'), Buffer.from('y'), 'one byte');
    roundTrip(Buffer.from('x'), Buffer.from('x'), 'one byte, same');
    roundTrip(randomBytes(10_000, 4), randomBytes(12_000, 5), 'unrelated random');
    roundTrip(Buffer.alloc(50_000), Buffer.alloc(60_000, 1), 'runs');
    roundTrip(Buffer.alloc(50_000), Buffer.alloc(50_000), 'zeros');
    roundTrip(randomBytes(20_000, 6, 2), randomBytes(20_000, 7, 2), 'binary alphabet');

    const patch = roundTrip(some, some, 'identical');
    // The final seek is computed from the last search position, as in
    // bsdiff.c (mendsley's bsdiff emits 88 13 00 … 00 80 here too); nothing
    // reads it, since the new file is complete.
    assert.deepEqual(
      controls(patch).map(({ diff, extra, seek }) => [diff, extra, seek]),
      [[5000, 0, -5000]],
      'identical: one chunk of all-zero diff',
    );
    assert.ok(patch.subarray(24).every((x) => x === 0));
  });

  test('insertions, deletions, shifted blocks, text edits', () => {
    const base = binaryish(200_000, 8);
    const ins = Buffer.concat([base.subarray(0, 70_000), randomBytes(3000, 9), base.subarray(70_000)]);
    const del = Buffer.concat([base.subarray(0, 50_000), base.subarray(58_000)]);
    const moved = Buffer.concat([base.subarray(150_000), base.subarray(50_000, 150_000), base.subarray(0, 50_000)]);
    const shifted = Buffer.concat([Buffer.from('prefix'), base]);
    for (const [what, nw] of [
      ['insertion', ins],
      ['deletion', del],
      ['moved blocks', moved],
      ['shift by prefix', shifted],
      ['truncation', base.subarray(0, 123_456)],
    ] as const) {
      const patch = roundTrip(base, nw, what);
      assert.ok(compressed(patch) < 8000, `${what}: compressed patch ${compressed(patch)} B is small`);
    }

    const lines = Array.from({ length: 3000 }, (_, i) => `line ${i}: the quick brown fox ${i * 7919 % 1000} jumps\n`);
    const text = Buffer.from(lines.join(''));
    const edited = lines.slice();
    edited.splice(100, 3);
    edited.splice(1500, 0, 'a brand new line\n', 'and another one\n');
    edited[2500] = edited[2500]!.replace('quick', 'slow');
    edited[10] = edited[10]!.toUpperCase();
    const newText = Buffer.from(edited.join(''));
    const patch = roundTrip(text, newText, 'text edits');
    assert.ok(compressed(patch) < 1000, `text edits: compressed patch ${compressed(patch)} B`);
  });

  test('3 MB pseudo-random file with 200 scattered byte flips: patch compresses to a sliver', () => {
    const old = randomBytes(3 << 20, 10);
    const nw = Buffer.from(old);
    const r = prng(11);
    for (let k = 0; k < 200; k++) nw[Math.floor(r() * nw.length)] ^= 1 + Math.floor(r() * 255);
    const patch = roundTrip(old, nw, 'scattered flips');
    const size = compressed(patch);
    // 200 changes: a few bytes each once compressed, against 3 MB of noise.
    assert.ok(size < 16_384, `compressed patch ${size} B for a ${nw.length} B file`);
    assert.ok(compressed(nw) > 3_000_000, 'the new file itself does not compress');
  });

  test('10 MB executable-like file with scattered changes (timing printed, not asserted)', () => {
    const old = binaryish(10 << 20, 12);
    let nw = Buffer.from(old);
    const r = prng(13);
    const ri = (n: number) => Math.floor(r() * n);
    for (let k = 0; k < 300; k++) nw[ri(nw.length)] ^= 1 + ri(255);
    for (let k = 0; k < 50; k++) {
      const p = ri(nw.length - 4);
      nw.writeUInt32LE((nw.readUInt32LE(p) + 4096) >>> 0, p); // relocated pointers
    }
    const at = ri(nw.length);
    nw = Buffer.concat([nw.subarray(0, at), Buffer.alloc(1000, 'x'), nw.subarray(at)]);
    const cut = ri(nw.length - 4096);
    nw = Buffer.concat([nw.subarray(0, cut), nw.subarray(cut + 2048)]);

    let t = process.hrtime.bigint();
    const patch = bsdiff(old, nw);
    const diffMs = Number(process.hrtime.bigint() - t) / 1e6;
    t = process.hrtime.bigint();
    const back = bspatch(old, patch, nw.length);
    const patchMs = Number(process.hrtime.bigint() - t) / 1e6;
    assert.ok(back.equals(nw));
    const z = compressed(patch);
    console.log(
      `bsdiff 10 MiB: ${diffMs.toFixed(0)} ms, bspatch ${patchMs.toFixed(0)} ms, ` +
        `patch ${patch.length} B (${z} B deflated, new file ${compressed(nw)} B deflated)`,
    );
    assert.ok(z < 65_536, `compressed patch ${z} B`);
  });
});

// ---------------------------------------------------------------------------

describe('bspatch: hostile patches', () => {
  const old = Buffer.from('the old file contents');

  test('bad sizes and lengths', () => {
    const ok = chunk([0, 0, 0], [1, 2], 0);
    assert.deepEqual([...bspatch(old, ok, 5)], [0x74, 0x68, 0x65, 1, 2]);
    for (const n of [-1, 1.5, NaN, Infinity, 2 ** 60, 6]) {
      assert.throws(() => bspatch(old, ok, n), isInvalidObject, `newSize ${n}`);
    }
    assert.equal(bspatch(old, Buffer.alloc(0), 0).length, 0, 'empty patch, empty file');
    assert.throws(() => bspatch(old, ok, 0), isInvalidObject, 'a patch for an empty file must be empty');

    const cases: [string, Buffer, number][] = [
      ['negative diff', ctrl(-1, 0, 0), 0],
      ['negative extra', ctrl(0, -1, 0), 0],
      ['negative zero-sized diff then data', Buffer.concat([ctrl(-5, 10, 0), Buffer.alloc(10)]), 10],
      ['diff past new', Buffer.concat([ctrl(11, 0, 0), Buffer.alloc(11)]), 10],
      ['extra past new', Buffer.concat([ctrl(5, 6, 0), Buffer.alloc(11)]), 10],
      ['diff past patch', Buffer.concat([ctrl(10, 0, 0), Buffer.alloc(9)]), 9],
      ['extra past patch', Buffer.concat([ctrl(0, 10, 0), Buffer.alloc(9)]), 9],
      ['diff 2^53 - 1', Buffer.concat([ctrl(2 ** 53 - 1, 0, 0), Buffer.alloc(8)]), 8],
      ['diff 2^62', Buffer.concat([ctrl(2n ** 62n, 0, 0), Buffer.alloc(8)]), 8],
      ['extra 2^63 - 1', Buffer.concat([ctrl(0, 2n ** 63n - 1n, 0), Buffer.alloc(8)]), 8],
      ['diff over INT_MAX', Buffer.concat([ctrl(2 ** 31, 0, 0), Buffer.alloc(8)]), 8],
      ['seek 2^62', Buffer.concat([ctrl(0, 0, 2n ** 62n), chunk([1], [], 0)]), 1],
      ['seeks that overflow', Buffer.concat([ctrl(0, 0, 2 ** 53 - 1), ctrl(0, 0, 2 ** 53 - 1), chunk([1], [], 0)]), 1],
      ['truncated control', Buffer.concat([chunk([1], [], 0), ctrl(1, 0, 0).subarray(0, 23)]), 2],
      ['controls that never finish', Buffer.concat(Array.from({ length: 10 }, () => ctrl(0, 0, 1))), 1],
      ['trailing bytes', Buffer.concat([chunk([1], [2], 0), Buffer.from([0])]), 2],
      ['trailing control', Buffer.concat([chunk([1], [2], 0), ctrl(0, 0, 0)]), 2],
    ];
    for (const [what, patch, size] of cases) {
      assert.throws(() => bspatch(old, patch, size), isInvalidObject, what);
    }
  });

  test('every truncation of a multi-chunk patch is refused', () => {
    const a = binaryish(20_000, 20);
    const b = Buffer.concat([a.subarray(10_000), randomBytes(500, 21), a.subarray(0, 10_000)]);
    const patch = bsdiff(a, b);
    assert.ok(controls(patch).length > 1);
    for (let n = 0; n < patch.length; n += n < 200 ? 1 : 97) {
      assert.throws(() => bspatch(a, patch.subarray(0, n), b.length), isInvalidObject, `truncated to ${n}`);
    }
  });

  test('fuzz: random streams and mutated real patches give INVALID_OBJECT or exactly newSize bytes', () => {
    const r = prng(99);
    const ri = (n: number) => Math.floor(r() * n);
    const a = binaryish(4000, 30);
    const b = Buffer.concat([a.subarray(1000, 3000), randomBytes(300, 31), a.subarray(0, 1000)]);
    const good = bsdiff(a, b);
    for (let t = 0; t < 1500; t++) {
      // pure noise
      const noise = randomBytes(ri(200), 5000 + t);
      patchOrInvalid(a, noise, ri(noise.length + 2), `noise ${t}`);
      // noise with plausible small controls (sign bits and sizes random)
      const parts: Buffer[] = [];
      for (let k = ri(4); k >= 0; k--) {
        const d = ri(40);
        const e = ri(40);
        parts.push(ctrl(r() < 0.1 ? -d : d, r() < 0.1 ? -e : e, ri(9000) - 4500), randomBytes(d + e + (r() < 0.1 ? ri(3) - 1 : 0), t));
      }
      const crafted = Buffer.concat(parts);
      patchOrInvalid(a, crafted, ri(crafted.length + 2), `crafted ${t}`);
      // a real patch with a few bytes corrupted, ideally inside controls
      const m = Buffer.from(good);
      for (let k = 0; k < 1 + ri(3); k++) m[r() < 0.5 ? ri(24) : ri(m.length)] = ri(256);
      const out = patchOrInvalid(a, m, b.length, `mutated ${t}`);
      if (out && m.equals(good)) assert.ok(out.equals(b));
    }
  });
});
