// End to end: `cairn push` (a child process, as publishers run it) against a listening `cairn serve`,
// with commits made by the real `ostree commit` and checked by the stock client: pull with GPG
// verification of commits and summary (key imported from the served gpg.asc), fsck, checkout
// compared with the source tree. Counts come from push's --json output; no timings are asserted.
//
// Run: npx tsc -p . && node --test dist/test/e2e/push.test.js

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { FsBackend } from '../../storage/backends/fs';
import { objectName, walkCommitTree } from '../../storage/repo/closure';
import { Repo } from '../../storage/repo/repo';
import { projectRoot, startCairn, type CairnProcess } from '../helpers/cairn-process';
import {
  addRemote,
  assertCheckoutEquals,
  commitTree,
  initRepo,
  makeSourceTree,
  makeTempDir,
  ostree,
  pseudoRandomBytes,
  removeTempDirs,
} from '../helpers/ostree';
import type { PushResult } from '../../cli/push/push';

const STABLE = 'os/x86_64/stable';
const BETA = 'os/x86_64/beta';
/** The `cairn` script pushing: bin/cairn.js, or CAIRN_E2E_CLI (another build's, as CAIRN_E2E_SERVER names the server's). */
const CLI = process.env.CAIRN_E2E_CLI ? path.resolve(process.env.CAIRN_E2E_CLI) : path.join(projectRoot(), 'bin', 'cairn.js');

let work: string;
let data: string;
/** The publisher's local archive repository. */
let local: string;
let cairn: CairnProcess;
let token: string;
let gpgAsc: string | undefined;
let clients = 0;

/** What `cairn push --json` prints. */
type PushJson = PushResult;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts `node bin/cairn.js ARGS`; `done` resolves when it exits. */
function startCli(args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, CAIRN_TOKEN: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const done = new Promise<Run>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return startCli(args, env).done;
}

function repoUrl(): string {
  return `${cairn.url}/repo/main`;
}

function pushArgs(extra: string[]): string[] {
  return ['push', '--url', repoUrl(), '--token', token, ...extra];
}

/** Runs a push that must succeed and returns its --json result. */
async function pushOk(extra: string[]): Promise<PushJson> {
  const r = await cli([...pushArgs(extra), '--json']);
  assert.equal(r.code, 0, `cairn push ${extra.join(' ')} failed:\n${r.stderr}\n--- server tail ---\n${cairn.output().split('\n').slice(-20).join('\n')}`);
  return JSON.parse(r.stdout) as PushJson;
}

/** A push that must fail: exit 1 and a single line on stderr. */
async function pushFails(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await cli(args, env);
  assert.equal(r.code, 1, `expected exit 1, got ${r.code}; stdout: ${r.stdout}; stderr: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line of error expected:\n${r.stderr}`);
  assert.match(lines[0]!, /^cairn push: /);
  return lines[0]!;
}

async function serverRefs(): Promise<Record<string, string>> {
  const res = await fetch(`${cairn.url}/api/repos/main/refs`);
  assert.equal(res.status, 200);
  return ((await res.json()) as { refs: Record<string, string> }).refs;
}

/** Names of every object of `commit`'s tree in the local repo (what a push must make present). */
async function treeObjects(repoDir: string, commit: string): Promise<string[]> {
  const walk = await walkCommitTree(new Repo('local', new FsBackend(repoDir)), commit);
  assert.equal(walk.missing.length, 0);
  return walk.objects.map(objectName);
}

/** Asks the server directly which of `names` it lacks. */
async function serverMissing(names: string[]): Promise<string[]> {
  const res = await fetch(`${cairn.url}/api/repos/main/objects/missing`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ objects: names }),
  });
  assert.equal(res.status, 200);
  return ((await res.json()) as { missing: string[] }).missing;
}

/** What the server lacks of `objects`, once three reads 200 ms apart agree. */
async function settledMissing(objects: string[]): Promise<string[]> {
  let lacking = await serverMissing(objects);
  for (let stable = 0; stable < 3; ) {
    await new Promise((r) => setTimeout(r, 200));
    const now = await serverMissing(objects);
    stable = now.length === lacking.length ? stable + 1 : 0;
    lacking = now;
  }
  return lacking;
}

/**
 * The stock client pulls `ref` into a fresh archive repo, checking GPG signatures of the commit and
 * of the summary with the key the server publishes, runs fsck, and checks out the tree.
 */
