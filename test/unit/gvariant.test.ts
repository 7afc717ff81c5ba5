import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import { CairnError } from '../../storage/errors';
import { Variant, dictGet, offsetSizeFor, parse, parseType, serialize, type VarDict } from '../../storage/gvariant';
import {
  ED25519_PUBLIC_B64,
  FILES,
  INLINE_PART_SHA256,
  OBJECTS,
  ROOT_DIRMETA,
  S1,
  S1_MB64,
  S1_ROOT_DIRTREE,
  S2,
  S2_ROOT_DIRTREE,
  EMPTY_DIRTREE,
  SUPERBLOCK_TYPE,
  objectPath,
  readExtraFile,
  readFileVector,
  readRepoFile,
  readSourceTrees,
  type ObjectVector,
} from '../helpers/fixtures';
import { mulberry32 } from '../helpers/prng';

// ---------------------------------------------------------------------------
// helpers

const T = {
  commit: '(a{sv}aya(say)sstayay)',
  dirtree: '(a(say)a(sayay))',
  dirmeta: '(uuua(ayay))',
  asv: 'a{sv}',
  archiveHeader: '(tuuuusa(ayay))',
  fileHeader: '(uuuusa(ayay))',
  summary: '(a(s(taya{sv}))a{sv})',
} as const;

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const hex = (s: string): Buffer => Buffer.from(s.replace(/[\s|]/g, ''), 'hex');
/** ostree byte-swaps [BE] fields before serializing; read them back. */
const be64 = (v: bigint): bigint => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b.readBigUInt64BE();
};
const be32 = (v: number): number => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b.readUInt32BE();
};

/**
 * parse() turns any stray exception into INVALID_GVARIANT as a safety net; a
 * message that comes from Node (a RangeError of a Buffer read, a stack
 * overflow, a TypeError) means the codec read out of bounds or crashed and
 * only the net caught it. Those count as failures here.
 */
const NODE_INTERNAL = /The value of|It must be|outside buffer bounds|out of range of|Maximum call stack|Cannot read|is not a function|is not iterable|undefined|ERR_/;

function isGvError(e: unknown): boolean {
  if (!(e instanceof CairnError) || e.code !== 'INVALID_GVARIANT') return false;
  // the quoted type string comes from the input: only the reason is checked
  return !NODE_INTERNAL.test(e.message.replace(/^invalid GVariant type ".*": /s, ''));
}

function describeErr(e: unknown): string {
  if (e instanceof CairnError) return `CairnError ${e.code}: ${e.message}`;
  if (e instanceof Error) return `${e.constructor.name}: ${e.message}`;
  return String(e);
}

function assertRejects(type: string, buf: Buffer, what: string): void {
  try {
    parse(type, buf);
  } catch (e) {
    assert.ok(isGvError(e), `${what}: expected INVALID_GVARIANT, got ${describeErr(e)}`);
    return;
  }
  assert.fail(`${what}: ${type} ${buf.toString('hex').slice(0, 120)} was accepted`);
}

/**
 * The hostile-input property: the bytes either parse to a value that
 * re-serializes to exactly the same bytes, or are refused with a CairnError
 * INVALID_GVARIANT. Also in lenient mode (requireNormal: false) nothing else
 * may be thrown, and the value it gives serializes to normal form that parses
 * back (strictly) to the same bytes.
 */
function checkHostile(type: string, buf: Buffer, ctx: () => string): 'ok' | 'rejected' {
  let result: 'ok' | 'rejected';
  let value: unknown;
  try {
    value = parse(type, buf);
    result = 'ok';
  } catch (e) {
    if (!isGvError(e)) assert.fail(`${ctx()}: strict parse threw ${describeErr(e)}`);
    result = 'rejected';
  }
  if (result === 'ok') {
    const again = serialize(type, value);
    if (!again.equals(buf)) assert.fail(`${ctx()}: parse accepted bytes that do not re-serialize identically`);
  }
  let lenient: unknown;
  try {
    lenient = parse(type, buf, { requireNormal: false });
  } catch (e) {
    if (!isGvError(e)) assert.fail(`${ctx()}: lenient parse threw ${describeErr(e)}`);
    if (result === 'ok') assert.fail(`${ctx()}: strict parse accepted what lenient parse refused`);
    return result;
  }
  let normal: Buffer;
  try {
    normal = serialize(type, lenient);
  } catch (e) {
    assert.fail(`${ctx()}: serializing a leniently parsed value threw ${describeErr(e)}`);
  }
  try {
    const back = serialize(type, parse(type, normal));
    if (!back.equals(normal)) assert.fail(`${ctx()}: normalized bytes do not round-trip`);
  } catch (e) {
    assert.fail(`${ctx()}: normalized bytes are refused: ${describeErr(e)}`);
  }
  return result;
}

const prng = mulberry32;

// ---------------------------------------------------------------------------
// the vectors

interface Vec {
  name: string;
  type: string;
  bytes: Buffer;
}

const OBJECT_TYPES: Record<string, string | undefined> = {
  commit: T.commit,
  dirtree: T.dirtree,
  dirmeta: T.dirmeta,
  commitmeta: T.asv,
};

function filezParts(o: ObjectVector): { header: Buffer; body: Buffer; lenField: Buffer } {
  const file = readFileSync(objectPath(o));
  const len = file.readUInt32BE(0);
  return { lenField: file.subarray(0, 8), header: file.subarray(8, 8 + len), body: file.subarray(8 + len) };
}

const VECTORS: Vec[] = [];
for (const o of OBJECTS) {
  const type = OBJECT_TYPES[o.ext];
  if (type) VECTORS.push({ name: `${o.what} (${o.ext})`, type, bytes: readFileSync(objectPath(o)) });
  else VECTORS.push({ name: `${o.what} (.filez header)`, type: T.archiveHeader, bytes: filezParts(o).header });
}
for (const f of Object.values(FILES)) {
  if ('gvType' in f) VECTORS.push({ name: f.what, type: f.gvType, bytes: readFileVector(f) });
}

const byName = (pred: (v: Vec) => boolean): Vec => {
  const v = VECTORS.find(pred);
  assert.ok(v);
  return v;
};
const S1_COMMIT = readRepoFile(`objects/${S1.slice(0, 2)}/${S1.slice(2)}.commit`);
const S2_COMMIT = readRepoFile(`objects/${S2.slice(0, 2)}/${S2.slice(2)}.commit`);

// ---------------------------------------------------------------------------

