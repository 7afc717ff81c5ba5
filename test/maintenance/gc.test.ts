// Garbage collection while publishing: a ref that moves between gc's mark and its sweep keeps its
// objects (the sweep's rounds re-mark moved refs under the ref lock), objects within the grace
// window survive, and end to end: `cairn gc` runs in a loop against the data folder of a listening
// `cairn serve` while `cairn push` publishes commit after commit; every push succeeds, each gc
// deletes the old garbage put there for it, and the stock client pulls the last commit and fscks.
//
// Run: npx tsc -p . && node --test dist/test/maintenance/gc.test.js

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { FsBackend } from '../../storage/backends/fs';
import { gc } from '../../storage/maintenance/gc';
import { objectName, walkCommitTree } from '../../storage/repo/closure';
import { updateRefs } from '../../storage/repo/publish';
import { Repo } from '../../storage/repo/repo';
import { startCairn } from '../helpers/cairn-process';
import { addRemote, commitTree, initRepo, ostree, ostreeResult, pseudoRandomBytes, removeTempDirs } from '../helpers/ostree';
import { cairn, cairnOk, commitVersion, objectNames, ownedData } from './helpers';

after(removeTempDirs);

const HOUR = 3_600_000;

/** An orphan commit (no ref) of a tree nothing else holds, written by `ostree commit` into `repo`; its object names. */
async function garbage(work: string, repo: string, seed: number): Promise<string[]> {
  const dir = path.join(work, `garbage-${seed}`);
  await fsp.mkdir(path.join(dir, `g${seed}`), { recursive: true });
  await fsp.writeFile(path.join(dir, `g${seed}`, `junk-${seed}.bin`), pseudoRandomBytes(90_000 + seed, 5000));
  await fsp.writeFile(path.join(dir, `junk-${seed}.txt`), `garbage ${seed}\n`);
  const commit = (await ostree(['commit', '--orphan', '--no-bindings', `--tree=dir=${dir}`, `--subject=garbage ${seed}`], { repo })).trim();
  // Its objects by its tree (not by what appeared meanwhile: pushes run beside it), but the
  // folders' dirmeta, which every tree of these tests shares.
  const walk = await walkCommitTree(new Repo('g', new FsBackend(repo)), commit);
  return walk.objects
    .map(objectName)
    .filter((n) => !n.endsWith('.dirmeta'))
    .map((n) => `${n.slice(0, 2)}/${n.slice(2)}`);
}

/** Sets the mtime of these objects (`XX/REST.EXT`) `ageMs` into the past. */
async function age(repo: string, names: string[], ageMs: number): Promise<void> {
  const t = new Date(Date.now() - ageMs);
  for (const n of names) await fsp.utimes(path.join(repo, 'objects', n), t, t);
}

async function present(repo: string, names: string[]): Promise<string[]> {
  const all = new Set(await objectNames(repo));
  return names.filter((n) => all.has(n));
}

test('a ref moved between the mark and the sweep keeps its old, unreachable-at-mark objects; garbage and the grace window', async () => {
  const { work, repo } = await ownedData('cairn-gc-race-unit-');
  await commitVersion(work, repo, 'os/a', 1);
  const adopted = await garbage(work, repo, 1); // will be published during the gc
  const junk = await garbage(work, repo, 2); // stays garbage
  const fresh = await garbage(work, repo, 3); // garbage, but young
  await age(repo, [...adopted, ...junk], 2 * HOUR);
  const commit = adopted.find((n) => n.endsWith('.commit'))!;
  const checksum = commit.slice(0, 2) + commit.slice(3, -'.commit'.length);
  const r = new Repo('main', new FsBackend(repo));

  let moved = false;
  const report = await gc(r, {
    afterMark: async () => {
      // A publish lands after the mark: it points a ref at the old, unmarked commit.
      await updateRefs(r, [{ ref: 'os/b', commit: checksum, expected: null }], { actor: 'test' });
      moved = true;
    },
  });
  assert.ok(moved);
  assert.deepEqual(await present(repo, adopted), adopted, 'the commit published during the gc is whole');
  assert.deepEqual(await present(repo, junk), [], 'old garbage went');
  assert.deepEqual(await present(repo, fresh), fresh, 'young garbage stays (grace window)');
  assert.equal(report.deletedObjects, junk.length);
  // The young garbage commit is kept for its age, and keeps its tree with it (what it reaches is marked, not counted young).
  assert.equal(report.young, fresh.filter((n) => n.endsWith('.commit')).length);
  assert.equal((await ostreeResult(['fsck'], { repo })).code, 0);
  // A dry run deletes nothing; a grace of 0 then takes the young garbage too.
  const dry = await gc(r, { graceMs: 0, dryRun: true });
  assert.equal(dry.deletedObjects, fresh.length);
  assert.deepEqual(await present(repo, fresh), fresh);
  await gc(r, { graceMs: 0 });
  assert.deepEqual(await present(repo, fresh), []);
  assert.equal((await ostreeResult(['fsck'], { repo })).code, 0);
});

