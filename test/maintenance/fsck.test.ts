// `cairn fsck`: a flipped byte in a .filez, a truncated dirtree, a missing object and a damaged ref
// are each named, with exit status 1; and end to end with a listening server and the real clients:
// a corrupted .filez found and quarantined by `cairn fsck --repair` is restored by a `cairn push` of
// the same commit, after which `ostree fsck` on the server's repository and a stock pull are clean.
//
// Run: npx tsc -p . && node --test dist/test/maintenance/fsck.test.js

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { FsBackend } from '../../storage/backends/fs';
import { decodeDirTree } from '../../storage/objects/dirtree';
import { ObjectType } from '../../storage/objects/types';
import { Repo } from '../../storage/repo/repo';
import type { FsckReport } from '../../storage/maintenance/fsck';
import { startCairn } from '../helpers/cairn-process';
import { addRemote, initRepo, ostree, ostreeResult, removeTempDirs } from '../helpers/ostree';
import { cairn, cairnOk, commitVersion, ownedData } from './helpers';

after(removeTempDirs);

function objectFile(repo: string, checksum: string, ext: string): string {
  return path.join(repo, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.${ext}`);
}

/** The root dirtree of `commit`: its files and folders by name. */
async function rootOf(repoDir: string, commit: string): Promise<{ files: Map<string, string>; dirs: Map<string, string> }> {
  const repo = new Repo('x', new FsBackend(repoDir));
  const c = (await repo.readCommit(commit))!;
  const dt = decodeDirTree((await repo.readMetadata(c.rootTree, ObjectType.DirTree))!);
  return { files: new Map(dt.files.map((f) => [f.name, f.checksum])), dirs: new Map(dt.dirs.map((d) => [d.name, d.treeChecksum])) };
}

async function flipByte(file: string, at: (size: number) => number): Promise<void> {
  const data = await fsp.readFile(file);
  const i = at(data.length);
  data[i] = data[i]! ^ 0x55;
  await fsp.writeFile(file, data);
}

function fsckJson(stdout: string): FsckReport {
  return (JSON.parse(stdout) as { repos: FsckReport[] }).repos[0]!;
}

test('cairn fsck names a flipped .filez byte (small and streamed), a truncated dirtree, a missing object and a damaged ref; exit 0 clean, 1 damaged', async () => {
  const { work, data, repo } = await ownedData('cairn-fsck-');
  const c1 = await commitVersion(work, repo, 'os/a', 1, { size: 200_000 });
  const c2 = await commitVersion(work, repo, 'os/b', 2, { size: 5_000_000 }); // a .filez over 4 MiB: checked streaming
  const clean = await cairn(['fsck', '--data', data]);
  assert.equal(clean.code, 0, clean.stderr);
  assert.match(clean.stderr, /no damage/);

  const root = await rootOf(repo, c1);
  const big = root.files.get('v1.bin')!;
  const shared = root.files.get('shared.txt')!;
  const dir1 = root.dirs.get('dir1')!;
  await flipByte(objectFile(repo, big, 'filez'), (n) => Math.floor(n / 2));
  const huge = (await rootOf(repo, c2)).files.get('v2.bin')!;
  await flipByte(objectFile(repo, huge, 'filez'), (n) => n - 10);
  const dt = objectFile(repo, dir1, 'dirtree');
  await fsp.truncate(dt, Math.floor((await fsp.stat(dt)).size / 2));
  await fsp.rm(objectFile(repo, shared, 'filez'));
  await fsp.writeFile(path.join(repo, 'refs', 'heads', 'os', 'b'), 'not a checksum\n');

  const r = await cairn(['fsck', '--data', data, '--repo', 'main', '--json']);
  assert.equal(r.code, 1, r.stderr);
  const rep = fsckJson(r.stdout);
  assert.equal(rep.ok, false);
  const corrupt = rep.corrupt.map((c) => c.object).sort();
  assert.deepEqual(corrupt, [`${big}.filez`, `${huge}.filez`, `${dir1}.dirtree`].sort());
  assert.deepEqual(rep.missing.map((m) => m.object), [`${shared}.filez`]);
  assert.equal(rep.missing[0]!.commit, c1);
  assert.deepEqual(rep.damagedRefs, ['refs/heads/os/b']);
  // The text form names them too, progress on stderr.
  const text = await cairn(['fsck', '--data', data]);
  assert.equal(text.code, 1);
  assert.match(text.stdout, new RegExp(`corrupt ${big}\\.filez`));
  assert.match(text.stdout, new RegExp(`corrupt ${dir1}\\.dirtree`));
  assert.match(text.stdout, new RegExp(`missing ${shared}\\.filez`));
  assert.match(text.stderr, /checking the objects of main/);

  // A missing object alone is damage too.
  await fsp.writeFile(path.join(repo, 'refs', 'heads', 'os', 'b'), `${c1}\n`);
  assert.equal((await cairn(['fsck', '--data', data, '--repo', 'main', '--repair'])).code, 1);
  const after = await cairn(['fsck', '--data', data, '--repo', 'main', '--json']);
  assert.equal(after.code, 1);
  assert.equal(fsckJson(after.stdout).corruptCount, 0, 'the repair moved the corrupt objects away');
  assert.ok(fsckJson(after.stdout).missingCount >= 2, 'and they are missing now, until a push brings them back');
});

test('a ref commit marked partial (as ostree fsck marks a damaged one) is damage; --repair clears the marker of a whole commit', async () => {
  const { work, data, repo } = await ownedData('cairn-fsck-partial-');
  const c = await commitVersion(work, repo, 'os/a', 1);
  await fsp.mkdir(path.join(repo, 'state'), { recursive: true });
  await fsp.writeFile(path.join(repo, 'state', `${c}.commitpartial`), 'f'); // what ostree fsck writes on a damaged commit
  assert.notEqual((await ostreeResult(['fsck'], { repo })).code, 0, 'ostree fsck counts it as an error too');
  const r = await cairn(['fsck', '--data', data, '--repo', 'main']);
  assert.equal(r.code, 1);
  assert.match(r.stdout, new RegExp(`commit ${c} is marked partial`));
  const fixed = await cairn(['fsck', '--data', data, '--repo', 'main', '--repair']);
  assert.equal(fixed.code, 0, fixed.stderr);
  assert.match(fixed.stdout, /partial marker removed/);
  assert.equal((await ostreeResult(['fsck'], { repo })).code, 0);
});

test('corrupt .filez: cairn fsck --repair quarantines it, cairn push of the same commit restores it, ostree fsck and a stock pull are clean', async () => {
  const { work, data, repo } = await ownedData('cairn-fsck-repair-');
  const token = (await cairnOk(['token', '--data', data, '--scope', 'push', '--repo', 'main', '--prefix', 'os/', '--ttl', '1h'])).stdout.trim();
  const local = await initRepo(path.join(work, 'local'), 'archive');
  const c = await commitVersion(work, local, 'os/stable', 1, { size: 300_000 });
  const server = await startCairn({ dataDir: data });
  try {
    const url = `${server.url}/repo/main`;
    const push = () => cairn(['push', '--url', url, '--token', token, '--repo', local, 'os/stable', '--json']);
    const first = await push();
    assert.equal(first.code, 0, first.stderr);

    const big = (await rootOf(repo, c)).files.get('v1.bin')!;
    const file = objectFile(repo, big, 'filez');
    const good = await fsp.readFile(file);
    await flipByte(file, (n) => n - 100);

    const found = await cairn(['fsck', '--data', data, '--repo', 'main']);
    assert.equal(found.code, 1);
    assert.match(found.stdout, new RegExp(`corrupt ${big}\\.filez`));
    const repaired = await cairn(['fsck', '--data', data, '--repo', 'main', '--repair', '--json']);
    assert.equal(repaired.code, 1, 'damage was found (and repaired)');
    const rep = fsckJson(repaired.stdout);
    assert.deepEqual(rep.quarantined.map((q) => q.object), [`${big}.filez`]);
    assert.match(rep.quarantined[0]!.to, /^state\/cairn\/quarantine\//);
    await assert.rejects(fsp.stat(file), 'moved out of objects/');
    assert.notDeepEqual(await fsp.readFile(path.join(repo, rep.quarantined[0]!.to)), good, 'the corrupt bytes are kept aside');
    const served = await fetch(`${url}/objects/${big.slice(0, 2)}/${big.slice(2)}.filez`);
    assert.equal(served.status, 404, 'a quarantined object is never served');
    // ostree's fsck marks a damaged commit partial (state/C.commitpartial): asked on a copy.
    const copy = path.join(work, 'copy');
    await fsp.cp(repo, copy, { recursive: true });
    assert.notEqual((await ostreeResult(['fsck'], { repo: copy })).code, 0, 'ostree fsck sees the object missing');

    const again = await push();
    assert.equal(again.code, 0, again.stderr);
    const res = JSON.parse(again.stdout) as { uploaded: number; refMoved: boolean };
    assert.equal(res.uploaded, 1, 'the push uploads exactly the quarantined object');
    assert.equal(res.refMoved, false);
    assert.deepEqual(await fsp.readFile(file), good, 'restored byte for byte');
    const fsck = await ostreeResult(['fsck'], { repo });
    assert.equal(fsck.code, 0, fsck.stderr);
    assert.equal((await cairn(['fsck', '--data', data, '--repo', 'main'])).code, 0);

    const client = await initRepo(path.join(work, 'client'), 'archive');
    await addRemote(client, 'cairn', url);
    await ostree(['pull', 'cairn', 'os/stable'], { repo: client });
    assert.equal((await ostreeResult(['fsck'], { repo: client })).code, 0);
  } finally {
    await server.stop();
  }
});
