// walkCommitTree: the completeness walk of a publish. With blocking backend
// calls (FsBackend's statNow/readNow) and with a base (the ref's current
// commit, whose shared subtrees are not entered), it must report exactly the
// missing objects it reported before; on a confined repository a symlink
// leading out of it still counts as absent.

import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { commitFolder } from '../../storage/import/folder';
import { Repo } from '../../storage/repo/repo';
import { objectName, walkCommitTree } from '../../storage/repo/closure';
import { ObjectType, objectKey } from '../../storage/objects/types';
import { decodeCommit } from '../../storage/objects/commit';
import { decodeDirTree } from '../../storage/objects/dirtree';
import { makeTempDir, removeTempDirs } from '../helpers/ostree';
import { CountingRepo } from '../helpers/counting-repo';

let work: string;
let dir: string;
let v1: string;
let v2: string;
/** The checksum of a file in v2 only (changed), and of one in a subtree both commits share. */
let changedFile: string;
let sharedFile: string;


async function fileIn(repo: Repo, commit: string, dirs: string[], name: string): Promise<string> {
  let tree = decodeCommit((await repo.readMetadata(commit, ObjectType.Commit))!).rootTree;
  for (const d of dirs) tree = decodeDirTree((await repo.readMetadata(tree, ObjectType.DirTree))!).dirs.find((x) => x.name === d)!.treeChecksum;
  return decodeDirTree((await repo.readMetadata(tree, ObjectType.DirTree))!).files.find((f) => f.name === name)!.checksum;
}

before(async () => {
  work = await makeTempDir('cairn-walk-');
  const src = path.join(work, 'src');
  for (let i = 0; i < 20; i++) {
    await fsp.mkdir(path.join(src, `shared${i}`, 'deep'), { recursive: true });
    await fsp.writeFile(path.join(src, `shared${i}`, 'deep', 'f'), `shared ${i}\n`);
    await fsp.writeFile(path.join(src, `shared${i}`, 'g'), `g ${i}\n`);
  }
  await fsp.mkdir(path.join(src, 'changing', 'sub'), { recursive: true });
  await fsp.writeFile(path.join(src, 'changing', 'sub', 'file'), 'one\n');
  await fsp.writeFile(path.join(src, 'changing', 'same'), 'same\n');
  dir = path.join(work, 'repo');
  await fsp.mkdir(dir);
  const repo = await Repo.init('t', new FsBackend(dir));
  v1 = (await commitFolder(repo, src, 'main', { timestamp: 1n })).commit;
  await fsp.writeFile(path.join(src, 'changing', 'sub', 'file'), 'two\n');
  await fsp.writeFile(path.join(src, 'changing', 'new'), 'new\n');
  v2 = (await commitFolder(repo, src, 'main', { timestamp: 2n })).commit;
  changedFile = await fileIn(repo, v2, ['changing', 'sub'], 'file');
  sharedFile = await fileIn(repo, v2, ['shared7', 'deep'], 'f');
});

after(removeTempDirs);

async function hide(checksum: string, type: ObjectType): Promise<() => Promise<void>> {
  const file = path.join(dir, objectKey(checksum, type));
  await fsp.rename(file, `${file}.hidden`);
  return () => fsp.rename(`${file}.hidden`, file);
}

test('a complete commit: nothing missing, with or without base; base looks at far fewer objects', async () => {
  for (const confine of [false, true]) {
    const full = new CountingRepo('t', new FsBackend(dir, { confine }));
    const a = await walkCommitTree(full, v2);
    assert.deepEqual(a.missing, []);
    const inc = new CountingRepo('t', new FsBackend(dir, { confine }));
    const b = await walkCommitTree(inc, v2, { base: v1 });
    assert.deepEqual(b.missing, []);
    assert.ok(inc.looks * 3 < full.looks, `with base ${inc.looks} looks, without ${full.looks}`);
    // Every object looked at is one the full walk lists.
    const all = new Set(a.objects.map(objectName));
    for (const o of b.objects) assert.ok(all.has(objectName(o)));
    // base = the commit itself, or an unknown commit: a full walk.
    assert.equal((await walkCommitTree(full, v2, { base: v2 })).objects.length, a.objects.length);
    assert.equal((await walkCommitTree(full, v2, { base: 'ab'.repeat(32) })).objects.length, a.objects.length);
  }
});