test('cairn gc in a loop while cairn push publishes: every push succeeds, old garbage goes, the stock client pulls and fscks', async () => {
  const { work, data, repo } = await ownedData('cairn-gc-race-');
  const token = (await cairnOk(['token', '--data', data, '--scope', 'push', '--repo', 'main', '--prefix', 'os/', '--ttl', '1h'])).stdout.trim();
  const local = await initRepo(path.join(work, 'local'), 'archive');
  const server = await startCairn({ dataDir: data });
  try {
    const url = `${server.url}/repo/main`;
    const push = async (n: number) => {
      const dir = path.join(work, `v${n}`);
      await fsp.mkdir(path.join(dir, 'usr', `lib${n}`), { recursive: true });
      await fsp.writeFile(path.join(dir, 'usr', 'version'), `${n}\n`);
      await fsp.writeFile(path.join(dir, 'usr', `lib${n}`, 'blob.bin'), pseudoRandomBytes(500 + n, 200_000));
      for (let i = 0; i < 40; i++) await fsp.writeFile(path.join(dir, 'usr', `lib${n}`, `f${i}.txt`), `file ${i} of ${n}\n`.repeat(i + 1));
      const c = await commitTree(local, { branch: 'os/stable', tree: dir, subject: `v${n}` });
      const r = await cairn(['push', '--url', url, '--token', token, '--repo', local, 'os/stable']);
      assert.equal(r.code, 0, `push of v${n} failed:\n${r.stderr}\n${server.output().split('\n').slice(-10).join('\n')}`);
      return c;
    };
    await push(0); // the tree's folders' dirmeta is reachable from now on

    let pushing = true;
    const gcRuns: Array<{ deleted: number; garbage: number; left: number }> = [];
    const gcLoop = (async () => {
      for (let i = 10; pushing || gcRuns.length < 3; i++) {
        const junk = await garbage(work, repo, i);
        await age(repo, junk, 2 * HOUR);
        const r = await cairn(['gc', '--data', data, '--repo', 'main', '--json']);
        assert.equal(r.code, 0, r.stderr);
        const rep = JSON.parse(r.stdout) as { deletedObjects: number };
        gcRuns.push({ deleted: rep.deletedObjects, garbage: junk.length, left: (await present(repo, junk)).length });
      }
    })();
    let last = '';
    try {
      for (let n = 1; n <= 6; n++) last = await push(n);
    } finally {
      pushing = false;
    }
    await gcLoop;
    assert.ok(gcRuns.length >= 3, `gc ran ${gcRuns.length} times`);
    for (const g of gcRuns) assert.equal(g.left, 0, `each gc deleted the old garbage put there for it: ${JSON.stringify(gcRuns)}`);
    assert.ok(gcRuns.every((g) => g.deleted >= g.garbage));

    const fsck = await ostreeResult(['fsck'], { repo });
    assert.equal(fsck.code, 0, fsck.stderr);
    assert.equal((await cairn(['fsck', '--data', data, '--repo', 'main'])).code, 0);
    const client = await initRepo(path.join(work, 'client'), 'archive');
    await addRemote(client, 'cairn', url);
    await ostree(['pull', 'cairn', 'os/stable'], { repo: client });
    assert.equal((await ostree(['rev-parse', 'cairn:os/stable'], { repo: client })).trim(), last);
    assert.equal((await ostreeResult(['fsck'], { repo: client })).code, 0);
    assert.equal((await ostree(['log', 'cairn:os/stable'], { repo: client })).match(/^commit /gm)?.length, 1, 'a plain pull fetches the head only');
  } finally {
    await server.stop();
  }
});

