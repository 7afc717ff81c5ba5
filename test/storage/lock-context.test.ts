import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { confirmLocks, withRepoLock } from '../../storage/repo/mutex';
import { makeTempDir, removeTempDirs } from '../helpers/ostree';

/**
 * confirmLocks (storage/repo/mutex.ts) confirms the locks whose critical section the caller is in:
 * work started inside a lock that outlives it (a delta job a publish queues under the refs and
 * summary locks) must not confirm those locks after they were released (a released lock file is no
 * longer its holder's: confirming it would fail that work with CONFLICT), whatever the nesting.
 */
let dir: string;
before(async () => {
  dir = await makeTempDir('cairn-lock-context-');
});
after(removeTempDirs);

test('work started inside nested locks and outliving them confirms only the locks it takes itself', async () => {
  const b = new FsBackend(path.join(dir, 'repo'));
  let detached!: Promise<string>;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  await withRepoLock(b, 'refs', async () => {
    await withRepoLock(b, 'summary', async () => {
      await confirmLocks(); // both held: confirmed
      detached = (async () => {
        await gate; // runs on after both critical sections ended
        await confirmLocks(); // nothing of its own yet
        return withRepoLock(b, 'summary', async () => {
          await confirmLocks();
          return 'switched';
        });
      })();
    });
  });
  release();
  assert.equal(await detached, 'switched');
});
