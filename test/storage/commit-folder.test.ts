import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { contentChecksum, decodeCommit } from '../../storage/objects/commit';
import { commitFolder } from '../../storage/import/folder';
import { Repo } from '../../storage/repo/repo';
import { ObjectType } from '../../storage/objects/types';
import { commitTree, diffTrees, initRepo, makeSourceTree, makeTempDir, ostree, removeTempDirs, revParse } from '../helpers/ostree';

/**
 * Cairn writes a commit of a real folder with its own code; the real ostree
 * must accept it (fsck), reproduce the folder (checkout), and have recorded the
 * very same tree (root dirtree/dirmeta, hence ContentChecksum) for that folder.
 */
let work: string;
let src: string;

before(async () => {
  work = await makeTempDir('cairn-commit-');
  src = await makeSourceTree(path.join(work, 'src'), { seed: 3, bigFileBytes: 2 * 1024 * 1024 + 17 });
  // What makeSourceTree lacks: setuid, xattrs on a file and on a folder, deeper nesting.
  await fsp.writeFile(path.join(src, 'bin/suid-helper'), '#!/bin/sh\n');
  await fsp.chmod(path.join(src, 'bin/suid-helper'), 0o4755);
  execFileSync('setfattr', ['-n', 'user.note', '-v', 'hello', path.join(src, 'etc/secret.conf')]);
  execFileSync('setfattr', ['-n', 'user.bin', '-v', '0x00ff10', path.join(src, 'etc')]);
  let deep = path.join(src, 'deeper');
  for (let i = 0; i < 40; i++) deep = path.join(deep, `level${i}`);
  await fsp.mkdir(deep, { recursive: true });
  await fsp.writeFile(path.join(deep, 'bottom'), 'bottom\n');
});

after(removeTempDirs);

async function cairnRepo(dir: string): Promise<Repo> {
  await fsp.mkdir(dir, { recursive: true });
  return Repo.init('t', new FsBackend(dir));
}

test('a folder committed by Cairn passes ostree fsck and checks out identically', async () => {
  const repoDir = path.join(work, 'cairn-repo');
  const repo = await cairnRepo(repoDir);
  const result = await commitFolder(repo, src, 'test/main', { subject: 'from cairn', timestamp: 1709251200n });
  await repo.setRef('test/main', result.commit);
  assert.ok(result.files > 60, `committed ${result.files} files`);

  const fsck = await ostree(['fsck'], { repo: repoDir });
  assert.match(fsck, /no errors found/);
  assert.equal(await revParse(repoDir, 'test/main'), result.commit);

  // As root, a plain checkout restores owners, setuid bits and xattrs too.
  const out = path.join(work, 'checkout');
  await ostree(['checkout', 'test/main', out], { repo: repoDir });
  assert.deepEqual(await diffTrees(src, out), []);
  const st = await fsp.stat(path.join(out, 'bin/suid-helper'));
  assert.equal(st.mode & 0o7777, 0o4755);
  assert.equal(execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', 'user.note', path.join(out, 'etc/secret.conf')]).toString(), 'hello');
  assert.deepEqual(execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', 'user.bin', path.join(out, 'etc')]), Buffer.from([0x00, 0xff, 0x10]));
});

test('the recorded tree equals what ostree commit records for the same folder', async () => {
  const mine = await cairnRepo(path.join(work, 'mine'));
  const ours = await commitFolder(mine, src, 'test/main', { timestamp: 1709251200n });

  const ref = await initRepo(path.join(work, 'theirs'), 'archive');
  const theirsCommit = await commitTree(ref, { branch: 'test/main', tree: src, timestamp: 1709251200 });
  const theirs = decodeCommit(await fsp.readFile(path.join(ref, 'objects', theirsCommit.slice(0, 2), `${theirsCommit.slice(2)}.commit`)));

  assert.equal(ours.rootTree, theirs.rootTree, 'root dirtree checksum');
  assert.equal(ours.rootMeta, theirs.rootMeta, 'root dirmeta checksum');
  const log = await ostree(['log', 'test/main'], { repo: ref });
  const printed = /ContentChecksum:\s+([0-9a-f]{64})/.exec(log)?.[1];
  assert.equal(contentChecksum(ours), printed);

  // Every object ostree wrote for the tree, Cairn wrote too (same names); metadata byte for byte.
  // (.filez bodies may be deflated differently: any valid deflate stream is allowed.)
  const ourObjs = new Set(await listObjects(path.join(work, 'mine')));
  for (const type of ['dirtree', 'dirmeta', 'filez'] as const) {
    const theirsObjs = (await listObjects(ref)).filter((o) => o.endsWith(`.${type}`));
    assert.ok(theirsObjs.length > 0);
    for (const rel of theirsObjs) {
      assert.ok(ourObjs.has(rel), `Cairn lacks ${rel}`);
      if (type === 'filez') continue;
      const a = await fsp.readFile(path.join(ref, 'objects', rel));
      const b = await fsp.readFile(path.join(work, 'mine', 'objects', rel));
      assert.ok(a.equals(b), `${rel} differs`);
    }
  }
  assert.equal(await mine.hasObject(theirsCommit, ObjectType.Commit), false, 'different metadata gives a different commit');
});

test('committing the same folder twice writes no new content objects', async () => {
  const repo = await cairnRepo(path.join(work, 'twice'));
  const first = await commitFolder(repo, src, 'a', { timestamp: 1n });
  const before = (await listObjects(path.join(work, 'twice'))).length;
  const second = await commitFolder(repo, src, 'a', { timestamp: 2n, parent: first.commit });
  const afterCount = (await listObjects(path.join(work, 'twice'))).length;
  assert.equal(afterCount, before + 1, 'only the new commit object');
  assert.equal(second.rootTree, first.rootTree);
  const c = await repo.readCommit(second.commit);
  assert.equal(c?.parent, first.commit);
});

async function listObjects(repoDir: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await fsp.readdir(path.join(repoDir, 'objects'))) {
    for (const f of await fsp.readdir(path.join(repoDir, 'objects', d))) out.push(`${d}/${f}`);
  }
  return out.sort();
}
