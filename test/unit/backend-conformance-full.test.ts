import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Driver } from '../../storage/backends/backend';
import { FsBackend } from '../../storage/backends/fs';
import { full } from '../../storage/backends/full';
import { backendConformance } from './backend-conformance';

/**
 * The filesystem driver reduced to the methods every driver must have: the
 * conformance suite's tests through full() then exercise the adapter's own
 * openReader (ranged reads pinned to a version), prepare (in memory), lock
 * (in-process), sweep, touch (a rewrite), statFast/readFast (promises),
 * create and compareAndSwap (under the lock).
 */
function requiredOnly(b: FsBackend): Driver {
  return {
    location: b.location,
    stat: (k) => b.stat(k),
    read: (k) => b.read(k),
    openRead: (k, r) => b.openRead(k, r),
    write: (k, d) => b.write(k, d),
    remove: (k) => b.remove(k),
    ensurePrefixes: (p) => b.ensurePrefixes(p),
    list: (p) => b.list(p),
  };
}

backendConformance('FsBackend, required methods only (full() supplies the rest)', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cairn-full-'));
  return { backend: full(requiredOnly(new FsBackend(dir))), cleanup: () => rm(dir, { recursive: true, force: true }) };
}, { readerKeepsReplacedVersion: false });

test('full(): the FsBackend is a whole Backend itself (blocking statFast/readFast, its lock files); a bare driver gets promises', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cairn-full-'));
  try {
    const fsb = new FsBackend(dir);
    const f = full(fsb);
    assert.equal(f.blocking, true);
    assert.equal(f, fsb, 'a complete backend is not wrapped');
    await fsb.write('refs/heads/main', Buffer.from('x'));
    const st = f.statFast('refs/heads/main');
    assert.ok(!(st instanceof Promise));
    assert.deepEqual(st, await fsb.stat('refs/heads/main'));
    // the driver's cross-process lock file is used (tmp/cairn-NAME.lock exists while held)
    const release = await f.lock('refs');
    assert.ok(await fsb.stat('tmp/cairn-refs.lock'));
    await release();
    assert.equal(await fsb.stat('tmp/cairn-refs.lock'), null);
    const bare = full(requiredOnly(fsb));
    assert.equal(bare.blocking, false);
    assert.ok(bare.statFast('refs/heads/main') instanceof Promise);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
