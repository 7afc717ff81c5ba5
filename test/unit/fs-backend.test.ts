import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsPromises } from 'node:fs';
import { lstat, mkdtemp, readdir, rm, rmdir, symlink, writeFile, mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { FsBackend, REPO_LAYOUT_FOLDERS } from '../../storage/backends/fs';
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

async function isDir(p: string): Promise<boolean> {
  return (await lstat(p).catch(() => null))?.isDirectory() ?? false;
}

test('FsBackend: remove prunes the folders it empties, up to the layout folders and the root', async () => {
  const dir = await freshDir();
  try {
    const b = new FsBackend(dir);
    await b.write('refs/heads/a/b/c', Buffer.from('c'));
    await b.write('refs/heads/keep/me', Buffer.from('k'));
    await b.remove('refs/heads/a/b/c');
    assert.equal(await isDir(path.join(dir, 'refs/heads/a')), false, 'refs/heads/a is gone');
    assert.equal(await isDir(path.join(dir, 'refs/heads')), true, 'refs/heads stays');
    await b.remove('refs/heads/keep/me');
    assert.equal(await isDir(path.join(dir, 'refs/heads')), true, 'refs/heads stays, empty');
    assert.equal(await isDir(path.join(dir, 'refs')), true);
    // every layout folder stays, even one made by a write rather than ensurePrefixes
    for (const key of ['objects/ab/cdef.commit', 'deltas/P9/BA/superblock', 'delta-indexes/ab.index', 'state/x', 'extensions/x', 'refs/mirrors/m/x', 'refs/remotes/r/x', 'tmp/cache/x', 'tmp/x']) {
      await b.write(key, Buffer.from('x'));
      await b.remove(key);
      const top = key.slice(0, key.lastIndexOf('/'));
      const kept = REPO_LAYOUT_FOLDERS.filter((f) => top === f || top.startsWith(`${f}/`)).sort((x, y) => y.length - x.length)[0]!;
      assert.equal(await isDir(path.join(dir, kept)), true, `${kept} stays after removing ${key}`);
      if (kept !== top) assert.equal(await isDir(path.join(dir, top)), false, `${top} is gone after removing ${key}`);
    }
    // a key at the top: the root stays
    await b.write('x', Buffer.from('x'));
    await b.remove('x');
    assert.equal(await isDir(dir), true, 'the root stays');
    await b.write('y/z', Buffer.from('z'));
    await b.remove('y/z');
    assert.equal(await isDir(path.join(dir, 'y')), false);
    assert.equal(await isDir(dir), true, 'the root stays');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('FsBackend: keepFolders and ensurePrefixes folders are kept; a relative root is pruned below only', async () => {
  const dir = await freshDir();
  try {
    const b = new FsBackend(dir, { keepFolders: ['mine/kept'] });
    await b.ensurePrefixes(['made/by/init']);
    for (const key of ['mine/kept/deep/f', 'made/by/init/f']) {
      await b.write(key, Buffer.from('f'));
      await b.remove(key);
    }
    assert.equal(await isDir(path.join(dir, 'mine/kept')), true);
    assert.equal(await isDir(path.join(dir, 'mine/kept/deep')), false);
    assert.equal(await isDir(path.join(dir, 'made/by/init')), true);
    // with its own list, refs/heads is an ordinary folder
    await b.write('refs/heads/a', Buffer.from('a'));
    await b.remove('refs/heads/a');
    assert.equal(await isDir(path.join(dir, 'refs')), false);
    // a root given relative, with a trailing slash: never pruned, nor anything above it
    const rel = new FsBackend(`${path.relative(process.cwd(), dir)}/`);
    await rel.write('only/key', Buffer.from('k'));
    await rel.remove('only/key');
    assert.equal(await isDir(path.join(dir, 'only')), false);
    assert.equal(await isDir(dir), true);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('FsBackend: remove never deletes a symlinked folder nor what it points at', async () => {
  const parent = await freshDir();
  try {
    const root = path.join(parent, 'repo');
    await mkdir(root);
    await mkdir(path.join(parent, 'elsewhere', 'sub'), { recursive: true });
    await symlink(path.join(parent, 'elsewhere'), path.join(root, 'linked'));
    const b = new FsBackend(root);
    await b.write('linked/sub/f', Buffer.from('f'));
    await b.remove('linked/sub/f');
    assert.equal((await lstat(path.join(root, 'linked'))).isSymbolicLink(), true, 'the link stays');
    assert.equal(await isDir(path.join(parent, 'elsewhere')), true, 'its target stays');
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
});

test('FsBackend: a write whose fresh folder is pruned before its rename makes it again', async () => {
  const dir = await freshDir();
  const fsp = fsPromises as unknown as { rename: typeof fsPromises.rename };
  const rename = fsp.rename;
  let injected = 0;
  try {
    const b = new FsBackend(dir);
    await b.write('refs/heads/a/old', Buffer.from('old'));
    // A remove() of refs/heads/a/old pruning refs/heads/a/b and refs/heads/a
    // right between the write's mkdir and its rename (the race, made certain).
    fsp.rename = async (from, to) => {
      if (injected === 0 && String(to).endsWith(path.join('a', 'b', 'new'))) {
        injected++;
        await b.remove('refs/heads/a/old');
        await rmdir(path.join(dir, 'refs/heads/a/b'));
        await rmdir(path.join(dir, 'refs/heads/a'));
      }
      return rename(from, to);
    };
    await b.write('refs/heads/a/b/new', Buffer.from('new'));
    assert.equal(injected, 1, 'the race was injected');
    assert.deepEqual((await b.read('refs/heads/a/b/new'))?.data, Buffer.from('new'));
    assert.equal(await b.stat('refs/heads/a/old'), null);
    assert.deepEqual(await readdir(path.join(dir, 'tmp')), [], 'no temporary file left behind');
  } finally {
    fsp.rename = rename;
    await rm(dir, { recursive: true, force: true });
  }
});