describe('GVariant: reference vectors from ostree 2022.7', () => {
  test('the vector table is complete', () => {
    // 11 metadata/commitmeta objects + 8 .filez headers + 9 GVariant repo/extra files
    assert.equal(VECTORS.length, 28);
    assert.equal(VECTORS.filter((v) => v.type === SUPERBLOCK_TYPE).length, 3);
    assert.equal(VECTORS.filter((v) => v.type === T.archiveHeader).length, 8);
  });

  for (const v of VECTORS) {
    test(`parse then serialize is byte-identical: ${v.name}`, () => {
      const value = parse(v.type, v.bytes);
      assert.deepEqual(serialize(v.type, value), v.bytes);
      const lenient = parse(v.type, v.bytes, { requireNormal: false });
      assert.deepEqual(serialize(v.type, lenient), v.bytes);
    });
  }

  test('file sizes and checksums match TESTDATA.md', () => {
    for (const o of OBJECTS) {
      const b = readFileSync(objectPath(o));
      assert.equal(b.length, o.size, o.what);
      if (o.ext === 'commit' || o.ext === 'dirtree' || o.ext === 'dirmeta') {
        assert.equal(sha256(b), o.checksum, `sha256 of metadata object ${o.what} is its name`);
      } else {
        assert.equal(sha256(b), o.fileSha256, o.what);
        assert.notEqual(sha256(b), o.checksum, `${o.what}: sha256(file) is not the object name`);
      }
    }
    for (const f of Object.values(FILES)) {
      const b = readFileVector(f);
      if (f.size !== undefined) assert.equal(b.length, f.size, f.what);
      if ('sha256' in f) assert.equal(sha256(b), f.sha256, f.what);
    }
    assert.equal(readRepoFile('refs/heads/sample/main').toString(), `${S2}\n`);
    assert.equal(readRepoFile('config').toString(), '[core]\nrepo_version=1\nmode=archive-z2\nindexed-deltas=true\n');
  });

  test('commit S1 decodes as documented (FORMATS.md worked example)', () => {
    const [meta, parent, related, subject, body, ts, rootTree, rootMeta] = parse(T.commit, S1_COMMIT);
    assert.deepEqual(meta, [
      ['version', new Variant('s', '1')],
      ['ostree.ref-binding', new Variant('as', ['sample/main'])],
    ]);
    assert.equal(parent.length, 0);
    assert.deepEqual(related, []);
    assert.equal(subject, 'sample 1');
    assert.equal(body, '');
    assert.equal(typeof ts, 'bigint');
    assert.equal(be64(ts), 1709251200n);
    assert.equal(rootTree.toString('hex'), S1_ROOT_DIRTREE);
    assert.equal(rootMeta.toString('hex'), ROOT_DIRMETA);
    // byte layout of the worked example: metadata a{sv} ends at 0x3a, timestamp at 0x48, reversed frame table
    assert.deepEqual(S1_COMMIT.subarray(0x48, 0x50), hex('0000000065e11a80'));
    assert.deepEqual(S1_COMMIT.subarray(0x90), hex('70 45 44 3b 3b 3b'));
  });

  test('commit S2: parent is S1, subject, timestamp, version', () => {
    const [meta, parent, , subject, body, ts, rootTree, rootMeta] = parse(T.commit, S2_COMMIT);
    assert.equal(parent.toString('hex'), S1);
    assert.equal(subject, 'sample 2');
    assert.equal(body, '');
    assert.equal(be64(ts), 1709337600n);
    assert.deepEqual(dictGet(meta, 'version'), new Variant('s', '2'));
    assert.deepEqual(dictGet(meta, 'ostree.ref-binding'), new Variant('as', ['sample/main']));
    assert.equal(rootTree.toString('hex'), S2_ROOT_DIRTREE);
    assert.equal(rootMeta.toString('hex'), ROOT_DIRMETA);
  });

  test('dirtrees: entries, sorting, checksums of children', () => {
    const tree = (c: string) => parse(T.dirtree, readFileSync(objectPath({ checksum: c, ext: 'dirtree' })));
    const [files, dirs] = tree(S1_ROOT_DIRTREE);
    assert.deepEqual(
      files.map(([n, c]: [string, Buffer]) => [n, c.toString('hex')]),
      [
        ['README', '3174e78680e10ca2281638bbb921b0f2271f6bcb1cf4f890a1dd2b547f2153af'],
        ['link', '08f79095017675d25e57de8a1f37f4a5fb9a1f62c74d00fd00c741aa71575082'],
      ],
    );
    assert.deepEqual(
      dirs.map(([n, t, m]: [string, Buffer, Buffer]) => [n, t.toString('hex'), m.toString('hex')]),
      [
        ['bin', 'b7042529d4fc751916275ff33ab60405e5d64a4f377e5f953d52dfde06251893', ROOT_DIRMETA],
        ['empty', EMPTY_DIRTREE, ROOT_DIRMETA],
        ['etc', 'ba6739d8a9087c7239a0c6b94750bbc983d5df44c56dc1b1804cbfe719c1271c', ROOT_DIRMETA],
      ],
    );
    const [etcFiles, etcDirs] = tree('83302cb035b1fb5468c17e1387e4d458ed34b4896dd9e6570146ad1136c60d57');
    assert.deepEqual(
      etcFiles.map(([n]: [string]) => n),
      ['conf', 'empty', 'new'],
    );
    assert.deepEqual(etcDirs, []);
    // every dirtree's arrays are strcmp-sorted and every child is a vector we hold
    const known = new Set(OBJECTS.map((o) => `${o.checksum}.${o.ext}`));
    for (const o of OBJECTS.filter((x) => x.ext === 'dirtree')) {
      const [f, d] = tree(o.checksum);
      for (const list of [f, d]) {
        const names = list.map((e: unknown[]) => Buffer.from(e[0] as string));
        const sorted = [...names].sort(Buffer.compare);
        assert.deepEqual(names, sorted, `${o.what} is sorted`);
      }
      for (const [, c] of f) assert.ok(known.has(`${c.toString('hex')}.filez`));
      for (const [, t, m] of d) {
        assert.ok(known.has(`${t.toString('hex')}.dirtree`));
        assert.ok(known.has(`${m.toString('hex')}.dirmeta`));
      }
    }
    // empty dirtree is the single byte 00
    assert.deepEqual(serialize(T.dirtree, [[], []]), Buffer.from([0]));
  });

  test('dirmeta: uid 0, gid 0, mode 040755 after the BE swap, no xattrs', () => {
    const bytes = readFileSync(objectPath({ checksum: ROOT_DIRMETA, ext: 'dirmeta' }));
    assert.deepEqual(bytes, hex('00000000 00000000 000041ed'));
    const [uid, gid, mode, xattrs] = parse(T.dirmeta, bytes);
    assert.equal(uid, 0);
    assert.equal(gid, 0);
    assert.equal(be32(mode), 0o40755);
    assert.deepEqual(xattrs, []);
    assert.deepEqual(serialize(T.dirmeta, [0, 0, be32(0o40755), []]), bytes);
  });

  test('.filez: archive headers decode, bodies inflate, content checksum equals the object name', () => {
    // object → its source file in extra/src-trees.tar
    const source: Record<string, string> = {
      '3174e78680e10ca2281638bbb921b0f2271f6bcb1cf4f890a1dd2b547f2153af': 'small1/README',
      '940d9ec6a8bdedabdccf1e6fe95d4e0dc644abdc49753c144c99d92e6a386b75': 'small2/README',
      '08f79095017675d25e57de8a1f37f4a5fb9a1f62c74d00fd00c741aa71575082': 'small1/link',
      '90f67e685f3f33bd4eb68b0624ee21e792075b8cbd31737f7811c5d206dcf18e': 'small1/etc/conf',
      cc700d46f407c6c5ab2d5dde474366a928b7398277e61162e7f8ec06f469f07e: 'small1/etc/empty',
      ade302966d6b52df9363c72c72a4079e589d89fdde5397e9da2dacb46c3b720b: 'small2/etc/new',
      '06f7adc6cc523e6aea87db1308e444f8146b42e28f0115051aea39df52176edc': 'small1/bin/tool',
      '719cddf0cfba314df96009e41554f0ba4649052b0bbc192fc20c229b3be53ede': 'small2/bin/tool',
    };
    const trees = readSourceTrees();
    assert.equal(trees.get('small2/README')!.data.toString(), 'OSTree sample readme v2\n');
    const expected: Record<string, { size: number; mode: number; target?: string; xattrs?: Array<[string, string]>; data?: Buffer }> = {};
    for (const [csum, p] of Object.entries(source)) {
      const e = trees.get(p);
      assert.ok(e, p);
      expected[csum] =
        e.type === 'symlink'
          ? { size: 0, mode: 0o120777, target: e.linkname }
          : { size: e.data.length, mode: 0o100000 | e.mode, data: e.data, ...(p.endsWith('etc/conf') ? { xattrs: [['user.note\0', 'hi']] } : {}) };
    }
    assert.equal(expected['08f79095017675d25e57de8a1f37f4a5fb9a1f62c74d00fd00c741aa71575082']!.target, 'README');
    assert.equal(expected['06f7adc6cc523e6aea87db1308e444f8146b42e28f0115051aea39df52176edc']!.mode, 0o100755);
    const filez = OBJECTS.filter((o) => o.ext === 'filez');
    assert.equal(filez.length, 8);
    const tools: Buffer[] = [];
    for (const o of filez) {
      const exp = expected[o.checksum];
      assert.ok(exp, o.what);
      const { lenField, header, body } = filezParts(o);
      assert.deepEqual(lenField.subarray(4), Buffer.alloc(4), 'four zero bytes after the length');
      const [size, uid, gid, mode, rdev, target, xattrs] = parse(T.archiveHeader, header);
      assert.equal(be64(size), BigInt(exp.size), `${o.what} size`);
      assert.equal(uid, 0);
      assert.equal(gid, 0);
      assert.equal(be32(mode), exp.mode, `${o.what} mode`);
      assert.equal(rdev, 0);
      assert.equal(target, exp.target ?? '');
      assert.deepEqual(
        xattrs.map(([n, v]: [Buffer, Buffer]) => [n.toString('latin1'), v.toString('latin1')]),
        exp.xattrs ?? [],
      );
      let data = Buffer.alloc(0);
      if (exp.target !== undefined) {
        assert.equal(body.length, 0, 'a symlink has no deflate body');
      } else {
        data = inflateRawSync(body);
        if (exp.size === 0) assert.deepEqual(body, hex('0300'));
      }
      assert.equal(data.length, exp.size);
      if (exp.data !== undefined) assert.deepEqual(data, exp.data, `${o.what}: inflated body equals the source file`);
      if (exp.mode === 0o100755) tools.push(data);
      // ContentChecksum of the uncompressed stream: BE32(len H) ‖ 0000 ‖ H ‖ data
      const h = serialize(T.fileHeader, [uid, gid, mode, rdev, target, xattrs]);
      const lenH = Buffer.alloc(8);
      lenH.writeUInt32BE(h.length, 0);
      assert.equal(sha256(Buffer.concat([lenH, h, data])), o.checksum, `content checksum of ${o.what}`);
    }
    // S2's bin/tool = S1's with every 97th byte XORed with 0x55
    assert.equal(tools.length, 2);
    const [t1, t2] = tools as [Buffer, Buffer];
    let diffs = 0;
    for (let i = 0; i < 4096; i++) if (t1[i] !== t2[i]) diffs++;
    assert.ok(diffs > 0 && diffs <= Math.ceil(4096 / 97), `bin/tool differs in ${diffs} bytes`);
  });

  test('FORMATS.md byte examples: symlink header and xattrs', () => {
    const symlink = serialize(T.archiveHeader, [0n, 0, 0, be32(0o120777), 0, 'README', []]);
    assert.deepEqual(symlink, Buffer.concat([hex('0000000000000000 00000000 00000000 0000a1ff 00000000'), Buffer.from('README\0'), hex('1f')]));
    assert.equal(symlink.length, 32);
    const link = filezParts(OBJECTS.find((o) => o.checksum.startsWith('08f79095'))!);
    assert.deepEqual(link.lenField, hex('00000020 00000000'));
    assert.deepEqual(link.header, symlink);
    const xattrs = serialize('a(ayay)', [
      [Buffer.from('user.abc\0'), Buffer.from('1')],
      [Buffer.from('user.foo\0'), Buffer.from('bar')],
    ]);
    assert.deepEqual(xattrs, Buffer.concat([Buffer.from('user.abc\0' + '1'), hex('09'), Buffer.from('user.foo\0' + 'bar'), hex('09 0b 18')]));
  });

  test('commitmeta (gpg + dummy) and summary.sig decode', () => {
    for (const [name, bytes] of [
      ['commitmeta', readFileSync(objectPath({ checksum: S1, ext: 'commitmeta' }))],
      ['summary.sig', readFileVector(FILES.summarySig)],
    ] as const) {
      const d: VarDict = parse(T.asv, bytes);
      assert.deepEqual(d.map(([k]) => k).sort(), ['ostree.gpgsigs', 'ostree.sign.dummy'], name);
      const dummy = dictGet(d, 'ostree.sign.dummy')!;
      assert.equal(dummy.type, 'aay');
      assert.deepEqual((dummy.value as Buffer[]).map((b) => b.toString()), ['testkey123']);
      const gpg = dictGet(d, 'ostree.gpgsigs')!;
      assert.equal(gpg.type, 'aay');
      const sigs = gpg.value as Buffer[];
      assert.equal(sigs.length, 1);
      assert.equal(sigs[0]!.length, 119, `${name}: one 119-byte binary OpenPGP signature`);
      assert.equal(sigs[0]![0], 0x88, 'old-format OpenPGP signature packet, not armored');
    }
  });

  test('ed25519 commitmeta and summary.sig: one 64-byte signature that verifies with the public key', () => {
    const pubB64 = readExtraFile('ed25519.public.b64').toString().trim();
    assert.equal(pubB64, ED25519_PUBLIC_B64);
    const pub = Buffer.from(pubB64, 'base64');
    const secret = Buffer.from(readExtraFile('ed25519.secret.b64').toString().trim(), 'base64');
    assert.equal(secret.length, 64);
    assert.deepEqual(secret.subarray(0, 32), Buffer.from(Array.from({ length: 32 }, (_, i) => i)), 'seed is 00..1f');
    assert.deepEqual(secret.subarray(32), pub, 'secret = seed ‖ pk');
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: pub.toString('base64url') }, format: 'jwk' });
    for (const [file, signed] of [
      [FILES.s1CommitmetaEd25519, S1_COMMIT],
      [FILES.summarySigEd25519, readFileVector(FILES.summary)],
    ] as const) {
      const d: VarDict = parse(T.asv, readFileVector(file));
      assert.equal(d.length, 1);
      const v = dictGet(d, 'ostree.sign.ed25519')!;
      assert.equal(v.type, 'aay');
      const sigs = v.value as Buffer[];
      assert.equal(sigs.length, 1);
      assert.equal(sigs[0]!.length, 64);
      assert.ok(cryptoVerify(null, signed, key, sigs[0]!), `${file.what} verifies`);
      const tampered = Buffer.from(signed);
      tampered[0]! ^= 1;
      assert.ok(!cryptoVerify(null, tampered, key, sigs[0]!));
    }
  });

  test('summary: ref sample/main, size 182 little-endian, [BE] timestamp, deltas, flags', () => {
    const summary = readFileVector(FILES.summary);
    const [refs, meta] = parse(T.summary, summary);
    assert.equal(refs.length, 1);
    const [name, [size, csum, refMeta]] = refs[0];
    assert.equal(name, 'sample/main');
    assert.equal(size, 182n, 'commit size is stored little-endian (not [BE])');
    assert.equal(size, BigInt(S2_COMMIT.length));
    assert.equal(csum.toString('hex'), S2);
    const ts = dictGet(refMeta, 'ostree.commit.timestamp')!;
    assert.equal(ts.type, 't');
    assert.equal(be64(ts.value as bigint), 1709337600n);
    assert.deepEqual(dictGet(refMeta, 'ostree.commit.version'), new Variant('s', '2'));
    assert.deepEqual(dictGet(meta, 'ostree.summary.mode'), new Variant('s', 'archive-z2'));
    assert.deepEqual(dictGet(meta, 'ostree.summary.tombstone-commits'), new Variant('b', false));
    assert.deepEqual(dictGet(meta, 'ostree.summary.indexed-deltas'), new Variant('b', true));
    const lm = dictGet(meta, 'ostree.summary.last-modified')!;
    assert.equal(lm.type, 't');
    const lmSecs = be64(lm.value as bigint);
    assert.ok(lmSecs >= 1709337600n && lmSecs < 4102444800n, `last-modified ${lmSecs} is a plausible [BE] time`);
    const deltas = dictGet(meta, 'ostree.static-deltas')!;
    assert.equal(deltas.type, 'a{sv}');
    const expectedDeltas = new Map([
      [S2, sha256(readFileVector(FILES.scratchSuperblock))],
      [`${S1}-${S2}`, sha256(readFileVector(FILES.fromToSuperblock))],
    ]);
    const got = new Map((deltas.value as VarDict).map(([k, v]) => [k, (assert.equal(v.type, 'ay'), (v.value as Buffer).toString('hex'))]));
    assert.deepEqual(got, expectedDeltas);
    // the delta index lists the same deltas
    const index: VarDict = parse(T.asv, readFileVector(FILES.deltaIndex));
    assert.equal(index.length, 1);
    const idx = dictGet(index, 'ostree.static-deltas')!;
    assert.deepEqual(new Map((idx.value as VarDict).map(([k, v]) => [k, (v.value as Buffer).toString('hex')])), expectedDeltas);
  });

  test('tombstone-commit: {commit: ay "<hex>\\0"}', () => {
    const d: VarDict = parse(T.asv, readFileVector(FILES.tombstone));
    assert.equal(d.length, 1);
    const v = dictGet(d, 'commit')!;
    assert.equal(v.type, 'ay');
    const s = (v.value as Buffer).toString('latin1');
    assert.match(s, /^a4dc66[0-9a-f]{54}8232\0$/);
  });

  test('superblocks: endianness, from/to, embedded commit, part headers, objects', () => {
    const known = new Map(OBJECTS.filter((o) => o.ext !== 'commitmeta' && o.ext !== 'commit').map((o) => [o.checksum, o.ext]));
    const typeOf: Record<number, string> = { 1: 'filez', 2: 'dirtree', 3: 'dirmeta' };
    const cases = [
      { f: FILES.scratchSuperblock, from: '', to: S2, commit: S2_COMMIT, part: readFileVector(FILES.scratchPart0), nobjs: 11 },
      { f: FILES.fromToSuperblock, from: S1, to: S2, commit: S2_COMMIT, part: readFileVector(FILES.fromToPart0), nobjs: 6 },
      { f: FILES.inlineSuperblock, from: '', to: S1, commit: S1_COMMIT, part: null, nobjs: null },
    ];
    for (const c of cases) {
      const [meta, genTime, from, to, commit, empty, parts, fallbacks] = parse(SUPERBLOCK_TYPE, readFileVector(c.f));
      assert.deepEqual(dictGet(meta, 'ostree.endianness'), new Variant('y', 0x6c), `${c.f.what}: endianness 'l'`);
      assert.equal(typeof genTime, 'bigint');
      assert.equal(from.toString('hex'), c.from);
      assert.equal(to.toString('hex'), c.to);
      assert.deepEqual(serialize(T.commit, commit), c.commit, 'the embedded commit is the exact commit object');
      assert.equal(empty.length, 0);
      assert.deepEqual(fallbacks, []);
      assert.equal(parts.length, 1);
      const [version, csum, size, usize, objects] = parts[0];
      assert.equal(version, 0);
      assert.equal(objects.length % 33, 0);
      assert.ok(usize > 0n);
      let partBytes = c.part;
      if (partBytes === null) {
        const key = `deltas/${S1_MB64.slice(0, 2)}/${S1_MB64.slice(2)}/0`;
        const inline = dictGet(meta, key)!;
        assert.equal(inline.type, '(yay)');
        const [kind, payload] = inline.value as [number, Buffer];
        assert.equal(kind, 0x78, "inline part is 'x' + xz");
        partBytes = Buffer.concat([Buffer.from([kind]), payload]);
        assert.equal(sha256(partBytes), INLINE_PART_SHA256);
      }
      assert.equal(csum.toString('hex'), sha256(partBytes), 'part checksum = sha256(part file)');
      assert.equal(size, BigInt(partBytes.length), 'part size (little-endian)');
      assert.equal(partBytes[0], 0x78);
      if (c.nobjs !== null) {
        assert.equal(objects.length / 33, c.nobjs);
        for (let i = 0; i < objects.length; i += 33) {
          const ot = typeOf[objects[i]];
          const oc = objects.subarray(i + 1, i + 33).toString('hex');
          assert.ok(ot, `object type byte ${objects[i]}`);
          assert.equal(known.get(oc), ot, `delta object ${oc}.${ot} is a known vector`);
        }
      }
    }
  });
});

