// Crash consistency at random moments (issue #11, "Harnesses that must exist"): `cairn serve` is
// SIGKILLed (with its workers) at a random moment of a random operation — a `cairn push` of a new
// commit, a ref update through the API, a delta job, a prune or a gc through the admin API — then
// started again on the same data folder, and each time:
//   - the stock `ostree fsck` passes on the repository;
//   - every ref's closure is complete (Cairn's closure walk finds nothing missing);
//   - the summary lists exactly the refs on disk, summary.sig signs it (ed25519 and GPG, with the
//     repository's keys), the ref log's newest entry of each ref names its commit, no journal is left
//     (test/e2e/publish-helpers assertPublishedConsistent);
//   - every acknowledged push and ref update is there (a log of acknowledged ref → commit; a ref may
//     also be at a commit whose operation was interrupted, which then counts as acknowledged);
//   - an interrupted push resumes: the next `cairn push` of the same commit succeeds;
//   - the `cairn push` that lost its server exits within 30 s (never waits on a dead connection).
// At the end, temporary files of the dead processes are swept at the next start once old enough, and a
// verifying pull by the stock client (gpg-verify, gpg-verify-summary) gets every ref.
//
// CAIRN_CRASH_KILLS=N (default 50) kills; CAIRN_CRASH_SEED=S replays a run (the seed is printed).
// Run: npx tsc -p . && node --test dist/test/harness/crash-random.test.js

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { parse, type VarDict, type Variant } from '../../storage/gvariant';
import { FsBackend } from '../../storage/backends/fs';
import { objectName, walkCommitTree } from '../../storage/repo/closure';
import { Repo } from '../../storage/repo/repo';
import { gpgVerifyDetached, readGpgPublicKeys } from '../../storage/signing/gpg';
import { jobsSettled, startCairn, type CairnProcess } from '../helpers/cairn-process';
import { addRemote, commitTree, initRepo, makeTempDir, ostree, pseudoRandomBytes, removeTempDirs } from '../helpers/ostree';
import { mulberry32 } from '../helpers/prng';
import { assertPublishedConsistent, diskRefs } from '../e2e/publish-helpers';
import { cli, cliOk, SERVER_ENV, startCli, token } from './helpers';

const KILLS = Math.max(1, Number(process.env.CAIRN_CRASH_KILLS ?? '50') || 50);
const SEED = process.env.CAIRN_CRASH_SEED !== undefined ? Number(process.env.CAIRN_CRASH_SEED) : Math.floor(Math.random() * 2 ** 31);
const PUSH_REFS = ['os/a', 'os/b', 'os/c'];

let work: string;
let data: string;
let repoDir: string;
let local: string;
let pushToken: string;
let adminToken: string;
const running = new Set<CairnProcess>();

before(async () => {
  work = await makeTempDir('cairn-crash-random-');
  data = path.join(work, 'data');
  repoDir = path.join(data, 'repos', 'main');
  await cliOk(['init-repo', 'main', '--data', data]);
  pushToken = await token(['push'], { prefixes: ['os/'] });
  adminToken = await token(['read', 'push', 'admin']);
  local = await initRepo(path.join(work, 'local'), 'archive');
});

after(async () => {
  for (const c of running) await c.stop();
  await removeTempDirs();
});

/**
 * A killed server's running delta job is taken over once its lease runs out (server/jobs/durable.ts);
 * a short lease here makes that seconds, so that the checks can wait for it (`settled`).
 */
const LEASE_MS = 2000;

async function start(): Promise<CairnProcess> {
  const c = await startCairn({ dataDir: data, env: { ...SERVER_ENV, CAIRN_JOBS_LEASE_MS: String(LEASE_MS) }, timeoutMs: 60_000 });
  running.add(c);
  return c;
}

/**
 * Waits until the restarted server has finished what the dead one left: no delta record of the
 * repository queued or running (a running one of the dead server is taken over after the lease and
 * its delta then published into the summary), nothing in the local queue. The checks then see the
 * repository at rest, not in the middle of that publish.
 */
