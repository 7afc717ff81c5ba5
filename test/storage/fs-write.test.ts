// FsBackend.write without a mkdir per write: tmp/ is made once (again when it
// has gone), the target's folder when the rename finds it missing; no temp
// file is left behind either way.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { makeTempDir, removeTempDirs } from '../helpers/ostree';

after(removeTempDirs);

test('writes survive tmp/ and the target folder being removed between them; no temp files remain', async () => {
  const dir = await makeTempDir('cairn-fswrite-');
  const b = new FsBackend(dir);
  await b.write('objects/ab/one.file', Buffer.from('one'));
  await fsp.rm(path.join(dir, 'tmp'), { recursive: true });
  await b.write('objects/ab/two.file', Buffer.from('two'));
  await b.remove('objects/ab/one.file');
  await b.remove('objects/ab/two.file');
  await assert.rejects(fsp.stat(path.join(dir, 'objects/ab')), { code: 'ENOENT' }); // pruned
  await b.write('objects/ab/three.file', (async function* () {
    yield Buffer.from('thr');
    yield Buffer.from('ee');
  })());
  await b.write('deep/er/still/f', Buffer.from('f'));
  assert.equal((await b.read('objects/ab/three.file'))!.data.toString(), 'three');
  assert.equal((await b.read('deep/er/still/f'))!.data.toString(), 'f');
  assert.equal((await b.read('objects/ab/one.file')), null);
  assert.deepEqual(await fsp.readdir(path.join(dir, 'tmp')), []);
  // A refused write (the source fails) leaves no temp file and no folder.
  await assert.rejects(
    b.write('objects/cd/bad.file', (async function* () {
      yield Buffer.from('x');
      throw new Error('source failed');
    })()),
  );
  assert.deepEqual(await fsp.readdir(path.join(dir, 'tmp')), []);
  await assert.rejects(fsp.stat(path.join(dir, 'objects/cd')), { code: 'ENOENT' });
});
