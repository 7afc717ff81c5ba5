// Property-based fuzzing (fast-check) of the parsers that read hostile bytes (issue #11, "Harnesses
// that must exist"): the GVariant parser (storage/gvariant) and the object decoders built on it, the
// `.filez` decoder (storage/objects/filez.ts, one-piece and streaming), the delta reader
// (storage/deltas/read.ts: superblock and part parsing) and the xz framing and bounded decompression
// (storage/deltas/xz.ts). Inputs: arbitrary bytes, values of generated GVariant types, and mutations
// (byte flips, insertions, deletions, truncations, splices) of valid encodings. For every input:
// no crash, only typed errors (CairnError with the documented codes), a time bound per input (no
// hang) and a bound on the process's memory over the whole run (bombs stop at their declared sizes).
//
// Thousands of inputs per run. CAIRN_FUZZ_RUNS=N multiplies the runs (longer mode, e.g. 20);
// CAIRN_FUZZ_SEED=S replays a run (the seed is printed at the start and in every failure).
//
// Run: npx tsc -p . && node --test dist/test/fuzz/parsers.test.js

import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import { test } from 'node:test';
import fc from 'fast-check';
import { xzSync } from 'node-liblzma';
import { CairnError, type ErrorCode } from '../../storage/errors';
import { parse, parseType, serialize, Variant, type GType } from '../../storage/gvariant';
import { decodeCommit } from '../../storage/objects/commit';
import { decodeDirMeta } from '../../storage/objects/dirmeta';
import { decodeDirTree } from '../../storage/objects/dirtree';
import { contentChecksumOf, type FileHeader } from '../../storage/objects/content';
import { encodeFilez, inflateFilezBytes, verifyFilez, verifyFilezBytes } from '../../storage/objects/filez';
import { OBJECT_GVARIANT_TYPE } from '../../storage/objects/types';
import { decodePartFile, decodeSuperblock, encodeSuperblock, SUPERBLOCK_TYPE, type Superblock } from '../../storage/deltas/format';
import { describeDelta, loadPart, memoryDeltaSource, openDelta } from '../../storage/deltas/read';
import { xzCompress, xzDeclaredSize, xzDecompress } from '../../storage/deltas/xz';
import { sha256Hex } from '../../storage/objects/checksum';
import { FILES, OBJECTS, objectPath, readFileVector } from '../helpers/fixtures';
import { readFileSync } from 'node:fs';

const MULT = Math.max(1, Number(process.env.CAIRN_FUZZ_RUNS ?? '1') || 1);
const SEED = process.env.CAIRN_FUZZ_SEED !== undefined ? Number(process.env.CAIRN_FUZZ_SEED) : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
process.stderr.write(`fuzz seed ${SEED} (CAIRN_FUZZ_SEED=${SEED} replays it), runs ×${MULT}\n`);

/** One input may take this long (a loaded 2-core CI machine); more is a hang. */
const PER_INPUT_MS = 5_000;
/** Growth of the resident set over a whole property (bombs are GBs when inflated): more is unbounded memory. */
const MAX_RSS_GROWTH = 400 * 1024 * 1024;

function runs(n: number): number {
  return n * MULT;
}

function params(n: number): fc.Parameters<unknown> {
  return { numRuns: runs(n), seed: SEED };
}

/** Watches the resident set size over a property. */
function memoryWatch(): { sample(): void; check(what: string): void } {
  const base = process.memoryUsage().rss;
  let peak = base;
  return {
    sample() {
      const r = process.memoryUsage().rss;
      if (r > peak) peak = r;
    },
    check(what) {
      assert.ok(peak - base < MAX_RSS_GROWTH, `${what}: resident memory grew by ${((peak - base) / 2 ** 20).toFixed(0)} MiB`);
    },
  };
}

/** Fails unless `e` is a CairnError with one of `codes`. */
function typed(e: unknown, codes: readonly ErrorCode[], what: string): CairnError {
  if (!(e instanceof CairnError)) {
    assert.fail(`${what}: threw ${(e as Error)?.name ?? typeof e} instead of a CairnError: ${(e as Error)?.stack ?? String(e)}`);
  }
  assert.ok(codes.includes(e.code), `${what}: CairnError ${e.code} (${e.message}), expected one of ${codes.join(', ')}`);
  return e;
}

