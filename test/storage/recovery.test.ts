import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fsp, utimesSync } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { acquireLockFile } from '../../storage/backends/lockfile';
import { JOURNAL_KEY, sha256OrNull, type Journal } from '../../storage/repo/journal';
import { updateRefs } from '../../storage/repo/publish';
import { readRecoveryStatus, recoverRepo, setRecoveryLog, summaryRefs } from '../../storage/repo/recovery';
import { readRefLog, refLogFileName } from '../../storage/repo/reflog';
import { Repo } from '../../storage/repo/repo';
import { summaryAgrees } from '../../storage/repo/recovery';
import { commitTree, initRepo, makeSourceTree, makeTempDir, ostree, removeTempDirs } from '../helpers/ostree';

/**
 * Start-up and before-publish recovery (storage/repo/recovery.ts) on real repositories: the damage
 * a crash, a kill or a full disk leaves (or a disk that lost a write) is repaired or reported, and
 * what recovery leaves passes `ostree fsck` with a summary that lists the refs.
 */
let work: string;
const commits: string[] = [];
let source: string;
const logged: string[] = [];

before(async () => {
  setRecoveryLog((level, msg, fields) => logged.push(`${level} ${msg} ${JSON.stringify(fields)}`));
  work = await makeTempDir('cairn-recovery-');
  source = await initRepo(path.join(work, 'source'), 'archive');
  for (let i = 0; i < 3; i++) {
    const t = await makeSourceTree(path.join(work, `t${i}`), { seed: 20 + i, bigFileBytes: 10_000 });
    commits.push(await commitTree(source, { branch: 'os/a', tree: t, timestamp: 1_709_251_200 + i }));
  }
});

after(removeTempDirs);

let n = 0;
/** A copy of the source repository (objects only), with `os/a` published by Cairn at commits[0]. */
async function freshRepo(): Promise<{ dir: string; repo: Repo }> {
  const dir = path.join(work, `r${++n}`);
  await fsp.cp(source, dir, { recursive: true });
  await fsp.rm(path.join(dir, 'refs', 'heads', 'os'), { recursive: true, force: true });
  const repo = new Repo('r', new FsBackend(dir));
  await updateRefs(repo, [{ ref: 'os/a', commit: commits[0]!, expected: null }], { actor: 'test' });
  return { dir, repo };
}

async function assertFsckAndSummary(dir: string, repo: Repo): Promise<void> {
  await ostree(['fsck'], { repo: dir });
  const s = summaryRefs(await fsp.readFile(path.join(dir, 'summary')));
  assert.ok(s);
  assert.deepEqual(Object.fromEntries(s.refs), Object.fromEntries(await repo.listRefs()));
}

test('a truncated ref is restored from the ref log and the summary lists it again', async () => {
  const { dir, repo } = await freshRepo();
  await updateRefs(repo, [{ ref: 'os/a', commit: commits[1]!, expected: commits[0]! }], { actor: 'test' });
  await fsp.writeFile(path.join(dir, 'refs', 'heads', 'os', 'a'), commits[1]!.slice(0, 20));
  const report = await recoverRepo(repo);
  assert.equal(await repo.readRef('os/a'), commits[1]);
  assert.match(report.repaired.join('\n'), /ref os\/a was damaged \(not a checksum\); restored to [0-9a-f]{64} from the ref log/);
  assert.deepEqual(report.problems, []);
  await assertFsckAndSummary(dir, repo);
  assert.deepEqual((await readRecoveryStatus(repo))?.repaired, report.repaired, 'the status is kept for the API');
});

test('a damaged ref the ref log cannot restore is reported exactly and left out of the summary', async () => {
  const { dir, repo } = await freshRepo();
  await fsp.rm(path.join(dir, 'state', 'cairn', 'reflog'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'refs', 'heads', 'os', 'a'), '');
  const report = await recoverRepo(repo);
  assert.deepEqual(report.problems, ['ref os/a is damaged (not a checksum) and the ref log has no entry naming a present commit to restore it from: it is left out of the summary until it is pushed again or deleted']);
  assert.match(report.repaired.join('\n'), /summary regenerated: it listed other refs than the repository holds/);
  const s = summaryRefs(await fsp.readFile(path.join(dir, 'summary')))!;
  assert.equal(s.refs.has('os/a'), false);
  assert.ok(logged.some((l) => l.startsWith('error repository problem') && l.includes('os/a is damaged')), 'logged');
});