// ---------------------------------------------------------------------------

describe('GVariant: serialization rules (FORMATS.md §2)', () => {
  const rt = (type: string, value: unknown, bytes: string): void => {
    const b = serialize(type, value);
    assert.equal(b.toString('hex'), hex(bytes).toString('hex'), `serialize ${type}`);
    assert.deepEqual(parse(type, b), value, `parse ${type}`);
  };

  test('basic types', () => {
    rt('y', 0xfe, 'fe');
    rt('b', true, '01');
    rt('b', false, '00');
    rt('n', -2, 'feff');
    rt('q', 0xfffe, 'feff');
    rt('i', -2, 'feffffff');
    rt('u', 0xfffffffe, 'feffffff');
    rt('x', -2n, 'feffffffffffffff');
    rt('t', 0xfffffffffffffffen, 'feffffffffffffff');
    rt('d', 1.5, '000000000000f83f');
    rt('s', 'hi', '686900');
    rt('s', '', '00');
    rt('o', '/a', '2f6100');
    rt('g', 'a{sv}', '617b73767d00');
    rt('s', 'é', 'c3a900');
  });

  test('unit tuple and fixed-size tuples', () => {
    rt('()', [], '00');
    rt('a()', [[], [], []], '000000');
    rt('(())', [[]], '00');
    rt('(yu)', [1, 2], '01000000 02000000');
    rt('(uy)', [2, 1], '02000000 01 000000');
    rt('(yy)', [1, 2], '0102');
    rt('a(uy)', [[1, 2], [3, 4]], '01000000 02000000 03000000 04000000');
    assert.equal(parseType('(uy)').fixedSize, 8);
    assert.equal(parseType('(ty)').fixedSize, 16);
    assert.equal(parseType('()').fixedSize, 1);
    assert.equal(parseType('(ys)').fixedSize, null);
  });

  test('empty arrays are 0 bytes; empty containers inside tuples still get offsets', () => {
    rt('ay', Buffer.alloc(0), '');
    rt('as', [], '');
    rt('au', [], '');
    rt('a{sv}', [], '');
    rt('aay', [], '');
    rt('(asas)', [[], []], '00');
    rt('(asay)', [[], Buffer.alloc(0)], '00');
    rt('aay', [Buffer.alloc(0), Buffer.alloc(0)], '0000');
    rt('as', ['a', 'b'], '6100 6200 02 04');
  });

  test('variable tuples: offsets of all but the last variable member, in reverse order', () => {
    rt('(ss)', ['a', 'b'], '6100 6200 02');
    rt('(sss)', ['a', 'bc', 'd'], '6100 626300 6400 05 02');
    rt('(sy)', ['ab', 7], '616200 07 03');
    rt('(ys)', [7, 'ab'], '07 616200');
    rt('(yv)', [1, new Variant('y', 2)], '01 00000000000000 02 00 79');
    rt('{sv}', ['k', new Variant('u', 7)], '6b00 000000000000 07000000 00 75 02');
  });

  test('maybe: Nothing is empty, Just(fixed) is the element, Just(variable) adds a 00', () => {
    rt('my', null, '');
    rt('my', 5, '05');
    rt('mu', 7, '07000000');
    rt('m(yu)', [1, 2], '01000000 02000000');
    rt('ms', null, '');
    rt('ms', 'a', '6100 00');
    rt('ms', '', '00 00');
    rt('may', Buffer.alloc(0), '00');
    rt('mas', [], '00');
    rt('mv', new Variant('y', 1), '01 00 79 00');
    rt('ams', ['a', null, 'b'], '610000 620000 03 03 06');
    rt('(msy)', [null, 3], '03 00');
    assertRejects('my', hex('0506'), 'Just(fixed) of wrong size');
    assertRejects('mu', hex('070000'), 'Just(u) of 3 bytes');
    assertRejects('ms', hex('6101'), 'Just(variable) without the trailing 00');
  });

  test('variants: nested variants and v of a{sv}', () => {
    rt('v', new Variant('s', 'x'), '7800 00 73');
    rt('v', new Variant('v', new Variant('s', 'x')), '7800 00 73 00 76');
    rt('v', new Variant('()', []), '00 00 2829');
    rt('v', new Variant('a{sv}', [['k', new Variant('u', 7)]]), '6b00 000000000000 07000000 00 75 02 0f 00 617b73767d');
    rt('v', new Variant('a{sv}', []), '00 617b73767d');
    rt('av', [new Variant('y', 1), new Variant('s', 'ab')], '01 00 79 00000000 00 616200 00 73 03 0d');
    rt('a{sv}', [['a', new Variant('v', new Variant('ay', Buffer.from('z')))]], '6100 000000000000 7a 00 6179 00 76 02 0f');
    // 100 levels of v in v round-trip
    let v = new Variant('y', 42);
    for (let i = 0; i < 100; i++) v = new Variant('v', v);
    const b = serialize('v', v);
    assert.equal(b.length, 1 + 1 + 1 + 100 * 2);
    assert.deepEqual(parse('v', b), v);
  });

  test('offset width switches at 0xff and 0xffff (arrays)', () => {
    const check = (lens: number[], width: number): void => {
      const value = lens.map((n, i) => Buffer.alloc(n, i + 1));
      const b = serialize('aay', value);
      const body = lens.reduce((a, n) => a + n, 0);
      assert.equal(b.length, body + lens.length * width, `aay ${lens} uses ${width}-byte offsets`);
      assert.equal(offsetSizeFor(b.length), width);
      // the table holds each element's end, little-endian, in order
      let end = 0;
      lens.forEach((n, i) => {
        end += n;
        assert.equal(b.readUIntLE(body + i * width, width), end);
      });
      assert.deepEqual(parse('aay', b), value);
    };
    check([254], 1); // 254 + 1 = 255: still 1 byte
    check([255], 2); // 255 + 1 = 256 > 0xff: 2 bytes
    check([100, 100, 52], 1); // 252 + 3 offsets = 255
    check([100, 100, 53], 2); // 253 + 3 = 256 > 0xff: 253 + 6
    check([65533], 2); // 65533 + 2 = 65535
    check([65534], 4); // 65534 + 2 > 0xffff: 4 bytes
    check([30000, 30000, 5529], 2); // 65529 + 6 = 65535
    check([30000, 30000, 5530], 4);
    // many small elements: 200 × "s" strings cross 0xff by count
    const strs = Array.from({ length: 200 }, (_, i) => String(i % 10));
    const sb = serialize('as', strs);
    assert.equal(sb.length, 400 + 200 * 2);
    assert.deepEqual(parse('as', sb), strs);
    assert.equal(offsetSizeFor(0), 0);
    assert.equal(offsetSizeFor(0x100000000), 8);
    assert.equal(offsetSizeFor(0xffffffff), 4);
  });

  test('offset width switches at 0xff and 0xffff (tuples and dict entries)', () => {
    for (const [l1, l2, width] of [
      [200, 54, 1],
      [200, 55, 2],
      [60000, 5533, 2],
      [60000, 5534, 4],
    ] as const) {
      const value = [Buffer.alloc(l1, 1), Buffer.alloc(l2, 2)];
      const b = serialize('(ayay)', value);
      assert.equal(b.length, l1 + l2 + width, `(ayay) ${l1}+${l2} uses ${width}-byte offsets`);
      assert.equal(b.readUIntLE(l1 + l2, width), l1);
      assert.deepEqual(parse('(ayay)', b), value);
    }
    const key = 'k'.repeat(300);
    const entry = serialize('{sv}', [key, new Variant('y', 1)]);
    // key 301 B, pad to 304, v 3 B, one 2-byte offset
    assert.equal(entry.length, 304 + 3 + 2);
    assert.equal(entry.readUInt16LE(entry.length - 2), 301);
    assert.deepEqual(parse('{sv}', entry), [key, new Variant('y', 1)]);
  });
});