function timed<T>(what: string, f: () => T): T {
  const t0 = performance.now();
  const r = f();
  const ms = performance.now() - t0;
  assert.ok(ms < PER_INPUT_MS, `${what}: one input took ${ms.toFixed(0)} ms`);
  return r;
}

async function timedAsync<T>(what: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      f(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${PER_INPUT_MS} ms (hang)`)), PER_INPUT_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    const ms = performance.now() - t0;
    assert.ok(ms < PER_INPUT_MS + 1000, `${what}: one input took ${ms.toFixed(0)} ms`);
  }
}

// ---------------------------------------------------------------------------------------------
// Mutations of valid encodings

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; byte: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; len: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'dup'; at: number; len: number; to: number }
  | { kind: 'word'; at: number; value: number; width: 1 | 2 | 4 | 8 };

const position = fc.nat({ max: 0xffffff });
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: position, byte: fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0xfe) }),
  fc.record({ kind: fc.constant('insert' as const), at: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: position, len: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: position }),
  fc.record({ kind: fc.constant('dup' as const), at: position, len: fc.integer({ min: 1, max: 64 }), to: position }),
  // framing offsets and sizes: small, boundary and huge values
  fc.record({
    kind: fc.constant('word' as const),
    at: position,
    value: fc.oneof(fc.nat({ max: 16 }), fc.constantFrom(0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0xffffffff), fc.nat()),
    width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const),
  }),
);

function mutate(src: Buffer, muts: readonly Mutation[]): Buffer {
  let b = Buffer.from(src);
  for (const m of muts) {
    const n = b.length;
    if (n === 0 && m.kind !== 'insert') continue;
    const at = n === 0 ? 0 : m.at % (m.kind === 'insert' ? n + 1 : n);
    switch (m.kind) {
      case 'flip':
        b[at] = b[at]! ^ (1 << m.bit);
        break;
      case 'set':
        b[at] = m.byte;
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(n, at + m.len))]);
        break;
      case 'truncate':
        b = b.subarray(0, at);
        break;
      case 'dup': {
        const piece = Buffer.from(b.subarray(at, Math.min(n, at + m.len)));
        const to = m.to % (n + 1);
        b = Buffer.concat([b.subarray(0, to), piece, b.subarray(to)]);
        break;
      }
      case 'word': {
        if (at + m.width > n) break;
        if (m.width === 8) b.writeBigUInt64LE(BigInt(m.value), at);
        else b.writeUIntLE(m.value % 2 ** (8 * m.width), at, m.width);
        break;
      }
    }
  }
  return b;
}

const mutationsArb = fc.array(mutationArb, { minLength: 1, maxLength: 4 });

// ---------------------------------------------------------------------------------------------
// GVariant

const BASIC = ['y', 'b', 'n', 'q', 'i', 'u', 'h', 'x', 't', 'd', 's', 'o', 'g'] as const;

/** Definite GVariant type strings, nested up to a few levels. */
const typeArb: fc.Arbitrary<string> = fc.letrec<{ t: string }>((tie) => ({
  t: fc.oneof(
    { maxDepth: 4, depthIdentifier: 'gv' },
    fc.constantFrom(...BASIC),
    fc.constant('v'),
    tie('t').map((e) => `a${e}`),
    tie('t').map((e) => `m${e}`),
    fc.array(tie('t'), { minLength: 0, maxLength: 4 }).map((ms) => `(${ms.join('')})`),
    fc.tuple(fc.constantFrom(...BASIC), tie('t')).map(([k, v]) => `a{${k}${v}}`),
  ),
})).t.filter((s) => s.length <= 255);

/** The OSTree types Cairn parses from the network or disk. */
const OSTREE_TYPES = [...Object.values(OBJECT_GVARIANT_TYPE), SUPERBLOCK_TYPE, '(uayttay)', '(a(uuu)aa(ayay)ayay)', 'a(ss)', 'aay'];

/** A value of `t` (as parse returns values) drawn from `rnd`; no Just(Nothing) (not representable), finite doubles only. */
function valueOf(t: GType, rnd: () => number, depth = 0): unknown {
  const int = (n: number) => Math.floor(rnd() * n);
  const len = () => (depth > 3 ? int(2) : int(5));
  switch (t.kind) {
    case 'basic':
      switch (t.char) {
        case 'b':
          return rnd() < 0.5;
        case 'y':
          return int(256);
        case 'n':
          return int(65536) - 32768;
        case 'q':
          return int(65536);
        case 'i':
        case 'h':
          return int(2 ** 32) - 2 ** 31;
        case 'u':
          return int(2 ** 32);
        case 'x':
          return BigInt(int(2 ** 32)) * BigInt(int(2 ** 31)) * (rnd() < 0.5 ? -1n : 1n);
        case 't':
          return BigInt(int(2 ** 32)) * BigInt(int(2 ** 32));
        case 'd':
          return (rnd() - 0.5) * 2 ** int(60);
        default: {
          const chars = ['a', 'é', '/', '€', '𝄞', ' ', 'z', '\u00ff'];
          let s = '';
          for (let i = int(12); i > 0; i--) s += chars[int(chars.length)];
          return s;
        }
      }
    case 'variant': {
      const inner = ['s', 'u', 'ay', 'a{sv}', '(yt)', 'mi', 'as'][int(7)]!;
      return new Variant(inner, valueOf(parseType(inner), rnd, depth + 1));
    }
    case 'maybe':
      if (t.elem.kind !== 'maybe' && rnd() < 0.5) return valueOf(t.elem, rnd, depth + 1);
      return null;
    case 'array': {
      if (t.elem.kind === 'basic' && t.elem.char === 'y') return Buffer.from(Array.from({ length: int(40) }, () => int(256)));
      return Array.from({ length: len() }, () => valueOf(t.elem, rnd, depth + 1));
    }
    case 'tuple':
    case 'dictentry':
      return t.members.map((m) => valueOf(m, rnd, depth + 1));
  }
}

function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** parse() answers a value or INVALID_GVARIANT, within the time bound. */
function parseOrRefuse(type: string, data: Buffer, what: () => string, requireNormal = true): unknown {
  try {
    return timed(what(), () => parse(type, data, { requireNormal }));
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    typed(e, ['INVALID_GVARIANT'], what());
    return undefined;
  }
}

/** Every valid GVariant encoding in the reference repository (objects, summary, superblocks, signatures). */
function validEncodings(): Array<{ name: string; type: string; bytes: Buffer }> {
  const out: Array<{ name: string; type: string; bytes: Buffer }> = [];
  for (const o of OBJECTS) {
    if (o.ext === 'filez') continue;
    const type = o.ext === 'commitmeta' ? OBJECT_GVARIANT_TYPE.commitmeta : OBJECT_GVARIANT_TYPE[o.ext];
    out.push({ name: `${o.checksum.slice(0, 8)}.${o.ext}`, type, bytes: readFileSync(objectPath(o)) });
  }
  for (const f of Object.values(FILES)) if ('gvType' in f) out.push({ name: f.rel, type: f.gvType, bytes: readFileVector(f) });
  return out;
}

test('gvariant: values of generated types round-trip (serialize → parse gives the value and the same bytes)', () => {
  const mem = memoryWatch();
  fc.assert(
    fc.property(typeArb, fc.integer(), (type, seed) => {
      const t = parseType(type);
      const value = valueOf(t, seeded(seed));
      const bytes = serialize(t, value);
      const back = timed(`parse ${type}`, () => parse(t, bytes));
      assert.deepEqual(back, value, `round trip of ${type}`);
      assert.ok(serialize(t, back).equals(bytes));
      mem.sample();
    }),
    params(2000),
  );
  mem.check('round trip');
});

test('gvariant: arbitrary bytes as generated and OSTree types: a value or INVALID_GVARIANT', () => {
  const mem = memoryWatch();
  fc.assert(
    fc.property(fc.oneof(typeArb, fc.constantFrom(...OSTREE_TYPES)), fc.uint8Array({ maxLength: 512 }), fc.boolean(), (type, raw, normal) => {
      const data = Buffer.from(raw);
      parseOrRefuse(type, data, () => `parse ${type} of ${data.toString('hex').slice(0, 200)}`, normal);
      mem.sample();
    }),
    params(4000),
  );
  mem.check('arbitrary bytes');
});

test('gvariant: mutations of valid values of generated types and of every reference encoding; the object decoders too', () => {
  const valid = validEncodings();
  assert.ok(valid.length >= 15, `${valid.length} reference encodings`);
  const mem = memoryWatch();
  let accepted = 0;
  let refused = 0;
  const source = fc.oneof(
    fc.constantFrom(...valid).map((v) => ({ type: v.type, bytes: v.bytes, name: v.name })),
    fc.tuple(typeArb, fc.integer()).map(([type, seed]) => ({ type, bytes: serialize(type, valueOf(parseType(type), seeded(seed))), name: `generated ${type}` })),
  );
  fc.assert(
    fc.property(source, mutationsArb, fc.boolean(), ({ type, bytes, name }, muts, normal) => {
      const m = mutate(bytes, muts);
      const what = () => `${name} mutated by ${JSON.stringify(muts)}: ${m.toString('hex').slice(0, 300)}`;
      const v = parseOrRefuse(type, m, what, normal);
      if (v === undefined) refused++;
      else accepted++;
      // The object decoders on the same bytes: a decoded object or a typed refusal.
      for (const [decode, codes] of [
        [decodeCommit, ['INVALID_GVARIANT', 'INVALID_OBJECT', 'INVALID_CHECKSUM']],
        [decodeDirTree, ['INVALID_GVARIANT', 'INVALID_OBJECT', 'INVALID_PATH', 'INVALID_CHECKSUM']],
        [decodeDirMeta, ['INVALID_GVARIANT', 'INVALID_OBJECT']],
        [decodeSuperblock, ['INVALID_GVARIANT', 'INVALID_OBJECT', 'INVALID_CHECKSUM']],
      ] as const) {
        try {
          timed(`${decode.name}: ${what()}`, () => decode(m));
        } catch (e) {
          if (e instanceof assert.AssertionError) throw e;
          typed(e, codes, `${decode.name}: ${what()}`);
        }
      }
      mem.sample();
    }),
    params(4000),
  );
  mem.check('mutations');
  assert.ok(refused > 0 && accepted > 0, `mutations both accepted (${accepted}) and refused (${refused})`);
});

test('gvariant: deep nesting and huge declared counts are refused within the bounds', () => {
  const mem = memoryWatch();
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 200 }), fc.constantFrom('av', 'mv', '(v)'), fc.nat({ max: 0xffffffff }), (depth, wrapper, count) => {
      // A variant nested `depth` times, in normal form.
      let bytes = serialize('u', 7);
      let type = 'u';
      for (let i = 0; i < depth; i++) {
        bytes = Buffer.concat([bytes, Buffer.from([0]), Buffer.from(type, 'latin1')]);
        type = 'v';
      }
      parseOrRefuse(wrapper === '(v)' ? '(v)' : 'v', bytes, () => `variant nested ${depth} deep`);
      // An array whose offset table claims `count` elements.
      const table = Buffer.alloc(8);
      table.writeUInt32LE(count, 0);
      parseOrRefuse('as', Buffer.concat([Buffer.from('ab\0'), table]), () => `array claiming ${count}`);
      mem.sample();
    }),
    params(500),
  );
  mem.check('nesting');
});

// ---------------------------------------------------------------------------------------------
// .filez

const FILEZ_CODES: readonly ErrorCode[] = ['INVALID_OBJECT', 'INVALID_GVARIANT', 'TOO_LARGE', 'INVALID_PATH'];

const headerArb: fc.Arbitrary<FileHeader> = fc.record({
  uid: fc.nat(),
  gid: fc.nat(),
  mode: fc.oneof(fc.constant(0o100644), fc.constant(0o100755), fc.constant(0o120777), fc.nat({ max: 0o7777 }).map((p) => 0o100000 | p)),
  symlinkTarget: fc.constant(''),
  xattrs: fc.constant([]).map(() => [] as FileHeader["xattrs"]),
}).chain((h) =>
  (h.mode & 0o170000) === 0o120000
    ? fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes('\0')).map((target) => ({ ...h, symlinkTarget: target }))
    : fc.constant(h),
);

async function filez(header: FileHeader, content: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of encodeFilez(header, content.length, [content])) chunks.push(c);
  return Buffer.concat(chunks);
}

/** The content a generated file has: random, repetitive or zeros. */
const contentArb = fc.oneof(
  fc.uint8Array({ maxLength: 2048 }).map((u) => Buffer.from(u)),
  fc.tuple(fc.string({ maxLength: 20 }), fc.nat({ max: 5000 })).map(([s, n]) => Buffer.from(s.repeat(n).slice(0, 200_000))),
  fc.nat({ max: 300_000 }).map((n) => Buffer.alloc(n)),
);

/** Splits `b` into pieces at the given cut points (the streaming decoder's chunking). */
function pieces(b: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => (b.length ? c % b.length : 0)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of at) {
    out.push(b.subarray(prev, c));
    prev = c;
  }
  out.push(b.subarray(prev));
  return out;
}

/** One-piece and streaming verification of `data`: both the same checksum, or both a typed refusal. */
async function bothFilez(data: Buffer, cuts: number[], what: () => string): Promise<{ checksum?: string; code?: ErrorCode }> {
  const outcome = async (f: () => Promise<{ checksum: string }>) => {
    try {
      return { checksum: (await timedAsync(what(), f)).checksum };
    } catch (e) {
      if (e instanceof assert.AssertionError) throw e;
      return { code: typed(e, FILEZ_CODES, what()).code };
    }
  };
  const one = await outcome(() => verifyFilezBytes(data));
  const streamed = await outcome(() => verifyFilez(pieces(data, cuts)));
  assert.equal(streamed.checksum, one.checksum, `one-piece and streaming verification agree: ${what()}`);
  assert.equal(streamed.code === undefined, one.code === undefined, `both accept or both refuse: ${what()}`);
  // inflateFilezBytes (the readers' decoder) agrees too.
  try {
    const r = timed(what(), () => inflateFilezBytes(data));
    assert.equal(r.checksum, one.checksum, `inflateFilezBytes agrees: ${what()}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    const code = typed(e, FILEZ_CODES, what()).code;
    assert.ok(one.code !== undefined || code === 'TOO_LARGE', `inflateFilezBytes refuses (${code}) what verifyFilezBytes accepts: ${what()}`);
  }
  return one;
}