test('a truncated or stale summary, or a missing signature, is regenerated; a sound one is left alone', async () => {
  const { dir, repo } = await freshRepo();
  // Published unsigned; now there is a signer: the signature is missing.
  const unsigned = await recoverRepo(repo, { signer: async () => Buffer.from('sig') });
  assert.deepEqual(unsigned.repaired, ['summary regenerated: summary.sig was missing']);
  await fsp.rm(path.join(dir, 'summary.sig'));
  assert.deepEqual((await recoverRepo(repo)).repaired, [], 'without a signer, an unsigned summary is sound');
  const bytes = await fsp.readFile(path.join(dir, 'summary'));
  await fsp.writeFile(path.join(dir, 'summary'), bytes.subarray(0, bytes.length - 7));
  const r1 = await recoverRepo(repo);
  assert.match(r1.repaired.join('\n'), /summary regenerated: the summary could not be read/);
  await assertFsckAndSummary(dir, repo);
  // A ref moved behind Cairn's back (the summary is stale): regenerated, and the move recorded.
  await fsp.writeFile(path.join(dir, 'refs', 'heads', 'os', 'a'), `${commits[2]}\n`);
  const r2 = await recoverRepo(repo);
  assert.match(r2.repaired.join('\n'), /ref os\/a holds [0-9a-f]{64} but its newest ref-log entry says [0-9a-f]{64}: recorded the ref as found/);
  assert.match(r2.repaired.join('\n'), /summary regenerated: it listed other refs/);
  assert.equal((await readRefLog(repo, { ref: 'os/a', limit: 1 }))[0]?.actor, 'system:recovery');
  await assertFsckAndSummary(dir, repo);
  // A signature that does not verify over the summary.
  await fsp.writeFile(path.join(dir, 'summary.sig'), Buffer.from('not a signature'));
  const r3 = await recoverRepo(repo, { signer: async (s) => Buffer.from(`signed ${sha256OrNull(s)}`), verify: async (s, sig) => sig.toString() === `signed ${sha256OrNull(s)}` });
  assert.match(r3.repaired.join('\n'), /summary regenerated: summary.sig did not verify over the summary/);
  assert.equal((await fsp.readFile(path.join(dir, 'summary.sig'))).toString(), `signed ${sha256OrNull(await fsp.readFile(path.join(dir, 'summary')))}`);
  const r4 = await recoverRepo(repo, { signer: async (s) => Buffer.from(`signed ${sha256OrNull(s)}`), verify: async (s, sig) => sig.toString() === `signed ${sha256OrNull(s)}` });
  assert.deepEqual([r4.repaired, r4.problems], [[], []], 'a sound pair is left alone');
  assert.equal(await readRecoveryStatus(repo), null, 'and the status says nothing is wrong');
});

test('a journal left by a publish that died after it is rolled forward: refs, ref log, summary', async () => {
  const { dir, repo } = await freshRepo();
  // A publish of os/a → commits[1] and a new ref os/b that died right after writing its journal.
  const time = new Date().toISOString();
  const changes = [
    { time, ref: 'os/a', old: commits[0]!, new: commits[1]!, actor: 'p' },
    { time, ref: 'os/b', old: null, new: commits[2]!, actor: 'p' },
  ].map((c, i) => ({ ...c, file: refLogFileName(c, `j1:${i}`) }));
  const summary = await fsp.readFile(path.join(dir, 'summary'));
  const j: Journal = { version: 1, id: 'j1', time, changes, next: { summary: '0'.repeat(64), sig: null }, prev: { summary: sha256OrNull(summary), sig: null } };
  await fsp.writeFile(path.join(dir, JOURNAL_KEY), JSON.stringify(j));
  // …and managed to rename one ref.
  await fsp.writeFile(path.join(dir, 'refs', 'heads', 'os', 'a'), `${commits[1]}\n`);
  assert.equal(await summaryAgrees(repo, false), false);
  const report = await recoverRepo(repo);
  assert.match(report.repaired.join('\n'), /an unfinished publish \(its journal\) was rolled forward/);
  assert.equal(await repo.readRef('os/a'), commits[1]);
  assert.equal(await repo.readRef('os/b'), commits[2]);
  assert.equal((await readRefLog(repo, { ref: 'os/b' }))[0]?.new, commits[2]);
  assert.equal((await readRefLog(repo, { ref: 'os/a' })).length, 2, 'one entry for the first publish, one for the rolled-forward one');
  await assert.rejects(fsp.stat(path.join(dir, JOURNAL_KEY)));
  await assertFsckAndSummary(dir, repo);
  assert.ok(logged.some((l) => l.includes('unfinished publish rolled forward') && l.includes('j1')));
});