async function settled(c: CairnProcess): Promise<void> {
  const dir = path.join(data, 'jobs', 'delta', 'main');
  const deadline = Date.now() + 120_000;
  for (;;) {
    const busy: string[] = [];
    for (const f of await fsp.readdir(dir).catch(() => [] as string[])) {
      if (!f.endsWith('.json')) continue;
      const rec = JSON.parse(await fsp.readFile(path.join(dir, f), 'utf8').catch(() => '{}')) as { state?: string };
      if (rec.state === 'queued' || rec.state === 'running') busy.push(`${f}: ${rec.state}`);
    }
    if (busy.length === 0) break;
    if (Date.now() > deadline) throw new Error(`delta jobs left by the killed server not finished after 120 s: ${busy.join(', ')}\n${c.output().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await jobsSettled(c.url, 120_000);
}

/** Pids of every process below `pid` (the workers of `cairn serve --workers N`). */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch {
      /* gone meanwhile */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

/** SIGKILL to the server and its workers at once, then waits until it is gone. */
async function kill(c: CairnProcess): Promise<void> {
  for (const p of [c.pid, ...descendants(c.pid)]) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  await c.stop();
  running.delete(c);
}

/** A new commit of `ref` in the local repository: a changed file of its own, a new one, and a shared one. */
let commitNo = 0;
async function newCommit(ref: string, rnd: () => number): Promise<string> {
  const n = ++commitNo;
  const tree = path.join(work, `tree-${ref.replace(/\//g, '_')}`);
  await fsp.mkdir(path.join(tree, 'usr', 'lib'), { recursive: true });
  await fsp.writeFile(path.join(tree, 'usr', 'shared.txt'), 'in every commit\n');
  await fsp.writeFile(path.join(tree, 'usr', 'lib', 'big.bin'), pseudoRandomBytes(n, 50_000 + Math.floor(rnd() * 400_000)));
  await fsp.writeFile(path.join(tree, 'usr', 'lib', `step-${n}.txt`), `commit ${n} of ${ref}\n`.repeat(1 + Math.floor(rnd() * 50)));
  for (let i = 0; i < 8; i++) await fsp.writeFile(path.join(tree, 'usr', `f${i}.txt`), `file ${i} at ${n}\n`.repeat(i + 1));
  return commitTree(local, { branch: ref, tree, subject: `commit ${n}`, timestamp: 1_709_251_200 + n });
}

interface Push {
  done: Promise<{ ok: boolean; stderr: string; code: number | null; signal: string | null; endedAt: number }>;
}

function push(url: string, ref: string): Push {
  const { child, done } = startCli(['push', '--url', `${url}/repo/main`, '--token', pushToken, '--repo', local, '--retries', '0', ref]);
  const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
  return {
    done: done.then((r) => {
      clearTimeout(timer);
      return { ok: r.code === 0, stderr: r.stderr, code: r.code, signal: r.signal, endedAt: Date.now() };
    }),
  };
}

/** An API call; resolves with its status, or 0 when the connection failed. */
async function api(url: string, method: string, p: string, body: unknown): Promise<number> {
  try {
    const r = await fetch(`${url}${p}`, { method, headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` }, body: JSON.stringify(body), signal: AbortSignal.timeout(120_000) });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return 0;
  }
}

/** The GPG signature in summary.sig verifies over the summary with the repository's key. */
async function assertGpgSigned(what: string): Promise<void> {
  const summary = await fsp.readFile(path.join(repoDir, 'summary'));
  const sig = parse('a{sv}', await fsp.readFile(path.join(repoDir, 'summary.sig'))) as VarDict;
  const gpg = sig.find(([k]) => k === 'ostree.gpgsigs')?.[1] as Variant | undefined;
  assert.ok(gpg, `${what}: summary.sig has GPG signatures`);
  const keys = await readGpgPublicKeys(await fsp.readFile(path.join(data, 'keys', 'main', 'gpg.asc')));
  const v = await gpgVerifyDetached(summary, gpg.value as Buffer[], keys);
  assert.ok(v.validKeyIds.length > 0, `${what}: summary.sig's GPG signature verifies`);
}

/** Every ref's closure is complete. */
async function assertClosures(refs: Map<string, string>, what: string): Promise<void> {
  const repo = new Repo('main', new FsBackend(repoDir));
  for (const [ref, commit] of refs) {
    const walk = await walkCommitTree(repo, commit);
    assert.deepEqual(walk.missing.map(objectName), [], `${what}: the closure of ${ref} (${commit}) is complete`);
  }
}

/** An orphan commit of 150 small files written into the repository by `ostree commit`, its objects aged 2 h. */
async function garbage(seed: number): Promise<void> {
  const dir = path.join(work, `garbage-${seed}`);
  await fsp.mkdir(dir, { recursive: true });
  for (let i = 0; i < 150; i++) await fsp.writeFile(path.join(dir, `junk-${i}.txt`), `garbage ${seed} ${i}\n`);
  const commit = (await ostree(['commit', '--orphan', '--no-bindings', `--tree=dir=${dir}`, `--subject=garbage ${seed}`], { repo: repoDir })).trim();
  const walk = await walkCommitTree(new Repo('main', new FsBackend(repoDir)), commit);
  const old = new Date(Date.now() - 2 * 3600_000);
  for (const o of walk.objects) {
    const n = objectName(o);
    await fsp.utimes(path.join(repoDir, 'objects', n.slice(0, 2), n.slice(2)), old, old);
  }
  await fsp.rm(dir, { recursive: true });
}

type Op = 'push' | 'ref' | 'delta' | 'prune' | 'gc';
/**
 * How long after its start each kind of operation is killed, at most (ms): at first a guess, then
 * 1.2 × the longest answer seen for it, so that kills fall inside the operation and not after it.
 */
const WINDOW: Record<Op, number> = { push: 2500, ref: 250, delta: 2000, prune: 400, gc: 600 };

test(`SIGKILL at random moments of pushes, ref updates, delta jobs, prune and gc (${KILLS} kills): the repository recovers each time`, { timeout: 3_600_000 }, async (t) => {
  t.diagnostic(`seed ${SEED} (CAIRN_CRASH_SEED=${SEED} replays it), ${KILLS} kills, --workers ${process.env.CAIRN_E2E_WORKERS ?? '1'}`);
  process.stderr.write(`crash-random: seed ${SEED}\n`);
  const rnd = mulberry32(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

  /** What the server acknowledged: ref → commit. */
  const acked = new Map<string, string>();
  /** Operations interrupted before their answer: ref → commits it may now be at. */
  const pending = new Map<string, Set<string>>();
  const counts: Record<string, number> = {};

  let c = await start();
  // A first push of every ref, so that there is a summary, signatures and history.
  for (const ref of PUSH_REFS) {
    const commit = await newCommit(ref, rnd);
    const r = await push(c.url, ref).done;
    assert.ok(r.ok, r.stderr);
    acked.set(ref, commit);
  }
  /** Commits each ref was acknowledged at (the targets of rollbacks; ostree binds a commit to its ref). */
  const history = new Map<string, string[]>(PUSH_REFS.map((r) => [r, [acked.get(r)!]]));
  const remember = (ref: string, commit: string) => {
    const h = history.get(ref)!;
    if (!h.includes(commit)) h.push(commit);
  };

  for (let k = 1; k <= KILLS; k++) {
    const op = pick<Op>(['push', 'push', 'push', 'ref', 'delta', 'prune', 'gc']);
    const delay = Math.floor(rnd() * WINDOW[op]);
    let label = `kill ${k}: ${op}`;
    let interruptedPush: { ref: string; commit: string } | undefined;
    let pushRun: Push | undefined;
    let call: Promise<number> | undefined;
    let onAck: (() => void) | undefined;
    let killedAt = 0;

    if (op === 'push') {
      const ref = pick(PUSH_REFS);
      const commit = await newCommit(ref, rnd);
      label += ` of ${ref} → ${commit.slice(0, 8)}`;
      pending.set(ref, new Set([...(pending.get(ref) ?? []), commit]));
      pushRun = push(c.url, ref);
      interruptedPush = { ref, commit };
    } else if (op === 'ref') {
      // A rollback or roll-forward of a ref to another commit it was at (pruned ones answer 422).
      const ref = pick(PUSH_REFS);
      const others = history.get(ref)!.filter((x) => x !== acked.get(ref));
      const target = others.length ? pick(others) : acked.get(ref)!;
      label += ` ${ref} → ${target.slice(0, 8)}`;
      pending.set(ref, new Set([...(pending.get(ref) ?? []), target]));
      call = api(c.url, 'POST', '/api/repos/main/refs', { updates: [{ ref, commit: target, expected: acked.get(ref) }] });
      onAck = () => acked.set(ref, target);
    } else if (op === 'delta') {
      const ref = pick(PUSH_REFS);
      call = api(c.url, 'POST', '/api/repos/main/deltas', { from: null, to: acked.get(ref) });
    } else if (op === 'prune') {
      call = api(c.url, 'POST', '/api/repos/main/prune', { keep: 1 + Math.floor(rnd() * 3) });
    } else {
      // Old garbage for it to delete (an orphan commit of 150 files written by `ostree commit`,
      // aged 2 h), so that the kill can fall among its deletions; grace 0 half the time (then the
      // objects of interrupted pushes go too, and their resumed push uploads them again).
      await garbage(k);
      const grace = rnd() < 0.5 ? 0 : 3600;
      label += ` (grace ${grace} s)`;
      call = api(c.url, 'POST', '/api/repos/main/gc', { graceSeconds: grace });
    }

    // The kill, at a random moment of the operation (or just after it, if it was quicker).
    const answered = call?.then((s) => s) ?? pushRun!.done.then((r) => (r.ok ? 200 : 0));
    const started = Date.now();
    const early = await Promise.race([answered.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), delay))]);
    if (early) WINDOW[op] = Math.max(WINDOW[op] * 0.9, 1.2 * (Date.now() - started), 20);
    if (early && rnd() < 0.5) await new Promise((r) => setTimeout(r, Math.floor(rnd() * 300))); // a delta job or summary write after the answer
    killedAt = Date.now();
    await kill(c);
    counts[op] = (counts[op] ?? 0) + 1;

    // What the client learned: an answer before the kill is an acknowledgement.
    if (pushRun) {
      const r = await pushRun.done;
      assert.ok(r.endedAt - killedAt < 30_000, `${label}: cairn push waited ${r.endedAt - killedAt} ms on a dead server`);
      if (r.ok) {
        acked.set(interruptedPush!.ref, interruptedPush!.commit);
        remember(interruptedPush!.ref, interruptedPush!.commit);
        interruptedPush = undefined;
      }
      label += r.ok ? ' (acknowledged)' : ' (interrupted)';
    } else {
      const s = await call!;
      if (s >= 200 && s < 300) onAck?.();
      label += s ? ` (answered ${s})` : ' (interrupted)';
    }
    label += ` after ${delay} ms`;

    // Restart on the same data and check everything.
    c = await start();
    await settled(c);
    const refs = await assertPublishedConsistent(data, label);
    await assertGpgSigned(label);
    await assertClosures(refs, label);
    for (const [ref, commit] of acked) {
      const now = refs.get(ref);
      const maybe = pending.get(ref) ?? new Set<string>();
      assert.ok(now === commit || (now !== undefined && maybe.has(now)), `${label}: ${ref} is at ${now}, not the acknowledged ${commit} (or one interrupted since: ${[...maybe].join(', ')})`);
      if (now !== commit) acked.set(ref, now!); // an interrupted operation that landed
      remember(ref, now!);
      pending.delete(ref);
    }
    assert.deepEqual([...refs.keys()].sort(), [...acked.keys()].sort(), `${label}: exactly the refs that were made`);

    // An interrupted push resumes: the same push again goes through.
    if (interruptedPush) {
      const again = await push(c.url, interruptedPush.ref).done;
      assert.ok(again.ok, `${label}: pushing ${interruptedPush.commit} again failed:\n${again.stderr}\n${c.output().slice(-2000)}`);
      acked.set(interruptedPush.ref, interruptedPush.commit);
      remember(interruptedPush.ref, interruptedPush.commit);
    }
    t.diagnostic(label);
  }

  // The end: temporary files of the killed processes are swept at a start once old enough
  // (docs/publishing.md: a dead process's, after a minute); every ref pulls, verified, with the stock client.
  await kill(c);
  const tmp = path.join(repoDir, 'tmp');
  const old = new Date(Date.now() - 2 * 3600_000);
  for (const f of await fsp.readdir(tmp)) if (f.startsWith('cairn-')) await fsp.utimes(path.join(tmp, f), old, old);
  c = await start();
  await settled(c);
  const left = (await fsp.readdir(tmp, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  assert.deepEqual(left, [], 'no temporary file or lock of a dead process left after a start');
  const refs = await assertPublishedConsistent(data, 'at the end');
  assert.deepEqual(Object.fromEntries(await diskRefs(repoDir)), Object.fromEntries(acked), 'every acknowledged ref at its commit');
  const gpgAsc = path.join(work, 'gpg.asc');
  await fsp.writeFile(gpgAsc, Buffer.from(await (await fetch(`${c.url}/repo/main/keys/gpg.asc`)).arrayBuffer()));
  const client = await initRepo(path.join(work, 'client'), 'archive');
  await addRemote(client, 'cairn', `${c.url}/repo/main`, { gpgImport: gpgAsc, set: { 'gpg-verify': 'true', 'gpg-verify-summary': 'true' } });
  await ostree(['pull', 'cairn', ...refs.keys()], { repo: client });
  await ostree(['fsck'], { repo: client });
  for (const [ref, commit] of refs) assert.equal((await ostree(['rev-parse', `cairn:${ref}`], { repo: client })).trim(), commit);
  const r = await cli(['fsck', '--data', data, '--repo', 'main']);
  assert.equal(r.code, 0, `cairn fsck:\n${r.stderr}\n${r.stdout}`);
  await kill(c);
  t.diagnostic(`kills by operation: ${JSON.stringify(counts)}`);
  assert.ok(Object.keys(counts).length >= (KILLS >= 20 ? 5 : 1), `every kind of operation was killed: ${JSON.stringify(counts)}`);
});
