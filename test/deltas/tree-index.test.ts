// The compiler's tree indexes (storage/deltas/tree-index.ts): cached per commit and per dirtree
// (content-addressed, so never stale), equal to a fresh index, and checked against their
// checksums before anything read is used or cached.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { compileDelta } from '../../storage/deltas/compile';
import { clearTreeIndexCache, indexCommit, treeIndexCacheStats } from '../../storage/deltas/tree-index';
import { commitFolder } from '../../storage/import/folder';
import { decodeCommit } from '../../storage/objects/commit';
import { objectKey, ObjectType } from '../../storage/objects/types';
import { Repo } from '../../storage/repo/repo';

let work: string;
let repo: Repo;
let v1: string;
let v2: string;

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'cairn-tree-index-'));
  repo = await Repo.init('r', new FsBackend(path.join(work, 'repo')));
  const src = path.join(work, 'src');
  for (let d = 0; d < 20; d++) {
    mkdirSync(path.join(src, `d${d}`, 'sub'), { recursive: true });
    for (let i = 0; i < 10; i++) writeFileSync(path.join(src, `d${d}`, 'sub', `f${i}`), `folder ${d} file ${i}\n`);
  }
  v1 = (await commitFolder(repo, src, 'test/main', { subject: 'v1', timestamp: 1_760_000_000n })).commit;
  writeFileSync(path.join(src, 'd3', 'sub', 'f1'), 'changed\n');
  v2 = (await commitFolder(repo, src, 'test/main', { parent: v1, subject: 'v2', timestamp: 1_760_003_600n })).commit;
});

test('an index comes from the cache the second time, equal to a fresh one', async () => {
  clearTreeIndexCache();
  const a = await indexCommit(repo, v1);
  assert.equal(a.index.byPath.size, 200);
  assert.equal(a.index.byPath.get('/d0/sub/f0') !== undefined, true);
  assert.equal(await indexCommit(repo, v1), a, 'the same object: from the cache');
  const cached = treeIndexCacheStats();
  assert.equal(cached.indexes, 1);
  assert.equal(cached.dirTrees, 41, 'root, 20 folders, 20 sub folders');
  clearTreeIndexCache();
  const fresh = await indexCommit(repo, v1);
  assert.notEqual(fresh, a);
  assert.deepEqual(fresh.index, a.index);
  assert.deepEqual(fresh.commitBytes, a.commitBytes);
});

test('the next commit reads only the dirtrees that changed; a delta compiled from cached indexes equals one compiled cold', async () => {
  clearTreeIndexCache();
  await indexCommit(repo, v1);
  const before = treeIndexCacheStats().dirTrees;
  await indexCommit(repo, v2);
  assert.equal(treeIndexCacheStats().dirTrees - before, 3, 'root, d3 and d3/sub changed');
  const warm = await compileDelta(repo, v1, v2, { inline: false });
  clearTreeIndexCache();
  const cold = await compileDelta(repo, v1, v2, { inline: false, replace: true });
  assert.deepEqual(cold.partSizes, warm.partSizes);
  assert.equal(cold.stats.usize, warm.stats.usize);
});

test('a dirtree whose bytes do not match its checksum is refused, never cached', async () => {
  clearTreeIndexCache();
  const dir = path.join(work, 'corrupt');
  const other = await Repo.init('c', new FsBackend(dir));
  const src = path.join(work, 'src2');
  mkdirSync(path.join(src, 'a'), { recursive: true });
  writeFileSync(path.join(src, 'a', 'x'), 'x\n');
  const c = (await commitFolder(other, src, 'test/main', { subject: 'c', timestamp: 1_760_000_000n })).commit;
  const root = decodeCommit((await other.readMetadata(c, ObjectType.Commit))!).rootTree;
  const file = path.join(dir, objectKey(root, ObjectType.DirTree));
  const bytes = readFileSync(file);
  bytes[bytes.length - 1] ^= 0x01;
  writeFileSync(file, bytes);
  await assert.rejects(indexCommit(other, c), (e: unknown) => (e as { code?: string }).code === 'CHECKSUM_MISMATCH' && /dirtree .* is corrupt/.test((e as Error).message));
  assert.deepEqual(treeIndexCacheStats(), { dirTrees: 0, indexes: 0 });
});
