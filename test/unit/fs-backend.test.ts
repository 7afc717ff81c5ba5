import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, symlink, writeFile, mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { backendConformance } from './backend-conformance';

async function freshDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'cairn-fsbackend-'));
}

backendConformance('FsBackend', async () => {
  const dir = await freshDir();
  return { backend: new FsBackend(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

// fs-specific checks beyond the conformance suite

test('FsBackend: keys are plain files below the root; a failed write leaves tmp/ empty', async () => {
  const dir = await freshDir();
  try {
    const b = new FsBackend(dir);
    await b.write('objects/3f/abc.commit', Buffer.from('x'));
    assert.equal(await readFile(path.join(dir, 'objects/3f/abc.commit'), 'utf8'), 'x');
    await assert.rejects(
      b.write(
        'objects/3f/def.commit',
        (async function* () {
          yield Buffer.from('partial');
          throw new Error('boom');
        })(),
      ),
    );
    const tmp = await readdir(path.join(dir, 'tmp')).catch(() => []);
    assert.deepEqual(tmp, [], 'no temporary file left behind');
    assert.deepEqual((await readdir(path.join(dir, 'objects/3f'))).sort(), ['abc.commit']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('FsBackend: nothing outside the root is reachable, even with a sibling folder of the same prefix', async () => {
  const parent = await freshDir();
  try {
    const root = path.join(parent, 'repo');
    await mkdir(root);
    await mkdir(path.join(parent, 'repo-secret'));
    await writeFile(path.join(parent, 'repo-secret', 'key'), 'secret');
    await writeFile(path.join(parent, 'outside'), 'secret');
    const b = new FsBackend(root);
    for (const k of ['../outside', '../repo-secret/key', '/../outside', `${parent}/outside`]) {
      await assert.rejects(b.read(k), (e: unknown) => (e as { code?: string }).code === 'INVALID_PATH', k);
    }
    // a symlinked folder inside the repo is listed (repos may be assembled from links)
    await mkdir(path.join(parent, 'real'));
    await writeFile(path.join(parent, 'real', 'f'), 'f');
    await symlink(path.join(parent, 'real'), path.join(root, 'linked'));
    const keys: string[] = [];
    for await (const k of b.list('')) keys.push(k);
    assert.deepEqual(keys, ['linked/f']);
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
});