test('what changed since base is still looked for: a missing new file or dirtree is reported', async () => {
  const repo = new Repo('t', new FsBackend(dir, { confine: true }));
  const put = await hide(changedFile, ObjectType.File);
  try {
    for (const base of [undefined, v1]) {
      assert.deepEqual((await walkCommitTree(repo, v2, { base })).missing.map(objectName), [`${changedFile}.filez`]);
    }
  } finally {
    await put();
  }
  const root = decodeCommit((await repo.readMetadata(v2, ObjectType.Commit))!).rootTree;
  const putRoot = await hide(root, ObjectType.DirTree);
  try {
    for (const base of [undefined, v1]) {
      assert.deepEqual((await walkCommitTree(repo, v2, { base })).missing.map(objectName), [`${root}.dirtree`]);
    }
  } finally {
    await putRoot();
  }
});

test('a base ostree marks partial is not trusted', async () => {
  const repo = new Repo('t', new FsBackend(dir));
  const put = await hide(sharedFile, ObjectType.File);
  const partial = path.join(dir, 'state', `${v1}.commitpartial`);
  try {
    assert.deepEqual((await walkCommitTree(repo, v2)).missing.map(objectName), [`${sharedFile}.filez`]);
    // Trusted base: the shared subtree is complete by induction (Cairn accepted v1 whole and deletes no objects).
    assert.deepEqual((await walkCommitTree(repo, v2, { base: v1 })).missing, []);
    await fsp.mkdir(path.dirname(partial), { recursive: true });
    await fsp.writeFile(partial, '');
    assert.deepEqual((await walkCommitTree(repo, v2, { base: v1 })).missing.map(objectName), [`${sharedFile}.filez`]);
  } finally {
    await fsp.rm(partial, { force: true });
    await put();
  }
});

test('confined: an object that is a symlink out of the repository is absent (file, dirtree), one inside is present', async () => {
  const outside = await makeTempDir('cairn-walk-out-');
  const confined = new Repo('t', new FsBackend(dir, { confine: true }));
  const open = new Repo('t', new FsBackend(dir));
  const sub = decodeDirTree((await open.readMetadata(decodeCommit((await open.readMetadata(v2, ObjectType.Commit))!).rootTree, ObjectType.DirTree))!).dirs.find(
    (d) => d.name === 'changing',
  )!.treeChecksum;
  for (const [checksum, type] of [
    [changedFile, ObjectType.File],
    [sub, ObjectType.DirTree],
  ] as const) {
    const file = path.join(dir, objectKey(checksum, type));
    const copy = path.join(outside, path.basename(file));
    await fsp.copyFile(file, copy);
    await fsp.rename(file, `${file}.orig`);
    try {
      await fsp.symlink(copy, file);
      assert.equal(await confined.hasObject(checksum, type), false);
      if (type === ObjectType.DirTree) assert.equal(await confined.readMetadata(checksum, type), null);
      for (const base of [undefined, v1]) {
        assert.deepEqual((await walkCommitTree(confined, v2, { base })).missing.map(objectName), [objectName({ checksum, type })], `${type} base=${base}`);
        assert.deepEqual((await walkCommitTree(open, v2, { base })).missing, []);
      }
      await fsp.rm(file);
      await fsp.symlink(`${file}.orig`, file); // inside the repository: fine
      assert.equal(await confined.hasObject(checksum, type), true);
      assert.deepEqual((await walkCommitTree(confined, v2)).missing, []);
    } finally {
      await fsp.rm(file, { force: true });
      await fsp.rename(`${file}.orig`, file);
    }
  }
});