test('.filez: valid objects verify to their content checksum; mutations of them are refused or verify alike, one-piece and streamed', async () => {
  const mem = memoryWatch();
  let refused = 0;
  await fc.assert(
    fc.asyncProperty(headerArb, contentArb, fc.option(mutationsArb, { nil: undefined }), fc.array(fc.nat(), { maxLength: 5 }), async (header, content, muts, cuts) => {
      const isLink = (header.mode & 0o170000) === 0o120000;
      const body = isLink ? Buffer.alloc(0) : content;
      const valid = await filez(header, body);
      const data = muts ? mutate(valid, muts) : valid;
      const what = () => `.filez ${muts ? `mutated by ${JSON.stringify(muts)}` : 'as encoded'} (${data.length} bytes): ${data.toString('hex').slice(0, 200)}`;
      const r = await bothFilez(data, cuts, what);
      if (!muts) assert.equal(r.checksum, contentChecksumOf(header, body), what());
      if (r.code) refused++;
      mem.sample();
    }),
    params(1500),
  );
  mem.check('.filez');
  assert.ok(refused > 0);
});

test('.filez: arbitrary bytes and a valid header before arbitrary or foreign deflate bodies', async () => {
  const mem = memoryWatch();
  const header = (await filez({ uid: 0, gid: 0, mode: 0o100644, symlinkTarget: '', xattrs: [] }, Buffer.from('x'))).subarray(0, -3);
  const headerLen = 8 + header.readUInt32BE(0);
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.uint8Array({ maxLength: 600 }).map((u) => Buffer.from(u)),
        // the archive header of a 1-byte file, then anything
        fc.uint8Array({ maxLength: 600 }).map((u) => Buffer.concat([header.subarray(0, headerLen), Buffer.from(u)])),
        // then a real deflate stream of other content (sizes disagree), possibly with trailing bytes
        fc.tuple(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 4 })).map(([c, t]) =>
          Buffer.concat([header.subarray(0, headerLen), deflateRawSync(Buffer.from(c)), Buffer.from(t)]),
        ),
      ),
      fc.array(fc.nat(), { maxLength: 4 }),
      async (data, cuts) => {
        await bothFilez(data, cuts, () => `${data.length} bytes: ${data.toString('hex').slice(0, 200)}`);
        mem.sample();
      },
    ),
    params(2000),
  );
  mem.check('.filez arbitrary');
});