// ---------------------------------------------------------------------------

describe('GVariant: hostile and non-normal input', () => {
  test('truncation at every length of every vector', () => {
    let accepted = 0;
    let total = 0;
    for (const v of VECTORS) {
      for (let n = 0; n < v.bytes.length; n++) {
        total++;
        const r = checkHostile(v.type, v.bytes.subarray(0, n), () => `${v.name} truncated to ${n}`);
        if (r === 'ok') {
          accepted++;
          // only a{sv} (which may legitimately be a shorter dict) may accept a truncation, and only length 0
          assert.equal(v.type, 'a{sv}', `${v.name} truncated to ${n} was accepted`);
        }
      }
    }
    assert.equal(total, VECTORS.reduce((a, v) => a + v.bytes.length, 0));
    assert.ok(total > 9000);
    assert.ok(accepted <= VECTORS.length);
  });

  test('single-bit flips at every byte of a few vectors', () => {
    const picks = [
      byName((v) => v.name.startsWith('commit S1')),
      byName((v) => v.name.startsWith('commit S2')),
      byName((v) => v.name.startsWith('S1 root dirtree')),
      byName((v) => v.name.startsWith('dirmeta')),
      byName((v) => v.name.startsWith('etc/conf')),
      byName((v) => v.name === 'summary'),
      byName((v) => v.name === 'tombstone-commit'),
      byName((v) => v.name === 'S1->S2 superblock'),
    ];
    let rejected = 0;
    let total = 0;
    for (const v of picks) {
      for (let i = 0; i < v.bytes.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const m = Buffer.from(v.bytes);
          m[i]! ^= 1 << bit;
          total++;
          if (checkHostile(v.type, m, () => `${v.name} byte ${i} bit ${bit}`) === 'rejected') rejected++;
        }
      }
    }
    // framing, padding, NULs and separators are everywhere: a good share of flips must be refused
    assert.ok(rejected > total / 10, `${rejected}/${total} flips refused`);
  });

  test('non-zero padding is refused', () => {
    const c = Buffer.from(S1_COMMIT);
    c[0x0d] = 1; // padding inside the first dict entry, before its variant
    assertRejects(T.commit, c, 'commit padding in a{sv} entry');
    const c2 = Buffer.from(S1_COMMIT);
    c2[0x46] = 1; // padding before the timestamp
    assertRejects(T.commit, c2, 'commit padding before t');
    assertRejects('(uy)', hex('02000000 01 000100'), 'fixed tuple tail padding');
    assertRejects('(yv)', hex('01 00000000010000 02 00 79'), 'padding before a variant');
    assertRejects('av', hex('01 00 79 00000001 00 616200 00 73 03 0d'), 'padding between array elements');
    // a non-zero byte where the unit tuple's 00 must be
    assertRejects('()', hex('01'), 'unit tuple 01');
  });

  test('too-wide offsets (a larger width than the size needs) are refused', () => {
    // [254 bytes] as aay: normal form is 255 bytes with a 1-byte offset.
    // 254 bytes + a 2-byte offset = 256 bytes frames correctly but is not normal.
    const wide = Buffer.concat([Buffer.alloc(254, 7), hex('fe00')]);
    assert.deepEqual(parse('aay', wide, { requireNormal: false }), [Buffer.alloc(254, 7)]);
    assertRejects('aay', wide, 'wide array offsets');
    // same for a tuple frame: ('a', 252 bytes) is 255 bytes with a 1-byte frame; with a 2-byte frame it is 256
    const t = Buffer.concat([hex('6100'), Buffer.alloc(252, 1), hex('0200')]);
    assert.equal(t.length, 256);
    assert.deepEqual(parse('(say)', t, { requireNormal: false }), ['a', Buffer.alloc(252, 1)]);
    assert.equal(serialize('(say)', ['a', Buffer.alloc(252, 1)]).length, 255);
    assertRejects('(say)', t, 'wide tuple offset');
  });

  test('offsets out of range or out of order are refused', () => {
    assertRejects('as', hex('6100 6200 04 02'), 'array offsets out of order');
    assertRejects('as', hex('6100 6200 02 07'), 'last offset beyond the container');
    assertRejects('as', hex('6100 6200 02 06'), 'last offset inside the table');
    assertRejects('as', hex('6100 6200 00'), 'offset table of bad size');
    assertRejects('as', hex('ff'), 'single huge offset');
    assertRejects('as', hex('00'), 'zero offset means no table');
    assertRejects('(ss)', hex('6100 6200 09'), 'tuple frame beyond the end');
    assertRejects('(ss)', hex('6100 6200 05'), 'tuple frame inside the frame table');
    assertRejects('(sss)', hex('6100 626300 6400 02 05'), 'tuple frames out of order');
    assertRejects('(ayay)', hex('ff'), 'tuple frame larger than the tuple');
    assertRejects('(ayay)', Buffer.alloc(0), 'tuple with no room for its frame');
    assertRejects('(ss)', Buffer.alloc(0), 'empty (ss)');
    assertRejects('{sv}', Buffer.alloc(0), 'empty dict entry');
    assertRejects('(asy)', Buffer.alloc(0), 'empty (asy)');
    assertRejects(T.commit, Buffer.alloc(0), 'empty commit');
    const big = Buffer.alloc(300, 0x61);
    big.writeUInt16LE(0xffff, 298);
    assertRejects('as', big, '2-byte offset 0xffff in 300 bytes');
    const huge = Buffer.alloc(70000, 0x61);
    huge.writeUInt32LE(0xffffffff, 69996);
    assertRejects('as', huge, '4-byte offset 0xffffffff');
    assertRejects('a{sv}', huge, '4-byte offset 0xffffffff in a{sv}');
    assertRejects(T.commit, huge, 'commit frames 0xffffffff');
    const s1 = Buffer.from(S1_COMMIT);
    s1[s1.length - 1] = 0xff;
    assertRejects(T.commit, s1, 'commit with a metadata end offset of 0xff');
    // a fixed-size member that does not fit
    assertRejects('u', hex('010203'), 'u of 3 bytes');
    assertRejects('t', hex('010203040506070809'), 't of 9 bytes');
    assertRejects('au', hex('0102030405'), 'ragged fixed-element array');
    assertRejects('(uu)', hex('01000000020000'), '(uu) of 7 bytes');
  });

  test('strings: missing NUL, embedded NUL, invalid UTF-8 are refused', () => {
    assertRejects('s', hex('616263'), 'no NUL');
    assertRejects('s', Buffer.alloc(0), 'empty buffer as s');
    assertRejects('s', hex('6100 6200'), 'embedded NUL');
    assertRejects('s', hex('ff00'), 'invalid byte');
    assertRejects('s', hex('c0af00'), 'overlong encoding');
    assertRejects('s', hex('eda08000'), 'UTF-16 surrogate');
    assertRejects('s', hex('e28200'), 'truncated sequence');
    assertRejects('s', hex('f490808000'), 'beyond U+10FFFF');
    assertRejects('as', hex('61ff00 03'), 'invalid UTF-8 in an array element');
    // in a real object: the subject of S1 becomes invalid UTF-8 / loses its NUL
    const subjectAt = S1_COMMIT.indexOf('sample 1\0');
    assert.ok(subjectAt > 0);
    const bad = Buffer.from(S1_COMMIT);
    bad[subjectAt] = 0xff;
    assertRejects(T.commit, bad, 'commit subject with invalid UTF-8');
    const bad2 = Buffer.from(S1_COMMIT);
    bad2[subjectAt + 8] = 0x21;
    assertRejects(T.commit, bad2, 'commit subject without NUL');
    const bad3 = Buffer.from(S1_COMMIT);
    bad3[subjectAt + 3] = 0;
    assertRejects(T.commit, bad3, 'commit subject with embedded NUL');
    // serializer refuses strings with NUL rather than producing ambiguous bytes
    assert.throws(() => serialize('s', 'a\0b'), (e: unknown) => e instanceof CairnError);
  });

  test('booleans other than 0 and 1 are refused', () => {
    assertRejects('b', hex('02'), 'b = 2');
    assertRejects('b', hex('ff'), 'b = 0xff');
    assertRejects('ab', hex('0100 02'), 'ab containing 2');
    const summary = Buffer.from(readFileVector(FILES.summary));
    // ostree.summary.tombstone-commits is a 'b' false: the variant "00 00 62"
    const key = summary.indexOf('ostree.summary.tombstone-commits\0');
    const at = summary.indexOf(hex('000062'), key);
    assert.ok(key > 0 && at > key);
    summary[at] = 2;
    assertRejects(T.summary, summary, 'summary boolean = 2');
    assert.deepEqual(parse('b', hex('01')), true);
  });

  test('variants with garbage, over-long or over-deep type strings are refused', () => {
    const v = (body: string, type: string): Buffer => Buffer.concat([hex(body), Buffer.from([0]), Buffer.from(type, 'latin1')]);
    for (const type of [
      '',
      'z',
      '(',
      ')',
      '(y',
      'a',
      'm',
      'ss',
      'yy',
      '{sv}x',
      '{vs}',
      '{s}',
      '{syy}',
      'a{ayv}',
      '*',
      '?',
      'r',
      'a'.repeat(1000) + 'y',
      'm'.repeat(300) + 'y',
      '('.repeat(200) + ')'.repeat(200),
      'a'.repeat(100) + 'y',
      '\u00e9',
      'y\u0000y',
    ]) {
      assertRejects('v', v('01', type), `variant type ${JSON.stringify(type.slice(0, 20))}`);
    }
    assertRejects('v', Buffer.alloc(0), 'empty variant');
    assertRejects('v', hex('0102'), 'variant without separator');
    assertRejects('v', hex('010200 75'), 'variant child of the wrong size');
    assertRejects('v', v('ff', 'b'), 'variant holding a bad boolean');
    assertRejects('v', v('61', 's'), 'variant holding a string without NUL');
    // deep v nesting: 5000 levels refused cleanly, no stack overflow
    let deep = hex('01');
    for (let i = 0; i < 5000; i++) deep = Buffer.concat([deep, Buffer.from([0]), Buffer.from(i === 0 ? 'y' : 'v')]);
    assertRejects('v', deep, '5000 nested variants');
    // deeply nested type strings inside variants inside arrays
    const nested = v('', 'a'.repeat(64) + 'y');
    checkHostile('v', nested, () => 'aaaa…y (64)');
    // deep v nesting inside arrays of variants
    let av = hex('01 00 79');
    for (let i = 0; i < 300; i++) av = Buffer.concat([av, Buffer.from([av.length <= 0xff ? av.length : 0]), Buffer.from([0]), Buffer.from('av')]);
    checkHostile('v', av, () => 'nested av');
  });

  test('parseType refuses bad type strings with INVALID_GVARIANT', () => {
    for (const t of ['', 'z', 'a', '(', '{sv', '{vs}', 'ss', 'a'.repeat(300) + 'y', 'm'.repeat(100) + 'y', '('.repeat(100) + ')'.repeat(100)]) {
      assert.throws(() => parseType(t), (e: unknown) => isGvError(e), JSON.stringify(t.slice(0, 20)));
    }
    assert.equal(parseType(SUPERBLOCK_TYPE).str, SUPERBLOCK_TYPE);
  });

  test('seeded random mutation fuzz (20k mutations): parse or INVALID_GVARIANT, never anything else', () => {
    const rnd = prng(0xca1e2024);
    const int = (n: number) => Math.floor(rnd() * n);
    const pool = VECTORS.filter((v) => v.bytes.length <= 1024);
    const big = VECTORS.filter((v) => v.bytes.length > 1024);
    assert.ok(big.length >= 1);
    const interesting = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff, 0x28, 0x29, 0x61, 0x73, 0x76, 0x7b, 0x7d];
    let accepted = 0;
    const N = 20000;
    const start = Date.now();
    for (let iter = 0; iter < N; iter++) {
      // mostly small vectors; 1 in 50 uses a large one (the inline superblock)
      const src = iter % 50 === 49 ? big[int(big.length)]! : pool[int(pool.length)]!;
      let m = Buffer.from(src.bytes);
      const ops = 1 + int(4);
      for (let k = 0; k < ops; k++) {
        const len = m.length;
        switch (int(9)) {
          case 0: // bit flip
            if (len) m[int(len)]! ^= 1 << int(8);
            break;
          case 1: // interesting byte
            if (len) m[int(len)] = interesting[int(interesting.length)]!;
            break;
          case 2: // random byte
            if (len) m[int(len)] = int(256);
            break;
          case 3: // clobber the framing at the end
            if (len) m[len - 1 - int(Math.min(len, 4))] = int(256);
            break;
          case 4: {
            // insert bytes
            const at = int(len + 1);
            m = Buffer.concat([m.subarray(0, at), Buffer.from(Array.from({ length: 1 + int(4) }, () => int(256))), m.subarray(at)]);
            break;
          }
          case 5: {
            // delete a range
            const at = int(len + 1);
            m = Buffer.concat([m.subarray(0, at), m.subarray(Math.min(len, at + 1 + int(8)))]);
            break;
          }
          case 6: // truncate
            m = m.subarray(0, int(len + 1));
            break;
          case 7: {
            // duplicate a slice somewhere
            const a = int(len + 1);
            const b = Math.min(len, a + int(32));
            const at = int(len + 1);
            m = Buffer.concat([m.subarray(0, at), Buffer.from(m.subarray(a, b)), m.subarray(at)]);
            break;
          }
          case 8: {
            // overwrite a little-endian word with a huge value
            if (len >= 4) {
              const at = int(len - 3);
              m.writeUInt32LE([0xffffffff, 0x7fffffff, 0x80000000, len, len + 1, 0][int(6)]! >>> 0, at);
            }
            break;
          }
        }
      }
      if (checkHostile(src.type, m, () => `fuzz #${iter} on ${src.name}: ${m.toString('hex').slice(0, 200)}`) === 'ok') accepted++;
    }
    assert.ok(accepted < N, 'some mutations must be refused');
    assert.ok(Date.now() - start < 15000, 'fuzz stays fast (no pathological slow paths)');
  });

  test('seeded random type strings over random bytes', () => {
    const rnd = prng(42);
    const int = (n: number) => Math.floor(rnd() * n);
    const alphabet = 'ybnqiuxtdhsogvam(){}';
    for (let iter = 0; iter < 3000; iter++) {
      const type = Array.from({ length: 1 + int(12) }, () => alphabet[int(alphabet.length)]).join('');
      let t;
      try {
        t = parseType(type);
      } catch (e) {
        assert.ok(isGvError(e), `parseType(${type}) threw ${describeErr(e)}`);
        continue;
      }
      const bytes = Buffer.from(Array.from({ length: int(40) }, () => (rnd() < 0.4 ? 0 : int(256))));
      checkHostile(t.str, bytes, () => `type ${type} bytes ${bytes.toString('hex')}`);
    }
  });
});

