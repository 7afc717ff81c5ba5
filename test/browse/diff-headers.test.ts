// A commit diff is bounded by the content headers it decodes, not only by
// its entries: a header may carry up to 1 MiB of xattrs (~80,000 empty ones,
// ~0.25 s to decode). An object named many times is read once for the added
// and removed lists, and large headers count towards MAX_LARGE_HEADER_BYTES,
// past which the diff stops (`truncated`).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { Repo } from '../../storage/repo/repo';
import { diffCommits } from '../../storage/browse/diff';
import { encodeCommit } from '../../storage/objects/commit';
import { S_IFDIR, S_IFREG, encodeDirMeta } from '../../storage/objects/dirmeta';
import { encodeDirTree } from '../../storage/objects/dirtree';
import type { Xattr } from '../../storage/objects/xattrs';
import { ObjectType } from '../../storage/objects/types';
import { initRepo, makeTempDir, removeTempDirs } from '../helpers/ostree';

const NAMES = 40;
let repo: Repo;
let empty: string;
let small: string;
let repeated: string;
let distinct: string;

const names = (i: number) => `f${String(i).padStart(3, '0')}`;

before(async () => {
  const dir = await initRepo(path.join(await makeTempDir('cairn-diff-headers-'), 'repo'), 'archive');
  repo = new Repo('t', new FsBackend(dir));
  const many: Xattr[] = Array.from({ length: 80_000 }, (_, i) => ({ name: 'u' + i.toString(36).padStart(4, '0'), value: Buffer.alloc(0) }));
  many.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  const file = (data: string, xattrs: Xattr[]) =>
    repo.writeContent({ uid: 0, gid: 0, mode: S_IFREG | 0o644, symlinkTarget: '', xattrs }, Buffer.byteLength(data), async function* () {
      yield Buffer.from(data);
    });
  const meta = await repo.writeMetadata(ObjectType.DirMeta, encodeDirMeta({ uid: 0, gid: 0, mode: S_IFDIR | 0o755, xattrs: [] }));
  const commitOf = async (files: Array<{ name: string; checksum: string }>) => {
    const tree = await repo.writeMetadata(ObjectType.DirTree, encodeDirTree({ files, dirs: [] }));
    return repo.writeMetadata(ObjectType.Commit, encodeCommit({ metadata: [], parent: null, subject: 's', body: '', timestamp: 1700000000n, rootTree: tree, rootMeta: meta }));
  };
  empty = await commitOf([]);
  const smalls = [];
  for (let i = 0; i < NAMES; i++) smalls.push({ name: names(i), checksum: await file(`small ${i}\n`, []) });
  small = await commitOf(smalls);
  const big = await file('big\n', many);
  repeated = await commitOf(Array.from({ length: NAMES }, (_, i) => ({ name: names(i), checksum: big })));
  const bigs = [];
  for (let i = 0; i < NAMES; i++) bigs.push({ name: names(i), checksum: await file(`big ${i}\n`, many) });
  distinct = await commitOf(bigs);
});

after(removeTempDirs);

test('an object with a large header named many times is decoded once for the added list', async () => {
  const t0 = performance.now();
  const d = await diffCommits(repo, empty, repeated);
  const elapsed = performance.now() - t0;
  assert.equal(d.added.length, NAMES);
  assert.equal(d.truncated, false);
  assert.ok(d.added.every((a) => a.kind === 'file' && a.size === 4));
  // Before: one decode (~0.25 s) per name.
  assert.ok(elapsed < 4000, `the diff took ${Math.round(elapsed)} ms`);
});

test('large headers of distinct objects count towards a bound, past which the diff is truncated', async () => {
  const d = await diffCommits(repo, small, distinct);
  assert.equal(d.truncated, true);
  assert.ok(d.modified.length > 0 && d.modified.length < NAMES, `${d.modified.length} modified entries`);
});