test('.filez: decompression bombs (a few kB inflating to 256 MiB) stop at the declared size', async () => {
  const mem = memoryWatch();
  const bombBody = deflateRawSync(Buffer.alloc(256 * 1024 * 1024), { level: 9 }); // ~256 kB
  const mkHeader = async (size: number) => {
    const h = await filez({ uid: 0, gid: 0, mode: 0o100644, symlinkTarget: '', xattrs: [] }, Buffer.alloc(0));
    // rewrite the declared size (big-endian u64 in the variant's first 8 bytes)
    const hdr = Buffer.from(h.subarray(0, 8 + h.readUInt32BE(0)));
    hdr.writeBigUInt64BE(BigInt(size), 8);
    return hdr;
  };
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.nat({ max: 4096 }), fc.integer({ min: 1 << 20, max: 64 << 20 })), fc.array(fc.nat(), { maxLength: 3 }), async (declared, cuts) => {
      const data = Buffer.concat([await mkHeader(declared), bombBody]);
      const r = await bothFilez(data, cuts, () => `bomb declaring ${declared} bytes`);
      assert.equal(r.code, 'INVALID_OBJECT', `a bomb declaring ${declared} bytes is refused`);
      mem.sample();
    }),
    params(30),
  );
  mem.check('bombs');
});

