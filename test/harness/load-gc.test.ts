// Load under publishing and garbage collection (issue #11, "Harnesses that must exist"; beside
// test/e2e/publish-load, which moves a ref between two commits): 100 verifying pulls by the stock
// client (gpg-verify, gpg-verify-summary) started at once, half into fresh repositories and half into
// repositories that keep their cached summary, and a load generator in a process of its own
// (test/harness/load-generator.ts: plain HTTP GETs over kept-alive connections of objects, summary,
// summary.sig, config and refs at concurrency 50, every body checked) while `cairn push`
// publishes new commits, the admin API prunes and asks for deltas, delta jobs run, and `cairn gc`
// runs in a loop against the data folder (old garbage put there for it each round). Zero failed
// pulls, zero failed requests, every push acknowledged and there at the end, each gc deleted its
// garbage, the repository passes `ostree fsck` and Cairn's consistency checks. The load generator's
// latency percentiles are printed (the README's "Load" line comes from a run of this test).
//
// CAIRN_LOAD_PULLS=N (default 100) pulls, all at once; CAIRN_LOAD_SECONDS=S makes the load last at
// least S seconds (default 30, or as long as the pulls take).
// Run: npx tsc -p . && node --test dist/test/harness/load-gc.test.js

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { fork } from 'node:child_process';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { FsBackend } from '../../storage/backends/fs';
import { objectName, walkCommitTree } from '../../storage/repo/closure';
import { Repo } from '../../storage/repo/repo';
import { jobsSettled, startCairn, type CairnProcess } from '../helpers/cairn-process';
import { addRemote, commitTree, initRepo, makeSourceTree, makeTempDir, ostree, ostreeResult, pseudoRandomBytes, removeTempDirs } from '../helpers/ostree';
import { assertPublishedConsistent, diskRefs } from '../e2e/publish-helpers';
import { cli, cliOk, SERVER_ENV, token } from './helpers';

const PULLS = Math.max(1, Number(process.env.CAIRN_LOAD_PULLS ?? '100') || 100);
const MIN_SECONDS = Number(process.env.CAIRN_LOAD_SECONDS ?? '30') || 0;
const GENERATOR_CONCURRENCY = 50;
const REF = 'os/load';
const PINNED = 'os/pinned';
const HOUR = 3_600_000;

let work: string;
let data: string;
let repoDir: string;
let local: string;
let cairn: CairnProcess;
let pushToken: string;
let adminToken: string;

before(async () => {
  work = await makeTempDir('cairn-load-gc-');
  data = path.join(work, 'data');
  repoDir = path.join(data, 'repos', 'main');
  await cliOk(['init-repo', 'main', '--data', data]);
  pushToken = await token(['push'], { prefixes: ['os/'] });
  adminToken = await token(['read', 'push', 'admin']);
  local = await initRepo(path.join(work, 'local'), 'archive');
  cairn = await startCairn({ dataDir: data, env: SERVER_ENV, timeoutMs: 60_000 });
});

after(async () => {
  await cairn?.stop();
  await removeTempDirs();
});

let version = 0;
/** A new commit of `ref` (a changed binary, a new file, 40 small files), pushed; its checksum. */
async function pushNew(ref: string): Promise<string> {
  const n = ++version;
  const tree = path.join(work, `tree-${ref.replace(/\//g, '_')}`);
  if (n === 1) await makeSourceTree(tree, { seed: 77, bigFileBytes: 200_000 });
  await fsp.mkdir(path.join(tree, 'usr', 'lib'), { recursive: true });
  await fsp.writeFile(path.join(tree, 'usr', 'lib', 'changing.bin'), pseudoRandomBytes(9000 + n, 150_000));
  await fsp.writeFile(path.join(tree, 'usr', 'lib', `added-${n}.txt`), `version ${n}\n`.repeat(n));
  const commit = await commitTree(local, { branch: ref, tree, subject: `v${n}`, timestamp: 1_709_251_200 + n });
  const r = await cli(['push', '--url', `${cairn.url}/repo/main`, '--token', pushToken, '--repo', local, ref]);
  assert.equal(r.code, 0, `push of v${n} to ${ref} failed:\n${r.stderr}\n${cairn.output().slice(-2000)}`);
  return commit;
}

