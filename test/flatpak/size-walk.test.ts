// flatpak's sizes of a commit without xa.installed-size are measured path by
// path, as flatpak does: a hostile tree whose dirtrees share subtrees (each
// level naming the next twice) doubles its paths at every level with no file
// at all. The walk counts directories towards its bound, so such a tree ends
// in TOO_LARGE instead of 2^40 steps.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { Repo } from '../../storage/repo/repo';
import { readCommitData } from '../../storage/flatpak/cache';
import { isCairnError } from '../../storage/errors';
import { encodeCommit } from '../../storage/objects/commit';
import { S_IFDIR, encodeDirMeta } from '../../storage/objects/dirmeta';
import { encodeDirTree } from '../../storage/objects/dirtree';
import { ObjectType } from '../../storage/objects/types';
import { initRepo, makeTempDir, removeTempDirs } from '../helpers/ostree';

test('a tree of shared subtrees with no file ends the size walk at its bound', { timeout: 60_000 }, async (t) => {
  t.after(removeTempDirs);
  const dir = await initRepo(path.join(await makeTempDir('cairn-size-walk-'), 'repo'), 'archive');
  const repo = new Repo('t', new FsBackend(dir));
  const meta = await repo.writeMetadata(ObjectType.DirMeta, encodeDirMeta({ uid: 0, gid: 0, mode: S_IFDIR | 0o755, xattrs: [] }));
  let tree = await repo.writeMetadata(ObjectType.DirTree, encodeDirTree({ files: [], dirs: [] }));
  for (let level = 0; level < 40; level++) {
    tree = await repo.writeMetadata(ObjectType.DirTree, encodeDirTree({ files: [], dirs: [{ name: 'a', treeChecksum: tree, metaChecksum: meta }, { name: 'b', treeChecksum: tree, metaChecksum: meta }] }));
  }
  const commit = await repo.writeMetadata(ObjectType.Commit, encodeCommit({ metadata: [], parent: null, subject: 'dag', body: '', timestamp: 1700000000n, rootTree: tree, rootMeta: meta }));
  await assert.rejects(readCommitData(repo, commit), (e: unknown) => isCairnError(e, 'TOO_LARGE'));
});