test('a commit kept for its age keeps its tree, however old its objects (ostree fsck checks every commit in objects/)', async () => {
  const { work, repo } = await ownedData('cairn-gc-young-commit-');
  await commitVersion(work, repo, 'os/a', 1);
  const unreachable = await garbage(work, repo, 7);
  // Everything but the commit is old: a push in flight whose objects were uploaded long ago, say.
  await age(repo, unreachable.filter((n) => !n.endsWith('.commit')), 2 * HOUR);
  const report = await gc(new Repo('main', new FsBackend(repo)));
  assert.equal(report.deletedObjects, 0, JSON.stringify(report.sample));
  assert.deepEqual(await present(repo, unreachable), unreachable);
  assert.equal((await ostreeResult(['fsck'], { repo })).code, 0);
});

test('gc removes in batches (Backend.removeMany): a commit\'s .commitmeta and partial marker in a batch before the commit\'s, every commit before its tree; clock probes older than an hour left in tmp/ go, not younger ones, not on a dry run', async () => {
  const { work, repo } = await ownedData('cairn-gc-batches-');
  await commitVersion(work, repo, 'os/a', 1);
  const unreachable = [...(await garbage(work, repo, 21)), ...(await garbage(work, repo, 22))];
  const commits = unreachable.filter((n) => n.endsWith('.commit')).map((n) => n.slice(0, 2) + n.slice(3, -'.commit'.length));
  assert.equal(commits.length, 2);
  // Detached metadata and ostree's partial marker beside each (gc reads neither: bytes are arbitrary).
  for (const c of commits) {
    await fsp.writeFile(path.join(repo, 'objects', c.slice(0, 2), `${c.slice(2)}.commitmeta`), Buffer.alloc(8));
    await fsp.writeFile(path.join(repo, 'state', `${c}.commitpartial`), '');
  }
  await age(repo, [...unreachable, ...commits.map((c) => `${c.slice(0, 2)}/${c.slice(2)}.commitmeta`)], 2 * HOUR);
  // Clock probes of a gc killed between the probe's write and its removal (storeNow): one old, one young.
  const oldProbe = path.join(repo, 'tmp', 'cairn-gc-clock-99999-0123456789ab');
  const youngProbe = path.join(repo, 'tmp', 'cairn-gc-clock-99998-ba9876543210');
  for (const p of [oldProbe, youngProbe]) await fsp.writeFile(p, 'probe\n');
  await fsp.utimes(oldProbe, new Date(Date.now() - 2 * HOUR), new Date(Date.now() - 2 * HOUR));
  await fsp.utimes(youngProbe, new Date(Date.now() - HOUR / 2), new Date(Date.now() - HOUR / 2));
  const exists = (p: string) => fsp.stat(p).then(() => true, () => false);

  const dry = await gc(new Repo('main', new FsBackend(repo)), { dryRun: true });
  assert.equal(dry.deletedObjects, unreachable.length + commits.length, 'and the .commitmeta, which a real run removes with their commits');
  assert.ok(await exists(oldProbe), 'a dry run removes no probe');

  // The removals as the backend sees them: one entry per removeMany call (remove calls too).
  const calls: string[][] = [];
  const inner = new FsBackend(repo);
  const recording = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'removeMany') return (keys: readonly string[]) => (calls.push([...keys]), target.removeMany(keys));
      if (prop === 'remove') return (key: string) => (calls.push([key]), target.remove(key));
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const report = await gc(new Repo('main', recording));
  assert.equal(report.deletedObjects, unreachable.length);
  assert.deepEqual(await present(repo, unreachable), []);
  assert.equal(await exists(oldProbe), false, 'the old probe went');
  assert.ok(await exists(youngProbe), 'a probe younger than an hour stays (its gc may still run)');
  const callOf = (key: string) => calls.findIndex((c) => c.includes(key));
  for (const c of commits) {
    const at = callOf(`objects/${c.slice(0, 2)}/${c.slice(2)}.commit`);
    assert.ok(at >= 0);
    assert.ok(callOf(`objects/${c.slice(0, 2)}/${c.slice(2)}.commitmeta`) < at && callOf(`objects/${c.slice(0, 2)}/${c.slice(2)}.commitmeta`) >= 0);
    assert.ok(callOf(`state/${c}.commitpartial`) < at && callOf(`state/${c}.commitpartial`) >= 0);
    assert.equal(await exists(path.join(repo, 'state', `${c}.commitpartial`)), false);
  }
  const lastCommit = Math.max(...commits.map((c) => callOf(`objects/${c.slice(0, 2)}/${c.slice(2)}.commit`)));
  for (const n of unreachable.filter((x) => !x.endsWith('.commit'))) assert.ok(callOf(`objects/${n}`) > lastCommit, `${n} after every commit`);
  assert.equal((await ostreeResult(['fsck'], { repo })).code, 0);
});
