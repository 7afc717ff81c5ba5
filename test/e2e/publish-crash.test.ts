// Crash at every write of a publish (issue #11, item 0 and the "crash at every write" harness): a
// `cairn serve` started with CAIRN_FAULT_AT=n kills itself (SIGKILL) at the n-th publish write step
// (storage/repo/faults.ts: each staged file, the journal, each rename, the journal's removal, and
// those of the summary regenerations of the delta jobs that follow), for n = 1, 2, … until a push
// and its delta jobs go through without a kill. After each kill the server is started again on the
// same data folder, and: the stock `ostree fsck` passes, the summary lists exactly the refs on disk
// and summary.sig signs it, each ref's newest ref-log entry names its commit, every acknowledged push
// is there (an unacknowledged one may or may not be), no journal is left, and a verifying pull by
// the stock client gets the ref's commit.

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { jobsSettled, startCairn, type CairnProcess } from '../helpers/cairn-process';
import { commitTree, initRepo, makeSourceTree, makeTempDir, removeTempDirs } from '../helpers/ostree';
import { assertPublishedConsistent, initData, saveGpgKey, startCli, verifyingPull } from './publish-helpers';

const REF = 'os/crash';
/** Beyond this many kills the publish has more write steps than any version of it should. */
const MAX_STEPS = 60;

let work: string;
let data: string;
let local: string;
let token: string;
let tree: string;
const running: CairnProcess[] = [];

before(async () => {
  work = await makeTempDir('cairn-publish-crash-');
  data = path.join(work, 'data');
  token = await initData(data);
  local = await initRepo(path.join(work, 'local'), 'archive');
  tree = await makeSourceTree(path.join(work, 'tree'), { seed: 7, bigFileBytes: 30_000 });
});

after(async () => {
  for (const c of running) await c.stop();
  await removeTempDirs();
});

async function start(env: NodeJS.ProcessEnv = {}): Promise<CairnProcess> {
  const c = await startCairn({ dataDir: data, env });
  running.push(c);
  return c;
}

async function stop(c: CairnProcess): Promise<void> {
  await c.stop();
  running.splice(running.indexOf(c), 1);
}

/** A new commit of REF in the local repository (one file more than the last). */
async function nextCommit(i: number): Promise<string> {
  await fsp.writeFile(path.join(tree, `step-${i}.txt`), `step ${i}\n`);
  return commitTree(local, { branch: REF, tree, subject: `step ${i}`, timestamp: 1_709_251_200 + i });
}

/** `cairn push` with no retries, given up after 60 s (a push must never wait on a dead server). */
async function push(url: string): Promise<{ ok: boolean; stderr: string }> {
  const { child, done } = startCli(['push', '--url', `${url}/repo/main`, '--token', token, '--repo', local, '--retries', '0', REF]);
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const r = await done;
  clearTimeout(timer);
  return { ok: r.code === 0, stderr: r.stderr };
}

/** Whether the server (its primary, with --workers 2) is still there, and whether a worker or it was killed. */
function killed(c: CairnProcess): boolean {
  return /SIGKILL/.test(c.output());
}

test('a kill at each write step of a publish leaves a repository that recovers at the next start', { timeout: 1_200_000 }, async (t) => {
  // A first publication, so that there is a summary, a signature and keys to keep consistent.
  let c = await start();
  let acked = await nextCommit(0);
  const first = await push(c.url);
  assert.ok(first.ok, first.stderr);
  await jobsSettled(c.url);
  await stop(c);

  let kills = 0;
  let clean = false;
  for (let n = 1; n <= MAX_STEPS && !clean; n++) {
    const pending = await nextCommit(n);
    c = await start({ CAIRN_FAULT_AT: String(n), CAIRN_FAULT_LOG: '1' });
    const r = await push(c.url);
    if (r.ok) acked = pending;
    if (!killed(c)) {
      // The push went through; the delta jobs that follow write too: wait for them (or the kill).
      await jobsSettled(c.url).catch(() => undefined);
    }
    const steps = c.output().match(/cairn fault point \d+: .*/g) ?? [];
    const wasKilled = killed(c);
    if (wasKilled) kills++;
    else clean = r.ok;
    await stop(c);

    t.diagnostic(`fault point ${n}: ${wasKilled ? `killed at "${steps[steps.length - 1] ?? '?'}"` : 'no kill'}, push ${r.ok ? 'acknowledged' : 'failed'}`);
    const what = `after fault point ${n} (${steps[steps.length - 1] ?? 'no step reached'}; push ${r.ok ? 'acknowledged' : `failed: ${r.stderr.trim()}`})`;
    c = await start();
    const refs = await assertPublishedConsistent(data, what);
    const now = refs.get(REF);
    assert.ok(now === acked || now === pending, `${what}: ${REF} is at ${now}, not the acknowledged ${acked}`);
    if (now === pending) acked = pending;
    const gpgAsc = await saveGpgKey(c.url, path.join(work, 'gpg.asc'));
    assert.equal(await verifyingPull(path.join(work, `client-${n}`), c.url, gpgAsc, REF), now, `${what}: a verifying pull gets the ref's commit`);
    await jobsSettled(c.url);
    await stop(c);
  }
  assert.ok(clean, `a publish still had write steps after ${MAX_STEPS} fault points`);
  assert.ok(kills >= 8, `only ${kills} kills: the publish should have at least 8 write steps`);
});