test('the next publish finishes a journal too, and a publish that moves nothing repairs a stale summary', async () => {
  const { dir, repo } = await freshRepo();
  const time = new Date().toISOString();
  const c = { time, ref: 'os/a', old: commits[0]!, new: commits[1]!, actor: 'p' };
  const j: Journal = { version: 1, id: 'j2', time, changes: [{ ...c, file: refLogFileName(c, 'j2:0') }], next: { summary: null, sig: null }, prev: { summary: null, sig: null } };
  await fsp.writeFile(path.join(dir, JOURNAL_KEY), JSON.stringify(j));
  // The publisher retries with its expectation: the rolled-forward move is its own (CONFLICT naming it, as after a lost answer).
  await assert.rejects(updateRefs(repo, [{ ref: 'os/a', commit: commits[1]!, expected: commits[0]! }], { actor: 'p' }), (e: Error & { details?: { conflicts: Array<{ actual: string }> } }) => e.details?.conflicts[0]?.actual === commits[1]);
  await assertFsckAndSummary(dir, repo);
  // A stale summary (say, from before a crash of an older Cairn): a push of the same commit repairs it.
  const stale = await fsp.readFile(path.join(dir, 'summary'));
  await updateRefs(repo, [{ ref: 'os/a', commit: commits[2]!, expected: commits[1]! }], { actor: 'p' });
  await fsp.writeFile(path.join(dir, 'summary'), stale);
  assert.equal(await summaryAgrees(repo, false), false);
  const changes = await updateRefs(repo, [{ ref: 'os/a', commit: commits[2]!, expected: commits[2]! }], { actor: 'p' });
  assert.deepEqual(changes, [], 'nothing moved');
  assert.equal(await summaryAgrees(repo, false), true, 'but the summary says what the refs say');
  assert.equal(summaryRefs(await fsp.readFile(path.join(dir, 'summary')))!.refs.get('os/a'), commits[2]);
});

test('sweep: temporary files of dead processes and old ones go, live ones stay; stale and empty lock files go, held ones stay', async () => {
  const { dir, repo } = await freshRepo();
  const tmp = path.join(dir, 'tmp');
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
  const old = Date.now() / 1000 - 2 * 3600;
  const files = {
    deadOld: `cairn-${dead}-0123456789abcdef.tmp`, // process gone, 2 h old
    deadYoung: `cairn-${dead}-1123456789abcdef.tmp`, // process gone, just written: another host's maybe; kept for a minute
    liveOld: `cairn-${process.pid}-2123456789abcdef.tmp`, // ours, but untouched for 2 h
    liveYoung: `cairn-${process.pid}-3123456789abcdef.tmp`, // ours, being written
    ostrees: 'staging-xyz.tmp', // not Cairn's
  };
  for (const f of Object.values(files)) await fsp.writeFile(path.join(tmp, f), 'x');
  utimesSync(path.join(tmp, files.deadOld), old, old);
  utimesSync(path.join(tmp, files.liveOld), old, old);
  // A lock of a dead process, an empty lock file (an older Cairn that died between create and write), a held lock.
  await fsp.writeFile(path.join(tmp, 'cairn-dead.lock'), JSON.stringify({ pid: Number(dead), host: (await import('node:os')).hostname(), token: 'x' }));
  await fsp.writeFile(path.join(tmp, 'cairn-empty.lock'), '');
  utimesSync(path.join(tmp, 'cairn-empty.lock'), Date.now() / 1000 - 10, Date.now() / 1000 - 10);
  const release = await acquireLockFile(path.join(tmp, 'cairn-held.lock'));
  const report = await recoverRepo(repo);
  await release();
  const left = (await fsp.readdir(tmp)).sort();
  assert.deepEqual(left, [files.deadYoung, files.liveYoung, files.ostrees, 'cache'].sort(), report.repaired.join('\n'));
  assert.match(report.repaired.join('\n'), /removed stale lock tmp\/cairn-dead\.lock \(held by pid \d+, which is gone\)/);
  assert.match(report.repaired.join('\n'), /removed stale lock tmp\/cairn-empty\.lock \(no holder record\)/);
  assert.match(report.repaired.join('\n'), new RegExp(`removed temporary file tmp/${files.deadOld}`));
});

test('a lock file appears with its holder record (pid, boot id) and goes with its temporary record', async () => {
  const dir = path.join(work, 'locks');
  await fsp.mkdir(dir, { recursive: true });
  const release = await acquireLockFile(path.join(dir, 'cairn-x.lock'));
  const rec = JSON.parse(await fsp.readFile(path.join(dir, 'cairn-x.lock'), 'utf8')) as { pid: number; boot?: string };
  assert.equal(rec.pid, process.pid);
  assert.equal(typeof rec.boot, 'string', 'the boot id is recorded (Linux)');
  await release();
  assert.deepEqual(await fsp.readdir(dir), [], 'released: no lock, no temporary record');
});
