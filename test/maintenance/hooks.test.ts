// Two small guards around gc and fsck/scrub:
//  - a missing-objects check refreshes the mtime of old objects it reports as present, so that gc's
//    grace window covers them until the push that relies on them moves its ref (the race the gc
//    README names: an old unreachable object told present, then deleted before the ref update);
//  - a publish's completeness walk does not trust its base (the ref's current commit) while an
//    object sits in quarantine without an upload having restored it.
//
// Run: npx tsc -p . && node --test dist/test/maintenance/hooks.test.js

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { FsBackend } from '../../storage/backends/fs';
import { quarantine, QUARANTINE_PREFIX } from '../../storage/maintenance/fsck';
import { gc } from '../../storage/maintenance/gc';
import { objectName, walkCommitTree } from '../../storage/repo/closure';
import { decodeDirTree } from '../../storage/objects/dirtree';
import { ObjectType, objectKey } from '../../storage/objects/types';
import { Repo } from '../../storage/repo/repo';
import { startCairn } from '../helpers/cairn-process';
import { ostree, pseudoRandomBytes, removeTempDirs } from '../helpers/ostree';
import { cairnOk, commitVersion, ownedData } from './helpers';

after(removeTempDirs);

const HOUR = 3_600_000;

test('objects/missing refreshes the mtime of old objects found present: gc (grace 1 h) then keeps them', async () => {
  const { work, data, repo } = await ownedData('cairn-touch-');
  await commitVersion(work, repo, 'os/a', 1);
  // Two orphan commits (what a pruned commit leaves): unreachable, and aged past the grace window.
  const orphan = async (seed: number) => {
    const dir = path.join(work, `orphan-${seed}`);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, `o${seed}.bin`), pseudoRandomBytes(500 + seed, 4000));
    const commit = (await ostree(['commit', '--orphan', '--no-bindings', `--tree=dir=${dir}`, `--subject=orphan ${seed}`], { repo })).trim();
    const walk = await walkCommitTree(new Repo('x', new FsBackend(repo)), commit);
    return walk.objects.filter((o) => o.type !== ObjectType.DirMeta); // the dirmeta is shared with os/a
  };
  const asked = await orphan(1);
  const notAsked = await orphan(2);
  const old = new Date(Date.now() - 2 * HOUR);
  for (const o of [...asked, ...notAsked]) await fsp.utimes(path.join(repo, objectKey(o.checksum, o.type)), old, old);

  const token = (await cairnOk(['token', '--data', data, '--scope', 'push', '--repo', 'main', '--ttl', '1h'])).stdout.trim();
  const server = await startCairn({ dataDir: data });
  try {
    const res = await fetch(`${server.url}/api/repos/main/objects/missing`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ objects: [...asked.map(objectName), `${'ab'.repeat(32)}.filez`] }),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(((await res.json()) as { missing: string[] }).missing, [`${'ab'.repeat(32)}.filez`]);
  } finally {
    await server.stop();
  }
  for (const o of asked) {
    const st = await fsp.stat(path.join(repo, objectKey(o.checksum, o.type)));
    assert.ok(Date.now() - st.mtimeMs < 60_000, `${objectName(o)} touched`);
  }
  const report = await gc(new Repo('main', new FsBackend(repo)), { graceMs: HOUR });
  assert.equal(report.deletedObjects, notAsked.length, 'the aged objects nobody asked about go');
  for (const o of asked) assert.ok(await fsp.stat(path.join(repo, objectKey(o.checksum, o.type))), `${objectName(o)} kept`);
  for (const o of notAsked) await assert.rejects(fsp.stat(path.join(repo, objectKey(o.checksum, o.type))), `${objectName(o)} deleted`);
});

test('a publish walk ignores its base while a quarantined object is not restored', async () => {
  const { work, repo: dir } = await ownedData('cairn-base-quarantine-');
  const a = await commitVersion(work, dir, 'os/a', 1);
  const b = await commitVersion(work, dir, 'os/b', 2); // shares shared.txt with a
  const repo = new Repo('main', new FsBackend(dir));
  const root = decodeDirTree((await repo.readMetadata((await repo.readCommit(a))!.rootTree, ObjectType.DirTree))!);
  const shared = root.files.find((f) => f.name === 'shared.txt')!.checksum;
  const key = objectKey(shared, ObjectType.File);
  const bytes = await fsp.readFile(path.join(dir, key));

  const trusting = await walkCommitTree(repo, b, { base: a });
  assert.deepEqual(trusting.missing, []);
  assert.ok(!trusting.objects.some((o) => o.checksum === shared), 'with a sound base, the shared file is not even looked at');

  await quarantine(repo, key, `${QUARANTINE_PREFIX}/test/${shared}.filez`);
  const walked = await walkCommitTree(repo, b, { base: a });
  assert.deepEqual(walked.missing.map(objectName), [`${shared}.filez`], 'the quarantined object is found missing although the base held it');

  // An upload restores it: the base is trusted again.
  await repo.backend.write(key, bytes);
  const again = await walkCommitTree(repo, b, { base: a });
  assert.deepEqual(again.missing, []);
  assert.ok(!again.objects.some((o) => o.checksum === shared));
});
