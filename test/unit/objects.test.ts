import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { deflateRawSync } from 'node:zlib';
import { CairnError } from '../../storage/errors';
import { serialize } from '../../storage/gvariant';
import { sha256Hex } from '../../storage/objects/checksum';
import { contentChecksum, decodeCommit, encodeCommit } from '../../storage/objects/commit';
import { decodeArchiveHeader, encodeArchiveHeader, encodeFileHeader } from '../../storage/objects/content';
import { decodeDirMeta, encodeDirMeta } from '../../storage/objects/dirmeta';
import { EMPTY_DIRTREE_CHECKSUM, decodeDirTree, encodeDirTree } from '../../storage/objects/dirtree';
import { bswap32 } from '../../storage/objects/endian';
import { encodeFilez, verifyFilez } from '../../storage/objects/filez';
import { OBJECT_GVARIANT_TYPE, ObjectType } from '../../storage/objects/types';
import { validateMetadataObject } from '../../storage/repo/repo';
import { OBJECTS, ROOT_DIRMETA, S1, S1_ROOT_DIRTREE, S2, objectPath } from '../helpers/fixtures';

/** The OSTree object layer against the vectors made by the real ostree, and against hostile bytes. */

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of it) parts.push(p);
  return Buffer.concat(parts);
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof CairnError && e.code === code);
}

test('every commit, dirtree and dirmeta vector decodes, re-encodes byte-exact, and hashes to its name', () => {
  for (const v of OBJECTS) {
    const data = readFileSync(objectPath(v));
    if (v.ext === 'commit') assert.deepEqual(encodeCommit(decodeCommit(data)), data, v.what);
    else if (v.ext === 'dirtree') assert.deepEqual(encodeDirTree(decodeDirTree(data)), data, v.what);
    else if (v.ext === 'dirmeta') assert.deepEqual(encodeDirMeta(decodeDirMeta(data)), data, v.what);
    else continue;
    assert.equal(sha256Hex(data), v.checksum, v.what);
  }
});

test('commit fields and ContentChecksum of S1 and S2', () => {
  const s1 = decodeCommit(readFileSync(objectPath({ checksum: S1, ext: 'commit' })));
  assert.equal(s1.subject, 'sample 1');
  assert.equal(s1.timestamp, 1709251200n);
  assert.equal(s1.parent, null);
  assert.equal(s1.rootTree, S1_ROOT_DIRTREE);
  assert.equal(s1.rootMeta, ROOT_DIRMETA);
  assert.equal(contentChecksum(s1), 'f8ab25117e15b545e4e5b21a5a729fa08e603670bc9f80e883682424a599b9d3');
  const s2 = decodeCommit(readFileSync(objectPath({ checksum: S2, ext: 'commit' })));
  assert.equal(s2.parent, S1);
  assert.equal(s2.timestamp, 1709337600n);
});

test('empty dirtree and root dirmeta', () => {
  assert.equal(sha256Hex(encodeDirTree({ files: [], dirs: [] })), EMPTY_DIRTREE_CHECKSUM);
  const m = encodeDirMeta({ uid: 0, gid: 0, mode: 0o40755, xattrs: [] });
  assert.equal(m.toString('hex'), '00000000' + '00000000' + '000041ed');
  assert.equal(sha256Hex(m), ROOT_DIRMETA);
});

test('every .filez vector verifies to its name and re-encodes byte-exact', async () => {
  for (const v of OBJECTS.filter((o) => o.ext === 'filez')) {
    const data = readFileSync(objectPath(v));
    const chunks: Buffer[] = [];
    // Feed it in awkward 7-byte pieces: the reader must not depend on chunk boundaries.
    const pieces: Buffer[] = [];
    for (let i = 0; i < data.length; i += 7) pieces.push(data.subarray(i, i + 7));
    const got = await verifyFilez(pieces, { onData: (b) => chunks.push(b) });
    assert.equal(got.checksum, v.checksum, v.what);
    const again = await collect(encodeFilez(got.header, got.size, [Buffer.concat(chunks)]));
    assert.deepEqual(again, data, v.what);
  }
});

test('the symlink and xattr vectors decode to what TESTDATA says', async () => {
  const link = await verifyFilez([readFileSync(objectPath({ checksum: '08f79095017675d25e57de8a1f37f4a5fb9a1f62c74d00fd00c741aa71575082', ext: 'filez' }))]);
  assert.equal(link.header.symlinkTarget, 'README');
  assert.equal(link.header.mode, 0o120777);
  const conf = await verifyFilez([readFileSync(objectPath({ checksum: '90f67e685f3f33bd4eb68b0624ee21e792075b8cbd31737f7811c5d206dcf18e', ext: 'filez' }))]);
  assert.deepEqual(conf.header.xattrs, [{ name: 'user.note', value: Buffer.from('hi') }]);
});

const regular = { uid: 0, gid: 0, mode: 0o100644, symlinkTarget: '', xattrs: [] };

function filez(body: Buffer, declared: number, header = regular): Buffer {
  return Buffer.concat([encodeArchiveHeader(header, declared), deflateRawSync(body)]);
}