// ---------------------------------------------------------------------------------------------
// Delta reader and xz

const DELTA_CODES: readonly ErrorCode[] = ['INVALID_OBJECT', 'INVALID_GVARIANT', 'TOO_LARGE', 'CHECKSUM_MISMATCH', 'NOT_FOUND', 'INVALID_CHECKSUM'];

interface DeltaFixture {
  name: string;
  superblock: Buffer;
  parts: Buffer[];
}

function deltaFixtures(): DeltaFixture[] {
  return [
    { name: 'scratch→S2', superblock: readFileVector(FILES.scratchSuperblock), parts: [readFileVector(FILES.scratchPart0)] },
    { name: 'S1→S2', superblock: readFileVector(FILES.fromToSuperblock), parts: [readFileVector(FILES.fromToPart0)] },
    { name: 'inline scratch→S1', superblock: readFileVector(FILES.inlineSuperblock), parts: [] },
  ];
}

/** Opens the delta and loads every part: succeeds, or a typed refusal. */
async function readWholeDelta(superblock: Buffer, parts: Buffer[], what: () => string, limits?: Parameters<typeof openDelta>[1]): Promise<'ok' | ErrorCode> {
  try {
    await timedAsync(what(), async () => {
      const d = await openDelta(memoryDeltaSource(superblock, parts, 'fuzz'), limits);
      for (let i = 0; i < d.superblock.parts.length; i++) await loadPart(d, i);
      await describeDelta(memoryDeltaSource(superblock, parts, 'fuzz'));
    });
    return 'ok';
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    return typed(e, DELTA_CODES, what()).code;
  }
}

