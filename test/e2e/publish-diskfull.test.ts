// Disk full, for real (issue #11, items 0 and 6): the data folder on an 8 MiB tmpfs. A push that does
// not fit fails with 507 INSUFFICIENT_STORAGE, reported as such by `cairn push` and not retried; a
// ref update on a full disk answers 507 and changes nothing (no ref, summary, lock or temporary file
// left half-written); the server keeps serving verifying pulls; the repository still passes the
// stock `ostree fsck`; once space is freed the same push and ref update succeed.
//
// Mounting needs root: CI runs the tests as root. Run elsewhere, this test fails saying so (it does
// not skip).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { startCairn, type CairnProcess } from '../helpers/cairn-process';
import { commitTree, initRepo, makeSourceTree, makeTempDir, pseudoRandomBytes, removeTempDirs } from '../helpers/ostree';
import { assertPublishedConsistent, cli, diskRefs, initData, moveRefs, saveGpgKey, verifyingPull } from './publish-helpers';

const REF = 'os/full';
let work: string;
let mnt: string;
let mounted = false;
let data: string;
let cairn: CairnProcess | undefined;

before(async () => {
  if (process.getuid?.() !== 0) {
    throw new Error('publish-diskfull needs root to mount a small tmpfs (mount -t tmpfs -o size=8m): run the tests as root, as CI does');
  }
  work = await makeTempDir('cairn-diskfull-');
  mnt = path.join(work, 'mnt');
  await fsp.mkdir(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
  mounted = true;
  data = path.join(mnt, 'data');
});

after(async () => {
  await cairn?.stop();
  if (mounted) execFileSync('umount', ['-l', mnt]);
  await removeTempDirs();
});

/** Files a dead or failed write could leave: temporary files, lock files, a journal. */
async function leftovers(): Promise<string[]> {
  const repo = path.join(data, 'repos', 'main');
  const tmp = (await fsp.readdir(path.join(repo, 'tmp')).catch(() => [] as string[])).filter((n) => n.startsWith('cairn-'));
  const journal = fs.existsSync(path.join(repo, 'state', 'cairn', 'publish.journal')) ? ['state/cairn/publish.journal'] : [];
  return [...tmp.map((n) => `tmp/${n}`), ...journal];
}

/** Fills the file system up to the last block, then frees `leave` bytes; returns the filler's path. */
function fill(file: string, leave = 0): string {
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  try {
    for (let size = chunk.length; size >= 1; ) {
      try {
        fs.writeSync(fd, chunk, 0, size);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
        size = Math.floor(size / 2);
      }
    }
    if (leave > 0) fs.ftruncateSync(fd, Math.max(0, fs.fstatSync(fd).size - leave));
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

test('a push that does not fit fails with 507, leaves nothing half-written, the server keeps serving, and succeeds once space is freed', { timeout: 300_000 }, async () => {
  const token = await initData(data);
  const local = await initRepo(path.join(work, 'local'), 'archive');
  const small = await makeSourceTree(path.join(work, 'small'), { seed: 3, bigFileBytes: 50_000 });
  const c1 = await commitTree(local, { branch: REF, tree: small, subject: 'small' });
  cairn = await startCairn({ dataDir: data });
  const push = (extra: string[] = []) => cli(['push', '--url', `${cairn!.url}/repo/main`, '--token', token, '--repo', local, ...extra, REF]);
  const first = await push();
  assert.equal(first.code, 0, first.stderr);
  const gpgAsc = await saveGpgKey(cairn.url, path.join(work, 'gpg.asc'));

  // 12 MB that do not compress: more than the file system holds.
  await fsp.writeFile(path.join(small, 'huge.bin'), pseudoRandomBytes(99, 12 * 1024 * 1024));
  const c2 = await commitTree(local, { branch: REF, tree: small, subject: 'huge' });
  const started = Date.now();
  const refused = await push();
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /out of storage space \(507 INSUFFICIENT_STORAGE/, refused.stderr);
  assert.doesNotMatch(refused.stderr, /retrying/, 'a 507 is not retried');
  assert.ok(Date.now() - started < 60_000, `the push gives up at once (took ${Date.now() - started} ms):\n${refused.stderr}\n--- server ---\n${cairn.output().split('\n').slice(-30).join('\n')}`);

  await new Promise((r) => setTimeout(r, 500)); // uploads still in flight on the server finish failing
  assert.deepEqual(await leftovers(), [], 'no temporary file, lock or journal left');
  assert.equal((await diskRefs(path.join(data, 'repos', 'main'))).get(REF), c1, 'the ref did not move');
  await assertPublishedConsistent(data, 'after the refused push');
  assert.equal((await fetch(`${cairn.url}/healthz`)).status, 200);
  assert.equal(await verifyingPull(path.join(work, 'client-1'), cairn.url, gpgAsc, REF), c1, 'the server keeps serving');

  // A ref update on a disk with not one block free: 507, and nothing moves (its lock record, the
  // staged summary, signature and ref-log entry would each need space).
  const filler = fill(path.join(mnt, 'filler'));
  const moved = await moveRefs(cairn.url, token, [{ ref: REF, commit: null, expected: c1 }]);
  assert.equal(moved.status, 507, JSON.stringify(moved.body));
  assert.equal((moved.body as { error: { code: string } }).error.code, 'INSUFFICIENT_STORAGE');
  assert.deepEqual(await leftovers(), [], 'no lock file, temporary file or journal left by the refused ref update');
  assert.equal((await diskRefs(path.join(data, 'repos', 'main'))).get(REF), c1, 'the ref is still there');
  assert.equal(await verifyingPull(path.join(work, 'client-2'), cairn.url, gpgAsc, REF), c1, 'pulls still work on a full disk');
  await fsp.rm(filler);
  await assertPublishedConsistent(data, 'after the refused ref update');
  // The same with 1 to 4 pages free: the lock record fits, then the staged summary, signature or
  // ref-log entry does not. Still 507, and still nothing moved.
  for (let pages = 1; pages <= 4; pages++) {
    const f = fill(path.join(mnt, 'filler'), pages * 4096);
    const r = await moveRefs(cairn.url, token, [{ ref: REF, commit: null, expected: c1 }]);
    await fsp.rm(f);
    assert.equal(r.status, 507, `${pages} pages free: ${JSON.stringify(r.body)}`);
    assert.deepEqual(await leftovers(), [], `${pages} pages free: nothing left behind`);
    assert.equal((await diskRefs(path.join(data, 'repos', 'main'))).get(REF), c1, `${pages} pages free: the ref is still there`);
    await assertPublishedConsistent(data, `after the refused ref update with ${pages} pages free`);
  }

  // Space freed (the file system grows): the same push goes through.
  execFileSync('mount', ['-o', 'remount,size=64m', mnt]);
  const again = await push();
  assert.equal(again.code, 0, again.stderr);
  await assertPublishedConsistent(data, 'after space was freed');
  assert.equal(await verifyingPull(path.join(work, 'client-3'), cairn.url, gpgAsc, REF), c2);
});