async function pullAndCompare(ref: string, source: string): Promise<void> {
  if (gpgAsc === undefined) {
    const res = await fetch(`${repoUrl()}/keys/gpg.asc`);
    assert.equal(res.status, 200, 'the repository publishes its GPG key once something was published');
    gpgAsc = path.join(work, 'gpg.asc');
    await fsp.writeFile(gpgAsc, Buffer.from(await res.arrayBuffer()));
  }
  const client = path.join(work, 'clients', String(++clients));
  await initRepo(client, 'archive');
  await addRemote(client, 'cairn', repoUrl(), { gpgImport: gpgAsc, set: { 'gpg-verify': 'true', 'gpg-verify-summary': 'true' } });
  await ostree(['pull', 'cairn', ref], { repo: client });
  await ostree(['fsck'], { repo: client });
  await assertCheckoutEquals(client, `cairn:${ref}`, source, work);
}

/** A tree of many small files, for pushes that take many requests (resume, races). */
async function manySmallFiles(dir: string, seed: number, n: number): Promise<string> {
  await fsp.mkdir(path.join(dir, 'objs'), { recursive: true });
  for (let i = 0; i < n; i++) {
    await fsp.writeFile(path.join(dir, 'objs', `f${String(i).padStart(4, '0')}`), pseudoRandomBytes(seed * 100_000 + i, 2000 + (i % 7) * 300));
  }
  await fsp.writeFile(path.join(dir, 'README'), `seed ${seed}\n`);
  return dir;
}

/** Waits until the server has answered `n` multipart uploads since `from` requests. */
async function uploadsSeen(n: number, from: number): Promise<void> {
  const isUpload = (r: { method: string; path: string }) => r.method === 'POST' && r.path === '/api/repos/main/objects';
  for (let i = 0; i < 600; i++) {
    if (cairn.requests().slice(from).filter(isUpload).length >= n) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`the server did not see ${n} uploads`);
}

before(async () => {
  work = await makeTempDir('cairn-push-e2e-');
  data = path.join(work, 'data');
  local = path.join(work, 'local');
  const init = await cli(['init-repo', 'main', '--data', data]);
  assert.equal(init.code, 0, init.stderr);
  const t = await cli(['token', '--data', data, '--scope', 'push', '--repo', 'main', '--prefix', 'os/', '--ttl', '1h', '--sub', 'e2e']);
  assert.equal(t.code, 0, t.stderr);
  token = t.stdout.trim();
  await initRepo(local, 'archive');
  cairn = await startCairn({ dataDir: data });
});

after(async () => {
  await cairn?.stop();
  await removeTempDirs();
});

let v1Commit = '';

test('round trip: ostree commit → cairn push → stock client pulls with GPG verification → fsck → same tree', async () => {
  const src = await makeSourceTree(path.join(work, 'src-v1'), { seed: 1 });
  v1Commit = await commitTree(local, { branch: STABLE, tree: src, subject: 'v1' });
  const r = await pushOk(['--repo', local, STABLE]);
  const all = await treeObjects(local, v1Commit);
  assert.equal(r.commit, v1Commit);
  assert.equal(r.ref, STABLE);
  assert.equal(r.old, null);
  assert.equal(r.refMoved, true);
  assert.equal(r.objects, all.length);
  assert.equal(r.missing, all.length, 'a fresh server lacks everything');
  assert.equal(r.uploaded, all.length);
  assert.equal(r.stored, all.length);
  assert.ok(r.bytes > 3 * 1024 * 1024, 'the 3 MiB file went up');
  assert.deepEqual(await serverMissing(all), []);
  assert.equal((await serverRefs())[STABLE], v1Commit);
  await pullAndCompare(STABLE, src);

  // Pushing again changes nothing and sends nothing.
  const again = await pushOk(['--repo', local, STABLE]);
  assert.deepEqual([again.missing, again.uploaded, again.bytes, again.refMoved], [0, 0, 0, false]);
});

test('a slightly changed tree uploads only the changed objects', async () => {
  const src = await makeSourceTree(path.join(work, 'src-v2'), { seed: 1, extra: { 'added.txt': 'new in v2\n' } });
  await fsp.writeFile(path.join(src, 'etc/os-release'), 'ID=cairntest\nVERSION=2\n');
  const v2 = await commitTree(local, { branch: STABLE, tree: src, subject: 'v2' });
  const before = new Set(await treeObjects(local, v1Commit));
  const changed = (await treeObjects(local, v2)).filter((n) => !before.has(n));
  // The commit, the root, /etc and the new /extra dirtrees, and two files (the dirmeta of /extra equals others').
  assert.ok(changed.length >= 5 && changed.length <= 8, `changed: ${changed.join(' ')}`);
  const r = await pushOk(['--repo', local, STABLE]);
  assert.equal(r.old, v1Commit);
  assert.equal(r.commit, v2);
  assert.equal(r.missing, changed.length);
  assert.equal(r.uploaded, changed.length);
  assert.equal(r.stored, changed.length);
  assert.ok(r.bytes < 64 * 1024, `only small objects were sent (${r.bytes} bytes)`);
  await pullAndCompare(STABLE, src);
});