test('delta reader: the reference deltas read whole; mutated superblocks are refused with typed errors', async () => {
  const fixtures = deltaFixtures();
  for (const f of fixtures) assert.equal(await readWholeDelta(f.superblock, f.parts, () => f.name), 'ok', f.name);
  const mem = memoryWatch();
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...fixtures), mutationsArb, async (f, muts) => {
      const sb = mutate(f.superblock, muts);
      await readWholeDelta(sb, f.parts, () => `${f.name} superblock mutated by ${JSON.stringify(muts)}`);
      mem.sample();
    }),
    params(1500),
  );
  mem.check('superblocks');
});

test('delta reader: mutated and foreign part files under a superblock that vouches for them (checksum and size) are refused with typed errors', async () => {
  const fixtures = deltaFixtures().filter((f) => f.parts.length > 0);
  const mem = memoryWatch();
  const bomb = Buffer.concat([Buffer.from([0x78]), xzSync(Buffer.alloc(64 * 1024 * 1024))]);
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...fixtures),
      fc.oneof(
        mutationsArb.map((m) => ({ muts: m as Mutation[] | undefined, raw: undefined as Buffer | undefined })),
        fc.uint8Array({ maxLength: 400 }).map((u) => ({ muts: undefined, raw: Buffer.from(u) })),
        fc.constant({ muts: undefined, raw: bomb }),
      ),
      fc.option(fc.nat({ max: 1 << 24 }), { nil: undefined }),
      async (f, { muts, raw }, usize) => {
        const part = raw ?? mutate(f.parts[0]!, muts!);
        const s: Superblock = decodeSuperblock(f.superblock);
        s.parts[0] = { ...s.parts[0]!, checksum: sha256Hex(part), size: part.length, ...(usize !== undefined ? { usize } : {}) };
        const sb = encodeSuperblock(s);
        await readWholeDelta(sb, [part], () => `${f.name} part ${raw ? `of ${raw.length} arbitrary bytes` : `mutated by ${JSON.stringify(muts)}`}, usize ${usize}`);
        mem.sample();
      },
    ),
    params(1200),
  );
  mem.check('parts');
});