describe('GVariant: bounded validation (element limits)', () => {
  /** a{sv} of one entry "k" → v of `ab` holding n booleans, built by hand. */
  function manyBooleans(n: number): Buffer {
    const body = Buffer.concat([Buffer.from('k\0'), Buffer.alloc(6), Buffer.alloc(n, 1), Buffer.from('\0ab')]);
    const w = offsetSizeFor(body.length + 4) <= 2 ? offsetSizeFor(body.length + 2) : 4;
    const entryEnd = Buffer.alloc(w);
    entryEnd.writeUIntLE(2, 0, w);
    const entry = Buffer.concat([body, entryEnd]);
    const w2 = offsetSizeFor(entry.length + 4) <= 2 ? offsetSizeFor(entry.length + 2) : 4;
    const tail = Buffer.alloc(w2);
    tail.writeUIntLE(entry.length, 0, w2);
    return Buffer.concat([entry, tail]);
  }

  const limitError = (limit: string) => (e: unknown) => e instanceof CairnError && e.code === 'INVALID_GVARIANT' && e.details?.limit === limit;

  test('ten million booleans in a 10 MiB a{sv} are refused before any array is built', () => {
    const data = manyBooleans(10_000_000);
    assert.ok(data.length <= 10 * 1024 * 1024);
    const heap = process.memoryUsage().heapUsed;
    const started = performance.now();
    assert.throws(() => parse(T.asv, data), limitError('maxContainerElements'));
    assert.ok(performance.now() - started < 1000, 'refused quickly');
    assert.ok(process.memoryUsage().heapUsed - heap < 64 * 1024 * 1024, 'no per-element allocations');
  });

  test('a small one parses, and round-trips, under the default limits', () => {
    const data = manyBooleans(1000);
    const v = parse(T.asv, data) as VarDict;
    assert.equal((dictGet(v, 'k')!.value as boolean[]).length, 1000);
    assert.ok(serialize(T.asv, v).equals(data));
  });

  test('the per-container and the total limits are the caller\'s to set', () => {
    const data = manyBooleans(1000);
    assert.throws(() => parse(T.asv, data, { limits: { maxContainerElements: 999 } }), limitError('maxContainerElements'));
    parse(T.asv, data, { limits: { maxContainerElements: 1000 } });
    // 1 array + 1 entry + 1 key + 1 variant + 1 inner array + 1000 booleans
    assert.throws(() => parse(T.asv, data, { limits: { maxElements: 1004 } }), limitError('maxElements'));
    parse(T.asv, data, { limits: { maxElements: 1005 } });
    // Many small arrays add up: the total counts across containers.
    const nested = serialize('aab', Array.from({ length: 100 }, () => [true, false]));
    assert.throws(() => parse('aab', nested, { limits: { maxElements: 250 } }), limitError('maxElements'));
    assert.deepEqual(parse('aab', nested, { limits: { maxElements: 301 } }).length, 100);
  });

  test('every reference vector parses under the default limits', () => {
    for (const v of VECTORS) parse(v.type, v.bytes);
  });
});