test('hostile .filez: lying sizes, bombs, corrupt deflate, truncation, symlink bodies', async () => {
  const body = Buffer.alloc(10_000, 0x61);
  await verifyFilez([filez(body, body.length)]);
  await rejectsWith(verifyFilez([filez(body, body.length - 1)]), 'INVALID_OBJECT');
  await rejectsWith(verifyFilez([filez(body, body.length + 1)]), 'INVALID_OBJECT');
  // A bomb: 64 MiB of zeros deflates to ~64 KiB; the header claims 100 bytes. It must stop early.
  const bomb = Buffer.concat([encodeArchiveHeader(regular, 100), deflateRawSync(Buffer.alloc(64 * 1024 * 1024))]);
  const t0 = process.hrtime.bigint();
  await rejectsWith(verifyFilez([bomb]), 'INVALID_OBJECT');
  assert.ok(process.hrtime.bigint() - t0 < 5_000_000_000n);
  const good = filez(body, body.length);
  const corrupt = Buffer.from(good);
  corrupt[corrupt.length - 3] ^= 0xff;
  await assert.rejects(verifyFilez([corrupt]), (e: unknown) => e instanceof CairnError && ['INVALID_OBJECT'].includes(e.code));
  for (const cut of [0, 3, 8, 20, good.length - 1]) {
    await assert.rejects(verifyFilez([good.subarray(0, cut)]), (e: unknown) => e instanceof CairnError, `cut at ${cut}`);
  }
  const link = { uid: 0, gid: 0, mode: 0o120777, symlinkTarget: 'target', xattrs: [] };
  await rejectsWith(verifyFilez([Buffer.concat([encodeArchiveHeader(link, 0), Buffer.from([3, 0])])]), 'INVALID_OBJECT');
  // Header framing that claims an enormous header.
  const huge = Buffer.alloc(16);
  huge.writeUInt32BE(0x7fffffff, 0);
  await rejectsWith(verifyFilez([huge]), 'TOO_LARGE');
  const pad = Buffer.from(good);
  pad[5] = 1;
  await rejectsWith(verifyFilez([pad]), 'INVALID_OBJECT');
});

test('illegal modes, device files and unsorted entries are refused with INVALID_OBJECT', () => {
  const bad = (fn: () => unknown) => assert.throws(fn, (e: unknown) => e instanceof CairnError && e.code === 'INVALID_OBJECT');
  bad(() => encodeFileHeader({ ...regular, mode: 0o060644 })); // block device
  bad(() => encodeFileHeader({ ...regular, mode: 0o140644 })); // socket
  bad(() => encodeFileHeader({ ...regular, mode: 0o120777, symlinkTarget: '' }));
  bad(() => encodeDirMeta({ uid: 0, gid: 0, mode: 0o100755, xattrs: [] }));
  const dm = serialize(OBJECT_GVARIANT_TYPE.dirmeta, [0, 0, bswap32(0o100755), []]);
  bad(() => decodeDirMeta(dm));
  const csum = Buffer.alloc(32, 1);
  bad(() => decodeDirTree(serialize(OBJECT_GVARIANT_TYPE.dirtree, [[['b', csum], ['a', csum]], []])));
  bad(() => decodeDirTree(serialize(OBJECT_GVARIANT_TYPE.dirtree, [[['a', csum], ['a', csum]], []])));
  bad(() => decodeDirTree(serialize(OBJECT_GVARIANT_TYPE.dirtree, [[['..', csum]], []])));
  bad(() => decodeDirTree(serialize(OBJECT_GVARIANT_TYPE.dirtree, [[['a/b', csum]], []])));
  assert.throws(() => decodeDirTree(serialize(OBJECT_GVARIANT_TYPE.dirtree, [[['a', Buffer.alloc(31)]], []])), (e: unknown) => e instanceof CairnError);
  const commit = readFileSync(objectPath({ checksum: S1, ext: 'commit' }));
  const c = decodeCommit(commit);
  assert.throws(() => encodeCommit({ ...c, metadata: [['', c.metadata[0]![1]]] }), CairnError);
  // A rdev in an archive header is a device node in disguise.
  const withRdev = Buffer.concat([Buffer.alloc(8), serialize(OBJECT_GVARIANT_TYPE.archiveFileHeader, [0n, 0, 0, bswap32(0o100644), 5, '', []])]);
  withRdev.writeUInt32BE(withRdev.length - 8, 0);
  bad(() => decodeArchiveHeader(withRdev));
});

test('validateMetadataObject refuses non-normal and truncated metadata', () => {
  const commit = readFileSync(objectPath({ checksum: S1, ext: 'commit' }));
  validateMetadataObject(ObjectType.Commit, commit);
  for (let cut = 0; cut < commit.length; cut++) {
    assert.throws(() => validateMetadataObject(ObjectType.Commit, commit.subarray(0, cut)), CairnError, `cut ${cut}`);
  }
  assert.throws(() => validateMetadataObject(ObjectType.Commit, Buffer.alloc(11 * 1024 * 1024)), (e: unknown) => e instanceof CairnError && e.code === 'TOO_LARGE');
});

test('a .filez with bytes after the end of its deflate stream is refused', async () => {
  const body = Buffer.from('hello\n');
  const good = filez(body, body.length);
  await verifyFilez([good]);
  await rejectsWith(verifyFilez([Buffer.concat([good, Buffer.from([0, 0, 0x58, 0x58])])]), 'INVALID_OBJECT');
  await rejectsWith(verifyFilez([good, Buffer.alloc(1 << 20)]), 'INVALID_OBJECT');
});
