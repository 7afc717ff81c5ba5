// A directory page is bounded whatever the files' extended attributes: a
// content header may hold up to 1 MiB of them (~80,000 empty ones), and a
// dirtree may name one such object many times. The page shows at most
// MAX_XATTRS_SHOWN / MAX_XATTR_BYTES_SHOWN of each entry's xattrs (saying
// so), and decodes a header named several times once.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { Repo } from '../../storage/repo/repo';
import { listDirectory, MAX_XATTR_BYTES_SHOWN } from '../../storage/browse/listing';
import { encodeCommit } from '../../storage/objects/commit';
import { S_IFDIR, S_IFREG, encodeDirMeta } from '../../storage/objects/dirmeta';
import { encodeDirTree } from '../../storage/objects/dirtree';
import { ObjectType } from '../../storage/objects/types';
import { initRepo, makeTempDir, removeTempDirs } from '../helpers/ostree';

const NAMES = 40;
let repo: Repo;
let commit: string;
let distinct: string;

before(async () => {
  const dir = await initRepo(path.join(await makeTempDir('cairn-xattr-bound-'), 'repo'), 'archive');
  repo = new Repo('t', new FsBackend(dir));
  const xattrs = Array.from({ length: 80_000 }, (_, i) => ({ name: 'u' + i.toString(36).padStart(4, '0'), value: Buffer.alloc(0) }));
  xattrs.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  const data = Buffer.from('x\n');
  const file = await repo.writeContent({ uid: 0, gid: 0, mode: S_IFREG | 0o644, symlinkTarget: '', xattrs }, data.length, async function* () {
    yield data;
  });
  const files = Array.from({ length: NAMES }, (_, i) => ({ name: `f${String(i).padStart(3, '0')}`, checksum: file }));
  const tree = await repo.writeMetadata(ObjectType.DirTree, encodeDirTree({ files, dirs: [] }));
  const meta = await repo.writeMetadata(ObjectType.DirMeta, encodeDirMeta({ uid: 0, gid: 0, mode: S_IFDIR | 0o755, xattrs: [] }));
  commit = await repo.writeMetadata(ObjectType.Commit, encodeCommit({ metadata: [], parent: null, subject: 'xattrs', body: '', timestamp: 1700000000n, rootTree: tree, rootMeta: meta }));
  const bigs = [];
  for (let i = 0; i < NAMES; i++) {
    const d = Buffer.from(`big ${i}\n`);
    const sum = await repo.writeContent({ uid: 0, gid: 0, mode: S_IFREG | 0o644, symlinkTarget: '', xattrs }, d.length, async function* () {
      yield d;
    });
    bigs.push({ name: `f${String(i).padStart(3, '0')}`, checksum: sum });
  }
  const tree2 = await repo.writeMetadata(ObjectType.DirTree, encodeDirTree({ files: bigs, dirs: [] }));
  distinct = await repo.writeMetadata(ObjectType.Commit, encodeCommit({ metadata: [], parent: null, subject: 'distinct', body: '', timestamp: 1700000000n, rootTree: tree2, rootMeta: meta }));
});

after(removeTempDirs);

test('a page of files with a megabyte of xattrs each stays small and quick', async () => {
  const t0 = performance.now();
  const page = await listDirectory(repo, commit, '/', { limit: NAMES });
  const elapsed = performance.now() - t0;
  assert.equal(page.entries.length, NAMES);
  const json = JSON.stringify(page);
  for (const e of page.entries) {
    assert.equal(e.xattrsTruncated, true);
    assert.ok(e.xattrs.length > 0 && e.xattrs.reduce((s, x) => s + x.name.length, 0) <= MAX_XATTR_BYTES_SHOWN);
  }
  // Before the bound: ~4.5 MB of JSON per entry and one header decode (~0.25 s) per entry.
  assert.ok(json.length < NAMES * 64 * 1024, `the page is ${json.length} bytes of JSON`);
  assert.ok(elapsed < 4000, `the page took ${Math.round(elapsed)} ms`);
});

test('distinct large headers end a page early, and the next page goes on from there', async () => {
  const page = await listDirectory(repo, distinct, '/', { limit: NAMES });
  assert.ok(page.entries.length > 0 && page.entries.length < NAMES, `${page.entries.length} entries`);
  assert.equal(page.next, String(page.entries.length));
  const rest = await listDirectory(repo, distinct, '/', { limit: NAMES, cursor: page.next });
  assert.equal(rest.entries[0]!.name, `f${String(page.entries.length).padStart(3, '0')}`);
});