/** An orphan commit of a tree nothing else holds, written by `ostree commit` into the repository and aged 2 h: its object files. */
async function garbage(seed: number): Promise<string[]> {
  const dir = path.join(work, `garbage-${seed}`);
  await fsp.mkdir(path.join(dir, `g${seed}`), { recursive: true });
  await fsp.writeFile(path.join(dir, `g${seed}`, 'junk.bin'), pseudoRandomBytes(70_000 + seed, 20_000));
  await fsp.writeFile(path.join(dir, `junk-${seed}.txt`), `garbage ${seed}\n`);
  const commit = (await ostree(['commit', '--orphan', '--no-bindings', `--tree=dir=${dir}`, `--subject=garbage ${seed}`], { repo: repoDir })).trim();
  const walk = await walkCommitTree(new Repo('g', new FsBackend(repoDir)), commit);
  const files = walk.objects
    .map(objectName)
    .filter((x) => !x.endsWith('.dirmeta')) // shared with every tree
    .map((x) => path.join(repoDir, 'objects', x.slice(0, 2), x.slice(2)));
  const old = new Date(Date.now() - 2 * HOUR);
  for (const f of files) await fsp.utimes(f, old, old);
  return files;
}

async function exists(f: string): Promise<boolean> {
  return fsp.stat(f).then(
    () => true,
    () => false,
  );
}

interface GeneratorReport {
  requests: number;
  seconds: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  failures: string[];
  idleRaces: number;
}

