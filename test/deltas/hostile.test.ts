// Hostile deltas: each is a valid-looking delta (correct part checksums, so the bytes reach the
// opcode engine) with one lie in it. Every one must end in a typed CairnError — never another
// exception, a hang or an out-of-bounds read — and leave no commit behind.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { xzSync } from 'node-liblzma';
import { applyDelta } from '../../storage/deltas/apply';
import {
  COMPRESSION_XZ,
  decodePartFile,
  decodeSuperblock,
  DeltaOp,
  encodePartFile,
  encodePartPayload,
  encodeSuperblock,
  readVarint,
  writeVarint,
  type PartPayload,
  type Superblock,
} from '../../storage/deltas/format';
import { memoryDeltaSource, openDelta } from '../../storage/deltas/read';
import { xzDecompress } from '../../storage/deltas/xz';
import { CairnError } from '../../storage/errors';
import { sha256Hex } from '../../storage/objects/checksum';
import { ObjectType } from '../../storage/objects/types';
import { readRepoFile, S2 } from '../helpers/fixtures';
import { makeTempDir, removeTempDirs } from '../helpers/ostree';
import { freshRepo } from './helpers';

const DIR = 'deltas/LW/823s3wgjLN27gsBJOtHPmeXIyPPOh9KIZFcBJ0EZ8';
let scratch: string;
let sb: Superblock;
let payload: PartPayload;

before(async () => {
  scratch = await makeTempDir('cairn-delta-hostile-');
  sb = decodeSuperblock(readRepoFile(`${DIR}/superblock`));
  payload = await decodePartFile(readRepoFile(`${DIR}/0`), 1 << 20);
});
after(removeTempDirs);

/** A delta whose part 0 is `file` (checksum and size made consistent unless `lie` changes them). */
function deltaWith(file: Buffer, lie: (s: Superblock) => void = () => {}) {
  const s: Superblock = { ...sb, parts: sb.parts.map((p) => ({ ...p, objects: [...p.objects] })) };
  s.parts[0] = { ...s.parts[0]!, checksum: sha256Hex(file), size: file.length };
  lie(s);
  return memoryDeltaSource(encodeSuperblock(s), [file], 'hostile');
}

async function withPayload(p: Partial<PartPayload>, lie?: (s: Superblock) => void) {
  return deltaWith(await encodePartFile(encodePartPayload({ ...payload, ...p })), lie);
}

function ops(...parts: Array<number | number[]>): Buffer {
  const out: number[] = [];
  for (const p of parts) {
    if (Array.isArray(p)) for (const v of p) writeVarint(out, v);
    else out.push(p);
  }
  return Buffer.from(out);
}

async function refused(source: ReturnType<typeof memoryDeltaSource>, codes: string[], what: string): Promise<void> {
  const { repo } = await freshRepo(scratch, 'h');
  await assert.rejects(applyDelta(repo, source), (e: unknown) => {
    assert.ok(e instanceof CairnError, `${what}: expected a CairnError, got ${(e as Error)?.stack ?? e}`);
    assert.ok(codes.includes(e.code), `${what}: code ${e.code} (${e.message}) not in ${codes.join(',')}`);
    return true;
  });
  assert.equal(await repo.hasObject(S2, ObjectType.Commit), false, `${what}: no commit left behind`);
}

test('the unmodified fixture delta applies (the control case)', async () => {
  const { repo } = await freshRepo(scratch, 'ok');
  const r = await applyDelta(repo, deltaWith(readRepoFile(`${DIR}/0`)));
  assert.equal(r.commit, S2);
});

