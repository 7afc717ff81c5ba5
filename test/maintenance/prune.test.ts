// `cairn prune` and `cairn gc` on repositories filled by the real `ostree commit`, checked with the
// real `ostree` (fsck, log) and against what `ostree prune --refs-only --depth` leaves on a copy.
//
// Run: npx tsc -p . && node --test dist/test/maintenance/prune.test.js

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { summaryRefs } from '../../storage/repo/recovery';
import { tombstoneBytes } from '../../storage/maintenance/prune';
import { readExtraFile } from '../helpers/fixtures';
import { ostree, ostreeResult, removeTempDirs } from '../helpers/ostree';
import { cairn, cairnOk, commitVersion, logCommits, objectNames, ownedData, snapshot } from './helpers';

after(removeTempDirs);

const DAY = 86_400;
const NOW = Math.floor(Date.now() / 1000);

function objectFile(repo: string, checksum: string, ext: string): string {
  return path.join(repo, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.${ext}`);
}

async function exists(p: string): Promise<boolean> {
  return fsp.stat(p).then(
    () => true,
    () => false,
  );
}

test('the tombstone Cairn writes is byte for byte the reference one (ostree prune with tombstone-commits)', () => {
  const ref = readExtraFile('example.tombstone-commit');
  assert.deepEqual(tombstoneBytes('a4dc6691aca1373da8b6fc8a724e03bd1c5694fb90a18c3a664d692770dd8232'), ref);
});

test('prune --keep: dry run changes nothing; then history is cut as ostree prune --depth cuts it, deltas of pruned commits go, ostree fsck and log agree; gc frees what only pruned commits held', async () => {
  const { work, data, repo } = await ownedData('cairn-prune-keep-');
  const a: string[] = [];
  for (let i = 1; i <= 5; i++) a.push(await commitVersion(work, repo, 'os/a', i, { timestamp: NOW - (10 - i) * DAY }));
  // os/b branches off a's second commit: a[1] stays (b keeps it), a[0] goes from both.
  const b3 = await commitVersion(work, repo, 'os/b', 3, { timestamp: NOW - DAY, parent: a[1] });
  await cairnOk(['delta', 'generate', '--data', data, '--repo', 'main', '--from', a[2]!, '--to', a[3]!]);
  await cairnOk(['delta', 'generate', '--data', data, '--repo', 'main', '--from', a[3]!, '--to', a[4]!]);

  // The reference: ostree's own prune on a copy (depth = keep - 1).
  const copy = path.join(work, 'copy');
  execFileSync('cp', ['-a', repo, copy]);
  await ostree(['prune', '--refs-only', '--depth=1'], { repo: copy });

  const before = await snapshot(repo);
  const dry = JSON.parse((await cairnOk(['prune', '--data', data, '--repo', 'main', '--keep', '2', '--dry-run', '--json'])).stdout);
  assert.deepEqual((await snapshot(repo)), before, 'a dry run changes nothing');
  assert.deepEqual(dry.commits.map((c: { commit: string }) => c.commit).sort(), [a[0], a[2]].sort());
  assert.deepEqual(dry.deltas, [`${a[2]}-${a[3]}`]);
  assert.ok(dry.bytes > 0 && dry.exclusiveObjects > 0 && dry.exclusiveBytes > 0, JSON.stringify(dry));
  assert.deepEqual(dry.kept, { 'os/a': 2, 'os/b': 2 });

  const real = JSON.parse((await cairnOk(['prune', '--data', data, '--repo', 'main', '--keep', '2', '--json'])).stdout);
  assert.deepEqual(real.commits, dry.commits);
  assert.equal(real.exclusiveBytes, dry.exclusiveBytes);
  for (const c of [a[0]!, a[2]!]) assert.equal(await exists(objectFile(repo, c, 'commit')), false, `${c} pruned`);
  for (const c of [a[1]!, a[3]!, a[4]!, b3]) assert.equal(await exists(objectFile(repo, c, 'commit')), true, `${c} kept`);
  assert.deepEqual(await logCommits(repo, 'os/a'), [a[4], a[3]], 'ostree log stops at the new oldest commit');
  assert.deepEqual(await logCommits(repo, 'os/b'), [b3, a[1]]);
  assert.match(await ostree(['fsck'], { repo }), /no errors|Validating|objects/i);
  const deltas = (await cairnOk(['delta', 'list', '--data', data, '--repo', 'main'])).stdout;
  assert.doesNotMatch(deltas, new RegExp(`${a[2]}-${a[3]}`), 'the delta from a pruned commit went');
  assert.match(deltas, new RegExp(`${a[3]}-${a[4]}`), 'the delta between kept commits stayed');
  const listed = summaryRefs(await fsp.readFile(path.join(repo, 'summary')));
  assert.ok(listed);

  // GC: the objects are young (just written): the default grace keeps them; --grace 0s frees them.
  const kept = JSON.parse((await cairnOk(['gc', '--data', data, '--repo', 'main', '--json'])).stdout);
  assert.equal(kept.deletedObjects, 0);
  assert.equal(kept.young, real.exclusiveObjects, 'every unreachable object is within the grace window');
  const gone = JSON.parse((await cairnOk(['gc', '--data', data, '--repo', 'main', '--grace', '0s', '--json'])).stdout);
  assert.equal(gone.deletedObjects, real.exclusiveObjects);
  assert.equal(gone.deletedBytes, real.exclusiveBytes);
  // The same objects as ostree's own prune left.
  assert.deepEqual(await objectNames(repo), await objectNames(copy));
  const fsck = await ostreeResult(['fsck'], { repo });
  assert.equal(fsck.code, 0, fsck.stderr);
  assert.equal((await cairn(['fsck', '--data', data, '--repo', 'main'])).code, 0);
});

test('prune --keep-younger-than (an age and a date), one ref only, and refusals', async () => {
  const { work, data, repo } = await ownedData('cairn-prune-age-');
  const ages = [20, 10, 5, 1];
  const a: string[] = [];
  for (const [i, d] of ages.entries()) a.push(await commitVersion(work, repo, 'os/a', i + 1, { timestamp: NOW - d * DAY }));
  const other: string[] = [];
  for (const [i, d] of ages.entries()) other.push(await commitVersion(work, repo, 'os/other', i + 11, { timestamp: NOW - d * DAY }));

  const r = JSON.parse((await cairnOk(['prune', '--data', data, '--repo', 'main', '--ref', 'os/a', '--keep-younger-than', '7d', '--json'])).stdout);
  assert.deepEqual(r.commits.map((c: { commit: string }) => c.commit).sort(), [a[0], a[1]].sort());
  assert.deepEqual(await logCommits(repo, 'os/a'), [a[3], a[2]]);
  assert.deepEqual(await logCommits(repo, 'os/other'), [...other].reverse(), 'a ref not named keeps its whole history');

  // A date: keep what is younger than 12 days ago, or the last 3 (either rule keeps a commit).
  const date = new Date((NOW - 12 * DAY) * 1000).toISOString().slice(0, 10);
  const r2 = JSON.parse((await cairnOk(['prune', '--data', data, '--repo', 'main', '--ref', 'os/other', '--keep-younger-than', date, '--keep', '3', '--json'])).stdout);
  assert.deepEqual(r2.commits.map((c: { commit: string }) => c.commit), [other[0]]);
  assert.equal((await ostreeResult(['fsck'], { repo })).code, 0);

  // Refusals: nothing to keep said, a bad age, a ref that does not exist, a repository Cairn does not own.
  assert.equal((await cairn(['prune', '--data', data, '--repo', 'main'])).code, 2);
  assert.equal((await cairn(['prune', '--data', data, '--repo', 'main', '--keep-younger-than', 'yesterday'])).code, 2);
  assert.equal((await cairn(['prune', '--data', data, '--repo', 'main', '--keep', '0'])).code, 2);
  const missing = await cairn(['prune', '--data', data, '--repo', 'main', '--ref', 'os/nope', '--keep', '1']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no ref os\/nope/);
  const foreign = path.join(data, 'repos', 'foreign');
  await fsp.mkdir(foreign, { recursive: true });
  await ostree(['init', '--mode=archive'], { repo: foreign });
  await commitVersion(work, foreign, 'x', 1);
  await commitVersion(work, foreign, 'x', 2);
  const refused = await cairn(['prune', '--data', data, '--repo', 'foreign', '--keep', '1']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /not created by Cairn/);
  assert.equal((await logCommits(foreign, 'x')).length, 2, 'an unowned repository is left alone');
});

test('prune with core.tombstone-commits=true writes the tombstones ostree writes; ostree fsck passes', async () => {
  const { work, data, repo } = await ownedData('cairn-prune-tomb-');
  await ostree(['config', 'set', 'core.tombstone-commits', 'true'], { repo });
  const a: string[] = [];
  for (let i = 1; i <= 3; i++) a.push(await commitVersion(work, repo, 'os/a', i, { timestamp: NOW - (5 - i) * DAY }));
  const copy = path.join(work, 'copy');
  execFileSync('cp', ['-a', repo, copy]);
  await ostree(['prune', '--refs-only', '--depth=0'], { repo: copy });

  const r = JSON.parse((await cairnOk(['prune', '--data', data, '--repo', 'main', '--keep', '1', '--json'])).stdout);
  assert.equal(r.tombstones, true);
  assert.deepEqual(r.commits.map((c: { commit: string }) => c.commit).sort(), [a[0], a[1]].sort());
  for (const c of [a[0]!, a[1]!]) {
    const ours = await fsp.readFile(objectFile(repo, c, 'tombstone-commit'));
    const theirs = await fsp.readFile(objectFile(copy, c, 'tombstone-commit'));
    assert.deepEqual(ours, theirs, `tombstone of ${c} as ostree writes it`);
  }
  assert.equal((await ostreeResult(['fsck'], { repo })).code, 0);
  // GC keeps tombstones.
  await cairnOk(['gc', '--data', data, '--repo', 'main', '--grace', '0s']);
  assert.equal(await exists(objectFile(repo, a[0]!, 'tombstone-commit')), true);
  assert.deepEqual(await objectNames(repo), await objectNames(copy));
});