test(`${PULLS} verifying stock pulls at once and 50 concurrent GETs while pushes, prunes, delta jobs and cairn gc run: nothing fails, nothing is lost`, { timeout: 1_800_000 }, async (t) => {
  // History: the pinned ref (never moves: the load generator's objects), and the moving ref.
  const pinned = await pushNew(PINNED);
  const acked: string[] = [await pushNew(REF)];
  const gpgAsc = path.join(work, 'gpg.asc');
  await fsp.writeFile(gpgAsc, Buffer.from(await (await fetch(`${cairn.url}/repo/main/keys/gpg.asc`)).arrayBuffer()));

  // What the load generator asks for: every object of the pinned commit (bytes known), and the
  // mutable files (summary, its signature, config, the refs), whose answers must be 200 and whole.
  const pinnedWalk = await walkCommitTree(new Repo('main', new FsBackend(repoDir)), pinned);
  const objects: Array<{ path: string; sha256: string }> = [];
  for (const o of pinnedWalk.objects) {
    const name = objectName(o);
    const rel = `objects/${name.slice(0, 2)}/${name.slice(2)}`;
    objects.push({ path: `/repo/main/${rel}`, sha256: createHash('sha256').update(await fsp.readFile(path.join(repoDir, rel))).digest('hex') });
  }
  const mutable = ['/repo/main/summary', '/repo/main/summary.sig', '/repo/main/config', `/repo/main/refs/heads/${REF}`, `/repo/main/refs/heads/${PINNED}`];

  let stop = false;
  const failures: string[] = [];
  // The load generator runs in its own process (test/harness/load-generator.ts).
  const targets = [...objects, ...objects.slice(0, Math.ceil(objects.length / 4)).map((_, i) => ({ path: mutable[i % mutable.length]!, sha256: '' }))];
  const generator = fork(path.join(__dirname, 'load-generator.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const generated = new Promise<GeneratorReport>((resolve, reject) => {
    generator.once('message', (m) => resolve(m as GeneratorReport));
    generator.once('exit', (code) => reject(new Error(`the load generator exited with ${code} before reporting`)));
  });
  generated.catch(() => undefined);

  // Publishing: a new commit every ~second, a prune (keep 3) every 4th, a delta request for each.
  const publishing = (async () => {
    for (let i = 0; !stop; i++) {
      const c = await pushNew(REF);
      acked.push(c);
      const d = await fetch(`${cairn.url}/api/repos/main/deltas`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` }, body: JSON.stringify({ from: null, to: c }) });
      assert.ok([200, 202].includes(d.status), `delta request: ${d.status} ${await d.text()}`);
      if (i % 4 === 3) {
        const p = await fetch(`${cairn.url}/api/repos/main/prune`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` }, body: JSON.stringify({ keep: 3 }) });
        assert.equal(p.status, 200, `prune: ${await p.text()}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  })();

  // cairn gc in a loop against the data folder; each round has old garbage to delete.
  const gcRounds: Array<{ deleted: number; left: number }> = [];
  const collecting = (async () => {
    for (let i = 1; !stop || gcRounds.length < 2; i++) {
      const junk = await garbage(i);
      const r = await cli(['gc', '--data', data, '--repo', 'main', '--json']);
      assert.equal(r.code, 0, `cairn gc: ${r.stderr}`);
      let left = 0;
      for (const f of junk) if (await exists(f)) left++;
      gcRounds.push({ deleted: (JSON.parse(r.stdout) as { deletedObjects: number }).deletedObjects, left });
    }
  })();

  // The pulls: all at once; even ones keep a cached summary (pulled once before), odd ones are fresh.
  const kept = await Promise.all(
    Array.from({ length: Math.ceil(PULLS / 2) }, async (_, k) => {
      const dir = await initRepo(path.join(work, `kept-${k}`), 'archive');
      await addRemote(dir, 'cairn', `${cairn.url}/repo/main`, { gpgImport: gpgAsc, set: { 'gpg-verify': 'true', 'gpg-verify-summary': 'true' } });
      await ostree(['pull', 'cairn', PINNED], { repo: dir });
      return dir;
    }),
  );
  const started = Date.now();
  generator.send({ port: cairn.port, concurrency: GENERATOR_CONCURRENCY, targets });
  const pullResults: string[] = [];
  const pulls = Array.from({ length: PULLS }, async (_, i) => {
    let dir: string;
    if (i % 2 === 0) dir = kept[i / 2]!;
    else {
      dir = await initRepo(path.join(work, `fresh-${i}`), 'archive');
      await addRemote(dir, 'cairn', `${cairn.url}/repo/main`, { gpgImport: gpgAsc, set: { 'gpg-verify': 'true', 'gpg-verify-summary': 'true' } });
    }
    const r = await ostreeResult(['pull', 'cairn', REF], { repo: dir, timeoutMs: 600_000 });
    if (r.code !== 0) {
      failures.push(`pull ${i} (${i % 2 === 0 ? 'cached' : 'fresh'} client): ${r.stderr.trim()}`);
      return;
    }
    const got = (await ostree(['rev-parse', `cairn:${REF}`], { repo: dir })).trim();
    if (!acked.includes(got)) failures.push(`pull ${i} got ${got}, which was never pushed`);
    pullResults.push(got);
    if (i % 10 === 1) {
      const f = await ostreeResult(['fsck'], { repo: dir });
      if (f.code !== 0) failures.push(`pull ${i}: fsck: ${f.stderr}`);
    }
  });
  await Promise.all(pulls);
  const pullSeconds = (Date.now() - started) / 1000;
  while (Date.now() - started < MIN_SECONDS * 1000) await new Promise((r) => setTimeout(r, 500));
  stop = true;
  generator.send('stop');
  const g = await generated;
  await publishing;
  await collecting;
  failures.push(...g.failures);

  const figures = `${g.requests} GETs in ${g.seconds.toFixed(1)} s (${(g.requests / g.seconds).toFixed(0)}/s) at concurrency ${GENERATOR_CONCURRENCY}: p50 ${g.p50.toFixed(1)} ms, p95 ${g.p95.toFixed(1)} ms, p99 ${g.p99.toFixed(1)} ms, max ${g.max.toFixed(0)} ms (${g.idleRaces} sent again after an idle kept-alive connection closed); ${PULLS} verifying pulls at once in ${pullSeconds.toFixed(1)} s; ${acked.length - 1} pushes, ${gcRounds.length} gc rounds`;
  t.diagnostic(figures);
  process.stderr.write(`load-gc: ${figures}\n`);

  const serverLog = () =>
    cairn
      .output()
      .split('\n')
      .filter((l) => !l.includes('"status":200') && !l.includes('"status":304') && l.trim())
      .slice(-40)
      .join('\n');
  assert.deepEqual(failures, [], `${failures.length} failures:\n${failures.slice(0, 50).join('\n')}\nserver:\n${serverLog()}`);
  assert.equal(pullResults.length, PULLS);
  assert.ok(acked.length >= 3, `only ${acked.length - 1} pushes during the load`);
  assert.ok(gcRounds.length >= 2, `gc ran ${gcRounds.length} times`);
  for (const g of gcRounds) assert.equal(g.left, 0, `each gc deleted the old garbage put there for it: ${JSON.stringify(gcRounds)}`);
  // Nothing lost: both refs where the last acknowledged pushes put them, the repository whole. The
  // delta jobs of the last pushes first (each ends by publishing its delta into the summary: its
  // journal would be caught mid-switch by checks of a repository at rest).
  await jobsSettled(cairn.url, 120_000);
  const refs = await assertPublishedConsistent(data, 'after the load');
  assert.deepEqual(Object.fromEntries(await diskRefs(repoDir)), { [PINNED]: pinned, [REF]: acked[acked.length - 1]! });
  for (const [ref, commit] of refs) assert.deepEqual((await walkCommitTree(new Repo('main', new FsBackend(repoDir)), commit)).missing, [], `${ref}'s closure`);
});