test('opcode-level lies are refused', async () => {
  const firstMetaSize = readVarint(payload.ops, 1)[0];
  const cases: Array<[string, Promise<ReturnType<typeof memoryDeltaSource>>, string[]]> = [
    ['unknown opcode', withPayload({ ops: Buffer.concat([Buffer.from([0x99]), payload.ops]) }), ['INVALID_OBJECT']],
    ['S offset past the blob', withPayload({ ops: ops(DeltaOp.OpenSpliceAndClose, [firstMetaSize, payload.blob.length]) }), ['INVALID_OBJECT']],
    ['S size past the blob', withPayload({ ops: ops(DeltaOp.OpenSpliceAndClose, [2 ** 40, 0]) }), ['INVALID_OBJECT']],
    ['huge varint', withPayload({ ops: ops(DeltaOp.OpenSpliceAndClose, [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER]) }), ['INVALID_OBJECT']],
    ['truncated varint', withPayload({ ops: Buffer.from([DeltaOp.OpenSpliceAndClose, 0x80, 0x80]) }), ['INVALID_OBJECT']],
    ['11-byte varint', withPayload({ ops: Buffer.from([DeltaOp.OpenSpliceAndClose, ...Array(11).fill(0xff), 0]) }), ['INVALID_OBJECT']],
    ['no ops: objects never produced', withPayload({ ops: Buffer.alloc(0) }), ['INVALID_OBJECT']],
    ['metadata spliced with wrong bytes', withPayload({ ops: ops(DeltaOp.OpenSpliceAndClose, [firstMetaSize, 1]) }), ['CHECKSUM_MISMATCH', 'INVALID_OBJECT']],
    ['w without an open object', withPayload({ ops: ops(DeltaOp.Write, [1, 0]) }), ['INVALID_OBJECT']],
    ['c without an open object', withPayload({ ops: ops(DeltaOp.Close) }), ['INVALID_OBJECT']],
    ['B without a source', withPayload({ ops: ops(DeltaOp.Bspatch, [0, 10]) }), ['INVALID_OBJECT']],
    ['r pointing past the blob', withPayload({ ops: ops(DeltaOp.SetReadSource, [payload.blob.length - 5]) }), ['INVALID_OBJECT']],
    ['r naming an absent object', withPayload({ ops: ops(DeltaOp.SetReadSource, [0]) }), ['MISSING_OBJECTS']],
    ['mode index out of range', withPayload({ modes: [] }), ['INVALID_OBJECT']],
    ['xattr index out of range', withPayload({ xattrs: [] }), ['INVALID_OBJECT']],
  ];
  for (const [what, src, codes] of cases) await refused(await src, codes, what);
});

test('opening content: o/w/B/c lies (sizes, bounds, hostile patch)', async () => {
  // Make part 0 produce a single content object (the first file record) with o/w/c or B.
  const fileIdx = sb.parts[0]!.objects.findIndex((o) => o.type === ObjectType.File);
  const only = (s: Superblock) => {
    s.parts[0]!.objects = [s.parts[0]!.objects[fileIdx]!];
  };
  const mk = (o: Buffer, extraBlob = Buffer.alloc(0)) => withPayload({ ops: o, blob: Buffer.concat([payload.blob, extraBlob]) }, only);
  const regular = payload.modes.findIndex((m) => (m.mode & 0o170000) === 0o100000);
  const cases: Array<[string, Promise<ReturnType<typeof memoryDeltaSource>>, string[]]> = [
    ['o larger than usize', mk(ops(DeltaOp.Open, [regular, 0, 2 ** 30])), ['INVALID_OBJECT', 'TOO_LARGE']],
    ['o larger than the object limit', mk(ops(DeltaOp.Open, [regular, 0, 2 ** 45])), ['TOO_LARGE', 'INVALID_OBJECT']],
    ['w past the declared size', mk(ops(DeltaOp.Open, [regular, 0, 4], DeltaOp.Write, [8, 0])), ['INVALID_OBJECT']],
    ['c before all bytes are written', mk(ops(DeltaOp.Open, [regular, 0, 4], DeltaOp.Write, [2, 0], DeltaOp.Close)), ['INVALID_OBJECT']],
    ['o twice', mk(ops(DeltaOp.Open, [regular, 0, 4], DeltaOp.Open, [regular, 0, 4])), ['INVALID_OBJECT']],
    ['left open', mk(ops(DeltaOp.Open, [regular, 0, 4], DeltaOp.Write, [4, 0])), ['INVALID_OBJECT']],
    ['wrong content', mk(ops(DeltaOp.Open, [regular, 0, 4], DeltaOp.Write, [4, 0], DeltaOp.Close)), ['CHECKSUM_MISMATCH']],
  ];
  for (const [what, src, codes] of cases) await refused(await src, codes, what);

  // A hostile bsdiff patch against a real read source: first produce the object, then patch from it.
  const { repo } = await freshRepo(scratch, 'bs');
  await applyDelta(repo, deltaWith(readRepoFile(`${DIR}/0`)));
  const source = Buffer.from(sb.parts[0]!.objects[fileIdx]!.checksum, 'hex');
  const evil = Buffer.alloc(24);
  evil.writeUInt32LE(0xffffffff, 0); // diff length far beyond the patch
  const at = payload.blob.length;
  const src = await mk(ops(DeltaOp.SetReadSource, [at], DeltaOp.Open, [regular, 0, 16], DeltaOp.Bspatch, [at + 32, 24], DeltaOp.Close), Buffer.concat([source, evil]));
  await assert.rejects(applyDelta(repo, src), (e: unknown) => e instanceof CairnError && e.code === 'INVALID_OBJECT');
});