test('--to promotes a commit: from the local repo, or server-side only; bindings and prefixes are enforced', async () => {
  const src = await makeSourceTree(path.join(work, 'src-beta'), { seed: 3, bigFileBytes: 100_000 });
  // Bound to both refs, as a build that is meant to be promoted from beta to stable would be.
  const out = await ostree(['commit', `--branch=${BETA}`, `--bind-ref=${STABLE}`, `--tree=dir=${src}`, '--subject=beta'], { repo: local });
  const beta = out.trim();
  const r = await pushOk(['--repo', local, BETA]);
  assert.equal(r.commit, beta);
  assert.equal((await serverRefs())[BETA], beta);

  // Server-side promotion: no local repository, nothing to upload.
  const stableBefore = (await serverRefs())[STABLE];
  const p = await pushOk(['--to', STABLE, BETA]);
  assert.deepEqual([p.commit, p.old, p.objects, p.uploaded, p.refMoved], [beta, stableBefore, 0, 0, true]);
  assert.equal((await serverRefs())[STABLE], beta);
  await pullAndCompare(STABLE, src);

  // From the local repository by checksum: everything is there already.
  await pushOk(['--force', '--to', STABLE, v1Commit]);
  const l = await pushOk(['--repo', local, '--to', STABLE, beta]);
  assert.deepEqual([l.missing, l.uploaded, l.old, l.new], [0, 0, v1Commit, beta]);

  // A commit bound to stable only cannot be published as beta; a ref outside the token's prefixes is refused.
  const refs = await serverRefs();
  const bound = await pushFails(pushArgs(['--to', BETA, v1Commit]));
  assert.match(bound, /bound to os\/x86_64\/stable/);
  const outside = await pushFails(pushArgs(['--to', 'apps/tool', BETA]));
  assert.match(outside, /403/);
  assert.deepEqual(await serverRefs(), refs, 'no ref moved');
});

test('--tree publishes a plain folder (parent: the server commit of the ref)', async () => {
  const src = await makeSourceTree(path.join(work, 'src-tree'), { seed: 4, bigFileBytes: 50_000 });
  const before = (await serverRefs())['os/tree'];
  assert.equal(before, undefined);
  const r = await pushOk(['--tree', src, '--subject', 'from a folder', 'os/tree']);
  assert.equal(r.old, null);
  assert.ok(r.uploaded > 0);
  await pullAndCompare('os/tree', src);
  await fsp.writeFile(path.join(src, 'README.txt'), 'changed\n');
  const r2 = await pushOk(['--tree', src, 'os/tree']);
  assert.equal(r2.old, r.commit);
  assert.ok(r2.uploaded <= 4, `a one-file change sends a handful of objects, not ${r2.uploaded}`);
  const client = path.join(work, 'clients', String(++clients));
  await initRepo(client, 'archive');
  await addRemote(client, 'cairn', repoUrl(), { gpgImport: gpgAsc!, set: { 'gpg-verify-summary': 'true' } });
  await ostree(['pull', '--depth=1', 'cairn', 'os/tree'], { repo: client });
  const log = await ostree(['log', 'cairn:os/tree'], { repo: client });
  assert.match(log, new RegExp(`commit ${r.commit}`), 'the previous server commit is the parent');
});

test('resume: a push killed mid-upload is completed by the next one, which sends only what was missing', async () => {
  const src = await manySmallFiles(path.join(work, 'src-many'), 5, 600);
  const c = await commitTree(local, { branch: 'os/many', tree: src, subject: 'many' });
  const all = await treeObjects(local, c);
  const from = cairn.requests().length;
  const p = startCli([...pushArgs(['--repo', local, '--jobs', '1', '--batch-size', '10', '--json', 'os/many'])]);
  await uploadsSeen(5, from);
  p.child.kill('SIGKILL');
  const killed = await p.done;
  assert.equal(killed.signal, 'SIGKILL', `the push finished before it could be killed: ${killed.stdout}`);
  assert.equal((await serverRefs())['os/many'], undefined, 'an interrupted push moves no ref');
  // Objects the server had fully received when the client died are still being verified and
  // stored (verification threads): what it lacks is read once that stops changing.
  const lacking = await settledMissing(all);
  assert.ok(lacking.length > 0 && lacking.length < all.length - 40, `the first push stored some objects (${all.length - lacking.length} of ${all.length})`);

  const r = await pushOk(['--repo', local, 'os/many']);
  assert.equal(r.objects, all.length);
  assert.equal(r.missing, lacking.length);
  assert.equal(r.uploaded, lacking.length);
  assert.equal((await serverRefs())['os/many'], c);
  await pullAndCompare('os/many', src);
});