test('xz: mutated, truncated and arbitrary streams decompress within the bound or are refused with typed errors; bombs stop', async () => {
  const mem = memoryWatch();
  const samples = await Promise.all([
    xzCompress(Buffer.from('hello, static delta part '.repeat(200))),
    xzCompress(Buffer.alloc(100_000)),
    xzCompress(Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919) & 0xff))),
    Promise.resolve(readFileVector(FILES.scratchPart0).subarray(1)),
    Promise.resolve(Buffer.from(xzSync(Buffer.from('ostree writes crc64')))),
  ]);
  const bomb = Buffer.from(xzSync(Buffer.alloc(128 * 1024 * 1024))); // ~20 kB
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.tuple(fc.constantFrom(...samples), mutationsArb).map(([s, m]) => mutate(s, m)),
        fc.constantFrom(...samples).chain((s) => fc.nat({ max: s.length }).map((n) => s.subarray(0, n))),
        fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
        fc.constantFrom(...samples).chain((s) => fc.uint8Array({ minLength: 1, maxLength: 40 }).map((u) => Buffer.concat([s.subarray(0, 12), Buffer.from(u), s.subarray(s.length - 12)]))),
        fc.tuple(fc.constant(bomb), mutationsArb).map(([s, m]) => mutate(s, m)),
        fc.constant(bomb),
      ),
      fc.oneof(fc.constant(1 << 20), fc.nat({ max: 200_000 }), fc.constant(0)),
      async (data, max) => {
        const what = () => `xz of ${data.length} bytes (limit ${max}): ${data.toString('hex').slice(0, 200)}`;
        let declared: number | undefined;
        try {
          declared = timed(what(), () => xzDeclaredSize(data));
        } catch (e) {
          if (e instanceof assert.AssertionError) throw e;
          typed(e, ['INVALID_OBJECT'], what());
        }
        try {
          const out = await timedAsync(what(), () => xzDecompress(data, max));
          assert.ok(declared !== undefined && out.length === declared && out.length <= max, `${what()}: ${out.length} bytes out`);
        } catch (e) {
          if (e instanceof assert.AssertionError) throw e;
          typed(e, ['INVALID_OBJECT', 'TOO_LARGE'], what());
        }
        mem.sample();
      },
    ),
    params(1500),
  );
  mem.check('xz');
});

test('delta part files: arbitrary compression byte and payloads, bounded', async () => {
  const mem = memoryWatch();
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), fc.nat({ max: 1 << 20 }), async (u, max) => {
      const file = Buffer.from(u);
      try {
        await timedAsync('part', () => decodePartFile(file, max));
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        typed(e, ['INVALID_OBJECT', 'INVALID_GVARIANT', 'TOO_LARGE'], `part file ${file.toString('hex').slice(0, 200)}`);
      }
      mem.sample();
    }),
    params(1500),
  );
  mem.check('part files');
});
