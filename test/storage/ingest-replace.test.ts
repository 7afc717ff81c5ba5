// An upload of an object whose stored copy is corrupt replaces it (issue 11 item 3); one whose
// stored copy is sound is skipped as before. Checked for a small and a streamed (> 4 MiB) .filez
// and a dirtree; the real `ostree fsck` passes afterwards.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { commitFolder } from '../../storage/import/folder';
import { decodeCommit } from '../../storage/objects/commit';
import { objectKey, ObjectType } from '../../storage/objects/types';
import { ingestObject } from '../../storage/repo/ingest';
import { Repo } from '../../storage/repo/repo';
import { makeTempDir, ostree, pseudoRandomBytes, removeTempDirs } from '../helpers/ostree';
import { decodeDirTree } from '../../storage/objects/dirtree';

after(removeTempDirs);

test('an upload replaces a corrupt stored copy and skips a sound one', async () => {
  const work = await makeTempDir('cairn-ingest-replace-');
  const dir = path.join(work, 'repo');
  const repo = await Repo.init('r', new FsBackend(dir));
  const src = path.join(work, 'src');
  mkdirSync(path.join(src, 'd'), { recursive: true });
  writeFileSync(path.join(src, 'd', 'small'), 'small file\n'.repeat(100));
  writeFileSync(path.join(src, 'd', 'big'), pseudoRandomBytes(7, 6 * 1024 * 1024));
  const { commit } = await commitFolder(repo, src, 'test/main', { subject: 'c', timestamp: 1_760_000_000n });
  const root = decodeDirTree((await repo.readMetadata(decodeCommit((await repo.readMetadata(commit, ObjectType.Commit))!).rootTree, ObjectType.DirTree))!);
  const sub = decodeDirTree((await repo.readMetadata(root.dirs[0]!.treeChecksum, ObjectType.DirTree))!);
  const objects = [
    ...sub.files.map((f) => ({ checksum: f.checksum, type: ObjectType.File, what: `.filez ${f.name}` })),
    { checksum: root.dirs[0]!.treeChecksum, type: ObjectType.DirTree, what: 'dirtree' },
  ];
  for (const o of objects) {
    const file = path.join(dir, objectKey(o.checksum, o.type));
    const good = readFileSync(file);
    // Sound copy: skipped.
    assert.equal((await ingestObject(repo, o.checksum, o.type, Readable.from([good]))).stored, false, `${o.what}: a sound copy is kept`);
    // One flipped byte: the upload replaces it.
    const bad = Buffer.from(good);
    bad[bad.length >> 1] ^= 0x40;
    writeFileSync(file, bad);
    const r = await ingestObject(repo, o.checksum, o.type, Readable.from([good]));
    assert.equal(r.stored, true, `${o.what}: the corrupt copy was replaced`);
    assert.deepEqual(readFileSync(file), good, o.what);
  }
  await ostree(['fsck'], { repo: dir });
});