test('part-level lies: size, checksum, bad xz, xz bomb, unknown compression', async () => {
  const good = readRepoFile(`${DIR}/0`);
  await refused(deltaWith(good, (s) => (s.parts[0]!.size += 1)), ['INVALID_OBJECT'], 'size differs');
  await refused(deltaWith(good, (s) => (s.parts[0]!.checksum = '00'.repeat(32))), ['CHECKSUM_MISMATCH'], 'checksum differs');
  const flipped = Buffer.from(good);
  flipped[flipped.length >> 1] ^= 0x40;
  await refused(deltaWith(flipped), ['INVALID_OBJECT'], 'corrupt xz');
  await refused(deltaWith(good.subarray(0, good.length - 20)), ['INVALID_OBJECT'], 'truncated xz');
  await refused(deltaWith(Buffer.concat([good, Buffer.from('trailing')])), ['INVALID_OBJECT'], 'xz with trailing bytes');
  await refused(deltaWith(Buffer.from([0x67, 1, 2, 3])), ['INVALID_OBJECT'], 'unknown compression byte');
  await refused(deltaWith(Buffer.from([COMPRESSION_XZ, 1, 2, 3])), ['INVALID_OBJECT'], 'not xz at all');
  const bomb = Buffer.concat([Buffer.from([COMPRESSION_XZ]), xzSync(Buffer.alloc(256 * 1024 * 1024))]);
  const t = Date.now();
  await refused(deltaWith(bomb), ['TOO_LARGE'], 'xz bomb');
  assert.ok(Date.now() - t < 5000, 'the bomb is refused before it is inflated');
  // The decompressor alone: a stream whose index lies about its size is stopped at the declared size.
  await assert.rejects(xzDecompress(xzSync(Buffer.alloc(1 << 20)), 1000), (e: unknown) => e instanceof CairnError && e.code === 'TOO_LARGE');
});

test('superblock-level lies: digest, commit, object counts, truncation', async () => {
  const raw = readRepoFile(`${DIR}/superblock`);
  await assert.rejects(openDelta(memoryDeltaSource(raw, []), { expectedDigest: '11'.repeat(32) }), (e: unknown) => e instanceof CairnError && e.code === 'CHECKSUM_MISMATCH');
  for (let cut = 1; cut < raw.length; cut += 37) {
    await assert.rejects(openDelta(memoryDeltaSource(raw.subarray(0, cut), [])), (e: unknown) => e instanceof CairnError, `cut at ${cut}`);
  }
  const otherTo = encodeSuperblock({ ...sb, to: '22'.repeat(32) });
  await assert.rejects(openDelta(memoryDeltaSource(otherTo, [])), (e: unknown) => e instanceof CairnError && e.code === 'INVALID_OBJECT');
  await assert.rejects(openDelta(memoryDeltaSource(raw, []), { limits: { maxObjects: 5 } }), (e: unknown) => e instanceof CairnError && e.code === 'TOO_LARGE');
  // More objects listed than the opcodes produce.
  await refused(deltaWith(readRepoFile(`${DIR}/0`), (s) => s.parts[0]!.objects.push({ type: ObjectType.DirMeta, checksum: '33'.repeat(32) })), ['INVALID_OBJECT'], 'extra object');
  // A fallback the caller cannot fetch.
  await refused(deltaWith(readRepoFile(`${DIR}/0`), (s) => s.fallbacks.push({ type: ObjectType.File, checksum: '44'.repeat(32), compressedSize: 1, size: 1 })), ['MISSING_OBJECTS'], 'unfetchable fallback');
});

test('seeded mutation fuzz of the opcode stream and blob: only CairnErrors, never a crash', async () => {
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const { repo } = await freshRepo(scratch, 'fuzz');
  let refusedCount = 0;
  for (let i = 0; i < 150; i++) {
    const o = Buffer.from(payload.ops);
    const b = Buffer.from(payload.blob);
    for (let k = 0; k < 1 + rnd(3); k++) {
      if (rnd(2)) o[rnd(o.length)] = rnd(256);
      else b[rnd(b.length)] = rnd(256);
    }
    try {
      await applyDelta(repo, await withPayload({ ops: o, blob: b }));
    } catch (e) {
      assert.ok(e instanceof CairnError, `iteration ${i}: ${(e as Error)?.stack ?? e}`);
      refusedCount++;
    }
  }
  assert.ok(refusedCount > 100, `most mutations are refused (${refusedCount}/150)`);
});
