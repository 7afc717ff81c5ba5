// Operator writes (storage/browse/operator.ts) keep the compare-and-swap of
// updateRefs: two racing rollbacks with the same `expected` — exactly one
// wins, the other gets CONFLICT; a rollback only goes to an ancestor; a
// promote only takes a commit from the source ref's history; deletes need
// the current value. The real ostree CLI reads the result.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { Repo } from '../../storage/repo/repo';
import { commitFolder } from '../../storage/import/folder';
import { updateRefs } from '../../storage/repo/publish';
import { readRefLogPage } from '../../storage/repo/reflog';
import { deleteRef, promote, rollback } from '../../storage/browse/operator';
import { isCairnError } from '../../storage/errors';
import { makeTempDir, ostree, removeTempDirs } from '../helpers/ostree';

let dir: string;
let repo: Repo;
/** os/main's commits, oldest first. */
const line: string[] = [];
let stray: string;

before(async () => {
  const work = await makeTempDir('cairn-browse-op-');
  dir = path.join(work, 'repo');
  await fsp.mkdir(dir);
  repo = await Repo.init('op', new FsBackend(dir));
  const src = path.join(work, 'src');
  await fsp.mkdir(src);
  let parent: string | null = null;
  for (let i = 1; i <= 4; i++) {
    await fsp.writeFile(path.join(src, 'f'), `v${i}\n`);
    parent = (await commitFolder(repo, src, null, { parent, subject: `v${i}`, timestamp: BigInt(1700000000 + i) })).commit;
    line.push(parent);
  }
  await fsp.writeFile(path.join(src, 'f'), 'stray\n');
  stray = (await commitFolder(repo, src, null, { parent: null, subject: 'stray', timestamp: 1700000100n })).commit;
  await updateRefs(repo, [{ ref: 'os/main', commit: line[3]!, expected: null }, { ref: 'os/stray', commit: stray, expected: null }], { actor: 'test' });
});

after(removeTempDirs);

const opts = { actor: 'operator' };

test('two racing rollbacks with the same expected commit: exactly one wins, the other gets CONFLICT', async () => {
  const before = await repo.readRef('os/main');
  assert.equal(before, line[3]);
  const results = await Promise.allSettled([
    rollback(repo, { ref: 'os/main', to: line[1]!, expected: line[3]! }, opts),
    rollback(repo, { ref: 'os/main', to: line[2]!, expected: line[3]! }, opts),
  ]);
  const won = results.filter((r) => r.status === 'fulfilled');
  const lost = results.filter((r) => r.status === 'rejected');
  assert.equal(won.length, 1);
  assert.equal(lost.length, 1);
  assert.ok(isCairnError((lost[0] as PromiseRejectedResult).reason, 'CONFLICT'));
  const winner = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof rollback>>>).value;
  assert.equal(winner.allowDowngradeRequired, true);
  assert.match(winner.note, /--allow-downgrade/);
  assert.equal(winner.stepsBack, winner.new === line[1] ? 2 : 1);
  assert.equal(await repo.readRef('os/main'), winner.new);
  assert.equal((await ostree(['rev-parse', 'os/main'], { repo: dir })).trim(), winner.new);
  assert.match(await ostree(['summary', '--view'], { repo: dir }), new RegExp(`os/main[\\s\\S]*${winner.new}`));
  const log = await readRefLogPage(repo, { ref: 'os/main', limit: 10 });
  assert.deepEqual(log.entries.slice(0, 1).map((e) => [e.old, e.new, e.actor]), [[line[3], winner.new, 'operator']]);
  // Put it back for the next tests (a forward move is a plain ref update, not a rollback).
  await updateRefs(repo, [{ ref: 'os/main', commit: line[3]!, expected: winner.new }], { actor: 'test' });
});

test('a rollback goes only to an earlier commit of the ref itself', async () => {
  await assert.rejects(rollback(repo, { ref: 'os/main', to: stray, expected: line[3]! }, opts), (e) => isCairnError(e, 'INVALID_ARGUMENT'));
  await assert.rejects(rollback(repo, { ref: 'os/main', to: line[3]!, expected: line[3]! }, opts), (e) => isCairnError(e, 'INVALID_ARGUMENT'));
  // The history is checked from `expected`: a stale expectation cannot smuggle a foreign commit in, and it is a conflict anyway.
  await assert.rejects(rollback(repo, { ref: 'os/main', to: line[0]!, expected: line[2]! }, opts), (e) => isCairnError(e, 'CONFLICT'));
  assert.equal(await repo.readRef('os/main'), line[3]);
  const r = await rollback(repo, { ref: 'os/main', to: line[0]!, expected: line[3]! }, opts);
  assert.equal(r.stepsBack, 3);
  assert.equal(await repo.readRef('os/main'), line[0]);
  await updateRefs(repo, [{ ref: 'os/main', commit: line[3]!, expected: line[0] }], { actor: 'test' });
});

test('promote takes a commit from the source ref history to another ref, with compare-and-swap', async () => {
  const p = await promote(repo, { from: 'os/main', to: 'os/stable', commit: line[2]!, expected: null }, opts);
  assert.equal(p.new, line[2]);
  assert.equal(await repo.readRef('os/stable'), line[2]);
  await assert.rejects(promote(repo, { from: 'os/main', to: 'os/stable', commit: line[3]!, expected: null }, opts), (e) => isCairnError(e, 'CONFLICT'));
  await assert.rejects(promote(repo, { from: 'os/main', to: 'os/stable', commit: stray, expected: line[2]! }, opts), (e) => isCairnError(e, 'INVALID_ARGUMENT'));
  await assert.rejects(promote(repo, { from: 'os/none', to: 'os/stable', commit: line[3]!, expected: line[2]! }, opts), (e) => isCairnError(e, 'NOT_FOUND'));
  await promote(repo, { from: 'os/main', to: 'os/stable', commit: line[3]!, expected: line[2]! }, opts);
  assert.equal((await ostree(['rev-parse', 'os/stable'], { repo: dir })).trim(), line[3]);
});

test('deleting a ref needs its current value', async () => {
  await assert.rejects(deleteRef(repo, { ref: 'os/stray', expected: line[0]! }, opts), (e) => isCairnError(e, 'CONFLICT'));
  assert.equal(await repo.readRef('os/stray'), stray);
  const d = await deleteRef(repo, { ref: 'os/stray', expected: stray }, opts);
  assert.equal(d.new, null);
  assert.equal(await repo.readRef('os/stray'), null);
  assert.doesNotMatch(await ostree(['refs'], { repo: dir }), /os\/stray/);
  await assert.rejects(deleteRef(repo, { ref: 'os/stray', expected: stray }, opts), (e) => isCairnError(e, 'CONFLICT'));
});
