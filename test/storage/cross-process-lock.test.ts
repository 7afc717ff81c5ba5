import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { acquireLockFile } from '../../storage/backends/lockfile';
import { CairnError } from '../../storage/errors';
import { Repo } from '../../storage/repo/repo';
import { commitTree, initRepo, makeSourceTree, makeTempDir, ostree, removeTempDirs } from '../helpers/ostree';

/**
 * The ref compare-and-swap and the summary regeneration hold a lock that works
 * across processes (`cairn serve --workers`, `cairn commit`, `cairn delta` on
 * one data folder): several processes publishing the same ref with the same
 * expectation at the same moment — exactly one wins.
 */
let work: string;
let repoDir: string;
const commits: string[] = [];

before(async () => {
  work = await makeTempDir('cairn-xlock-');
  repoDir = await initRepo(path.join(work, 'repo'), 'archive');
  for (let i = 0; i < 4; i++) {
    const tree = await makeSourceTree(path.join(work, `t${i}`), { seed: 10 + i, bigFileBytes: 100_000 });
    commits.push(await commitTree(repoDir, { branch: 'os/race', tree, timestamp: 1709251200 + i }));
  }
});

after(removeTempDirs);

const CHILD = `
const [publishJs, fsJs, repoJs, dir, commit, startAt] = process.argv.slice(1);
const { updateRefs } = require(publishJs);
const { FsBackend } = require(fsJs);
const { Repo } = require(repoJs);
(async () => {
  const repo = new Repo('race', new FsBackend(dir));
  while (Date.now() < Number(startAt)) {}
  try {
    await updateRefs(repo, [{ ref: 'os/race', commit, expected: null }], { actor: 'p' + process.pid });
    process.stdout.write('WON');
  } catch (e) {
    process.stdout.write(e.code === 'CONFLICT' ? 'CONFLICT' : 'ERROR ' + e.stack);
  }
})();
`;

function publishInChild(commit: string, startAt: number): Promise<string> {
  const dist = path.join(__dirname, '..', '..', 'storage');
  const child = spawn(process.execPath, ['-e', CHILD, path.join(dist, 'repo', 'publish.js'), path.join(dist, 'backends', 'fs.js'), path.join(dist, 'repo', 'repo.js'), repoDir, commit, String(startAt)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  return new Promise((resolve) => child.on('close', () => resolve(out)));
}

test('processes racing to create the same ref: exactly one wins, the others see CONFLICT, the summary agrees', async () => {
  for (let round = 0; round < 3; round++) {
    await fsp.rm(path.join(repoDir, 'refs', 'heads', 'os', 'race'), { force: true });
    const startAt = Date.now() + 700; // every child loaded and waiting before the start
    const outcomes = await Promise.all(commits.map((c) => publishInChild(c, startAt)));
    assert.equal(outcomes.filter((o) => o === 'WON').length, 1, `round ${round}: ${outcomes.join(', ')}`);
    assert.equal(outcomes.filter((o) => o === 'CONFLICT').length, commits.length - 1, `round ${round}: ${outcomes.join(', ')}`);
    const winner = commits[outcomes.indexOf('WON')]!;
    const repo = new Repo('race', new FsBackend(repoDir));
    assert.equal(await repo.readRef('os/race'), winner);
    const refs = await ostree(['refs'], { repo: repoDir });
    assert.match(refs, /os\/race/);
    // no lock file left behind
    assert.deepEqual((await fsp.readdir(path.join(repoDir, 'tmp'))).filter((f) => f.startsWith('cairn-') && f.includes('.lock')), []);
  }
});

test('a lock file left by a dead process is taken over', async () => {
  const file = path.join(work, 'locks', 'cairn-x.lock');
  await fsp.mkdir(path.dirname(file), { recursive: true });
  // a pid that cannot be alive: a finished child's
  const dead = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => dead.on('close', r));
  await fsp.writeFile(file, JSON.stringify({ pid: dead.pid, host: (await import('node:os')).hostname(), token: 'old' }) + '\n');
  const release = await acquireLockFile(file, { timeoutMs: 5000 });
  assert.match(await fsp.readFile(file, 'utf8'), /"pid":/);
  assert.doesNotMatch(await fsp.readFile(file, 'utf8'), /"old"/);
  await release();
  assert.equal(existsSync(file), false);
});

test('a held lock makes the next taker wait until it is released', async () => {
  const file = path.join(work, 'locks', 'cairn-y.lock');
  const first = await acquireLockFile(file);
  let got = false;
  const second = acquireLockFile(file).then((r) => {
    got = true;
    return r;
  });
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(got, false);
  await first();
  await (await second)();
  assert.equal(got, true);
});

test('confirm(): a held lock file is refreshed; one broken as stale after a stall (a new holder in its place) rejects with CONFLICT', async () => {
  const file = path.join(work, 'locks', 'cairn-z.lock');
  const held = await acquireLockFile(file);
  const old = new Date(Date.now() - 20_000);
  await fsp.utimes(file, old, old);
  await held.confirm();
  assert.ok(Date.now() - (await fsp.stat(file)).mtimeMs < 5_000, 'refreshed by confirm()');
  // A waiter judged it stale (not refreshed for 30 s) and took it: another holder's record under the name.
  await fsp.rm(file);
  const next = await acquireLockFile(file);
  await assert.rejects(held.confirm(), (e: unknown) => e instanceof CairnError && e.code === 'CONFLICT');
  await held(); // leaves the new holder's file alone
  assert.equal(existsSync(file), true);
  await next.confirm();
  await next();
});