test('a conflict: a push whose expectation went stale meanwhile fails with 409 naming both values; pushing again builds on the new one', async () => {
  // Two builds for the same ref (both bound to os/race, as `ostree commit -b os/race` makes them).
  const a = await commitTree(local, { branch: 'os/race', tree: await manySmallFiles(path.join(work, 'src-race-a'), 6, 300), subject: 'a' });
  const b = await commitTree(local, { branch: 'os/race', tree: await makeSourceTree(path.join(work, 'src-race-b'), { seed: 7, bigFileBytes: 1000 }), subject: 'b' });
  const start = cairn.requests().length;
  // Publisher A reads the ref (absent) and starts uploading; it is frozen while B publishes.
  const pa = startCli(pushArgs(['--repo', local, '--jobs', '1', '--batch-size', '10', '--to', 'os/race', a]));
  await uploadsSeen(1, start);
  pa.child.kill('SIGSTOP');
  let rb: PushJson;
  try {
    rb = await pushOk(['--repo', local, '--to', 'os/race', b]);
  } finally {
    pa.child.kill('SIGCONT');
  }
  assert.deepEqual([rb.old, rb.new], [null, b]);
  const ra = await pa.done;
  assert.equal(ra.code, 1, `A should have lost: ${ra.stdout} ${ra.stderr}`);
  assert.match(ra.stderr.trim(), new RegExp(`^cairn push: updating ref os/race: conflict: ref os/race was expected at \\(absent\\) but the server has ${b} \\(`));
  assert.equal(ra.stderr.trim().split('\n').length, 1);
  assert.equal((await serverRefs())['os/race'], b, 'the loser moved nothing');

  // A again: everything is uploaded, the expectation is now B.
  const again = await pushOk(['--repo', local, '--to', 'os/race', a]);
  assert.deepEqual([again.old, again.new, again.missing], [b, a, 0]);
});

test('server killed mid-upload: the push fails clearly; after a restart on the same data it completes', async () => {
  const src = await manySmallFiles(path.join(work, 'src-srvkill'), 8, 600);
  const c = await commitTree(local, { branch: 'os/srvkill', tree: src, subject: 'srvkill' });
  const all = await treeObjects(local, c);
  const from = cairn.requests().length;
  const p = startCli(pushArgs(['--repo', local, '--jobs', '1', '--batch-size', '10', '--retries', '2', 'os/srvkill']));
  await uploadsSeen(5, from);
  process.kill(cairn.pid, 'SIGKILL');
  const failed = await p.done;
  assert.equal(failed.code, 1, failed.stderr);
  // Each retry is announced on a line of its own; the last line says why the push gave up.
  const lines = failed.stderr.trim().split('\n');
  assert.match(lines.at(-1)!, /^cairn push: uploading objects: cannot reach the server \(.*\), gave up after retrying$/);
  assert.ok(lines.slice(0, -1).every((l) => l.startsWith('retrying POST /objects in ')), failed.stderr);

  cairn = await startCairn({ dataDir: data });
  assert.equal((await serverRefs())['os/srvkill'], undefined);
  const lacking = await serverMissing(all);
  assert.ok(lacking.length > 0 && lacking.length < all.length - 40, `objects stored before the kill survive (${all.length - lacking.length} of ${all.length})`);
  const r = await pushOk(['--repo', local, 'os/srvkill']);
  assert.deepEqual([r.missing, r.uploaded], [lacking.length, lacking.length]);
  await pullAndCompare('os/srvkill', src);
});

test('failures are one clear line and exit 1: no token, wrong ref, bare-user repo, unreachable server', async () => {
  const before = await serverRefs();
  assert.match(await pushFails(['push', '--url', repoUrl(), '--repo', local, STABLE]), /401 .*pass --token or set CAIRN_TOKEN/);
  assert.match(await pushFails(['push', '--url', repoUrl(), '--repo', local, STABLE], { CAIRN_TOKEN: 'not-a-token' }), /refused the token \(401/);
  assert.match(await pushFails(pushArgs(['--repo', local, 'os/no-such-ref'])), /no ref os\/no-such-ref in /);
  const bare = await initRepo(path.join(work, 'bare-user'), 'bare-user');
  assert.match(await pushFails(pushArgs(['--repo', bare, STABLE])), /is a bare-user repository; cairn push needs an archive one/);
  const r = await cli(['push', '--url', 'http://127.0.0.1:9/repo/main', '--token', token, '--retries', '0', '--repo', local, STABLE]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot reach the server/);
  const usage = await cli(['push', '--url', repoUrl(), STABLE]);
  assert.equal(usage.code, 2, 'no --repo, --tree or --to is a usage error');
  assert.deepEqual(await serverRefs(), before);
});
