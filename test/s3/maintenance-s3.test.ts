// prune, gc and fsck of a repository on S3 (a real Ceph RADOS Gateway: scripts/with-ceph.sh, or
// test/s3/ceph.ts starts one), as issue #11 defines them, through `cairn serve --storage s3://…` (the
// maintenance API) and through the CLI (`cairn init-repo|prune|gc|fsck --storage s3://…`). Commits are
// published with `cairn push`; the stock `ostree` client pulls and verifies the head after prune + gc.

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { S3Backend } from '../../storage/backends/s3';
import { fsck } from '../../storage/maintenance/fsck';
import { gc } from '../../storage/maintenance/gc';
import { RepoRegistry } from '../../storage/repo/registry';
import { startCairn, type CairnProcess } from '../helpers/cairn-process';
import { initRepo, makeTempDir, ostree, removeTempDirs } from '../helpers/ostree';
import { saveGpgKey, verifyingPull } from '../e2e/publish-helpers';
import { cairn, commitVersion } from '../maintenance/helpers';
import { emptyPrefix, freshPrefix, s3ClientEnv, s3TestStore, type S3TestStore } from './ceph';

const REF = 'os/s3';
const SECRET = 'cairn-s3-maint-token-secret-0123456789abcdef';
const GRACE_S = 30;
let store: S3TestStore;
let prefix: string;
let location: string;
let work: string;
let env: NodeJS.ProcessEnv;
let server: CairnProcess | undefined;

before(async () => {
  store = await s3TestStore();
  prefix = freshPrefix('maint');
  location = `s3://${store.bucket}/${prefix.replace(/\/$/, '')}`;
  work = await makeTempDir('cairn-maint-s3-');
  env = {
    ...s3ClientEnv(store),
    CAIRN_TOKEN_SECRET: SECRET,
    CAIRN_STORAGE: '',
  };
  // This process opens the bucket's repository too (the storage-layer test): the same store settings.
  for (const k of ['CAIRN_S3_ENDPOINT', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION'] as const) process.env[k] = env[k];
});

after(async () => {
  await server?.stop();
  await emptyPrefix(store, prefix).catch(() => undefined);
  await removeTempDirs();
});

async function cli(args: string[], extra: NodeJS.ProcessEnv = {}) {
  return cairn(args, { ...env, ...extra });
}

async function cliOk(args: string[], extra: NodeJS.ProcessEnv = {}) {
  const r = await cli(args, extra);
  assert.equal(r.code, 0, `cairn ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${r.stdout}`);
  return r;
}

/** The names (`XX/REST.EXT`) of a local archive repository's content-addressed objects. */
async function localObjects(repo: string): Promise<Set<string>> {
  const out = new Set<string>();
  for (const d of await fsp.readdir(path.join(repo, 'objects'))) {
    for (const f of await fsp.readdir(path.join(repo, 'objects', d))) if (/\.(commit|dirtree|dirmeta|filez)$/.test(f)) out.add(`${d}/${f}`);
  }
  return out;
}

/** The same names of the repository `main` in the bucket. */
async function bucketObjects(b: S3Backend): Promise<Set<string>> {
  const out = new Set<string>();
  for await (const k of b.list('repos/main/objects')) {
    const rel = k.slice('repos/main/objects/'.length);
    if (/\.(commit|dirtree|dirmeta|filez)$/.test(rel)) out.add(rel);
  }
  return out;
}

/** Every object of commits `commits` (their closures without history): pulled into a fresh archive repository. */
async function closureOf(local: string, commits: string[], name: string): Promise<Set<string>> {
  const dir = await initRepo(path.join(work, name), 'archive');
  for (const c of commits) await ostree(['pull-local', local, c], { repo: dir });
  return localObjects(dir);
}

async function api(method: string, url: string, token: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

const objKey = (rel: string) => `${prefix}repos/main/objects/${rel}`;

test('prune, gc and fsck on S3: through cairn serve --storage and the CLI --storage; the stock client pulls and verifies after prune + gc', async () => {
  const b = new S3Backend(store.client, store.bucket, prefix);
  // The CLI creates the repository in the bucket (and owns it); the server serves it.
  const init = await cliOk(['init-repo', 'main', '--storage', location]);
  assert.match(init.stdout, new RegExp(`created repository main at s3://${store.bucket}/`));
  assert.ok(await b.stat('repos/main/config'), 'the repository is in the bucket');
  assert.ok(await b.stat('settings/main.json'), 'its settings (owned) are in the bucket');
  server = await startCairn({ dataDir: path.join(work, 'scratch'), extraArgs: ['--storage', location], env: { ...env, CAIRN_MAINTENANCE_TICK_MS: '200' } });
  const push = (await cliOk(['token', '--scope', 'push', '--repo', 'main', '--prefix', 'os/', '--ttl', '1h'])).stdout.trim();
  const admin = (await cliOk(['token', '--scope', 'admin', '--repo', 'main', '--ttl', '1h'])).stdout.trim();

  // Four commits, each pushed: v1 … v4 on one ref, each with objects of its own.
  const local = await initRepo(path.join(work, 'local'), 'archive');
  const commits: string[] = [];
  const newAt: Array<Set<string>> = [];
  let seen = new Set<string>();
  for (let n = 1; n <= 4; n++) {
    commits.push(await commitVersion(work, local, REF, n));
    const now = await localObjects(local);
    newAt.push(new Set([...now].filter((o) => !seen.has(o))));
    seen = now;
    await cliOk(['push', '--url', `${server.url}/repo/main`, '--token', push, '--repo', local, REF]);
  }
  const pushedAt = Date.now();
  const all = await bucketObjects(b);
  for (const o of seen) assert.ok(all.has(o), `pushed object ${o} is in the bucket`);

  // fsck (CLI) of the whole repository: clean.
  const clean = await cliOk(['fsck', '--storage', location, '--repo', 'main', '--json']);
  const cleanReport = (JSON.parse(clean.stdout) as { repos: Array<{ ok: boolean; objects: number; refs: number }> }).repos[0]!;
  assert.equal(cleanReport.ok, true);
  let everything = 0;
  for await (const k of b.list('repos/main/objects')) if (/\.(commit|dirtree|dirmeta|filez|commitmeta)$/.test(k)) everything++;
  assert.equal(cleanReport.objects, everything, 'every object checked (detached metadata included)');
  assert.equal(cleanReport.refs, 1);

  // prune through the maintenance API of cairn serve --storage: a dry run changes nothing, then keep 2.
  const dry = await api('POST', `${server.url}/api/repos/main/prune`, admin, { keep: 2, dryRun: true });
  assert.equal(dry.status, 200, JSON.stringify(dry.json));
  assert.deepEqual((dry.json.commits as Array<{ commit: string }>).map((c) => c.commit).sort(), [commits[0], commits[1]].sort());
  assert.ok(await b.stat(`repos/main/objects/${commits[0]!.slice(0, 2)}/${commits[0]!.slice(2)}.commit`), 'a dry run removes nothing');
  const pruned = await api('POST', `${server.url}/api/repos/main/prune`, admin, { keep: 2 });
  assert.equal(pruned.status, 200, JSON.stringify(pruned.json));
  assert.deepEqual((pruned.json.commits as Array<{ commit: string }>).map((c) => c.commit).sort(), [commits[0], commits[1]].sort());
  assert.deepEqual(pruned.json.kept, { [REF]: 2 });
  const commitRel = (c: string) => `${c.slice(0, 2)}/${c.slice(2)}.commit`;
  const afterPrune = await bucketObjects(b);
  assert.ok(!afterPrune.has(commitRel(commits[0]!)) && !afterPrune.has(commitRel(commits[1]!)), 'the pruned commits are gone');
  assert.ok(afterPrune.has(commitRel(commits[2]!)) && afterPrune.has(commitRel(commits[3]!)), 'the kept ones stay');
  assert.equal(Number(pruned.json.exclusiveObjects) > 0, true, 'the pruned commits alone held objects');

  // What gc must keep: the closures of v3 and v4; what it must remove: what only v1 and v2 held.
  const reachable = await closureOf(local, [commits[2]!, commits[3]!], 'closure');
  const garbage = new Set([...newAt[0]!, ...newAt[1]!].filter((o) => !reachable.has(o) && !o.endsWith('.commit')));
  assert.ok(garbage.size >= 3, `objects of v1 and v2 only: ${[...garbage].join(' ')}`);

  // A push in progress: v5's objects uploaded (young), its ref not moved yet.
  await fsp.rm(path.join(work, `src-${REF.replace(/\//g, '_')}-5`), { recursive: true, force: true });
  const v5 = await commitVersion(work, local, REF, 5);
  const inFlight = [...(await localObjects(local))].filter((o) => !seen.has(o));
  // The old objects must be older than the grace window (by the store's clock, whole seconds) before gc runs.
  const wait = pushedAt + (GRACE_S + 3) * 1000 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  for (const rel of inFlight) {
    const name = rel.replace('/', '');
    const put: Response = await fetch(`${server.url}/api/repos/main/objects/${name}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${push}`, 'content-type': 'application/octet-stream' },
      body: await fsp.readFile(path.join(local, 'objects', rel)),
    });
    assert.equal(put.status, 201, `${name}: ${await put.text()}`);
  }

  // gc through the CLI --storage: a dry run first, then the real one.
  const gcDry = JSON.parse((await cliOk(['gc', '--storage', location, '--repo', 'main', '--grace', `${GRACE_S}s`, '--dry-run', '--json'])).stdout) as { deletedObjects: number; young: number };
  assert.equal(gcDry.deletedObjects, garbage.size, 'the dry run names the garbage');
  assert.deepEqual(await bucketObjects(b), new Set([...afterPrune, ...inFlight]), 'a dry run deletes nothing');
  const run = await cliOk(['gc', '--storage', location, '--repo', 'main', '--grace', `${GRACE_S}s`, '--json']);
  const report = JSON.parse(run.stdout) as { deletedObjects: number; young: number; sample: string[] };
  assert.match(run.stderr, /by the store's clock/);
  assert.equal(report.deletedObjects, garbage.size, run.stderr);
  // The push in progress is kept for its age: its commit is young, and a young commit keeps its tree.
  assert.equal(report.young, 1, 'the young commit of the push in progress (its tree kept through it)');
  const afterGc = await bucketObjects(b);
  assert.deepEqual(afterGc, new Set([...reachable, ...inFlight]), 'exactly the reachable objects and the young ones remain');

  // The push in progress completes: its objects are all there; the stock client pulls and verifies it.
  await cliOk(['push', '--url', `${server.url}/repo/main`, '--token', push, '--repo', local, REF]);
  const gpgAsc = await saveGpgKey(server.url, path.join(work, 'gpg.asc'));
  assert.equal(await verifyingPull(path.join(work, 'client'), server.url, gpgAsc, REF), v5);
  commits.push(v5);

  // fsck through the API of cairn serve --storage: clean.
  const fsckClean = await api('POST', `${server.url}/api/repos/main/fsck`, admin, {});
  assert.equal(fsckClean.status, 200);
  assert.equal(fsckClean.json.ok, true, JSON.stringify(fsckClean.json));

  // gc through the API, and as a scheduled maintenance job of cairn serve --storage: nothing is old garbage now.
  const gcApi = await api('POST', `${server.url}/api/repos/main/gc`, admin, { graceSeconds: 3600, dryRun: true });
  assert.equal(gcApi.status, 200, JSON.stringify(gcApi.json));
  assert.equal(gcApi.json.deletedObjects, 0);
  const patched = await api('PATCH', `${server.url}/api/repos/main/settings`, admin, { maintenance: { gc: { grace: '1h', every: '1m' } } });
  assert.equal(patched.status, 200, JSON.stringify(patched.json));
  type Job = { kind: string; state: string; params: unknown; result?: { deletedObjects?: number } };
  let jobs: Job[] = [];
  for (let i = 0; i < 300 && !jobs.some((j) => j.state === 'done' || j.state === 'failed'); i++) {
    await new Promise((r) => setTimeout(r, 100));
    jobs = ((await api('GET', `${server.url}/api/jobs?repo=main`, admin)).json.jobs as Job[]).filter((j) => j.kind === 'maintenance');
  }
  assert.equal(jobs[0]?.state, 'done', JSON.stringify(jobs));
  assert.deepEqual(jobs[0]!.params, { repo: 'main', task: 'gc' });
  assert.equal(jobs[0]!.result?.deletedObjects, 0);
  // Once within its `every`: a tick that read the runs while the job was finishing must not queue a second one.
  await new Promise((r) => setTimeout(r, 1500));
  jobs = ((await api('GET', `${server.url}/api/jobs?repo=main`, admin)).json.jobs as Job[]).filter((j) => j.kind === 'maintenance');
  assert.equal(jobs.length, 1, JSON.stringify(jobs));
  assert.ok(await b.stat('repos/main/state/cairn/maintenance.json'), 'when it last ran is kept in the bucket');
  assert.equal((await api('PATCH', `${server.url}/api/repos/main/settings`, admin, { maintenance: { gc: null } })).status, 200);

  // Damage in the bucket, behind Cairn's back: one .filez's bytes overwritten, one dirtree deleted.
  const v5Files = inFlight.filter((o) => o.endsWith('.filez'));
  const v5Trees = inFlight.filter((o) => o.endsWith('.dirtree'));
  const victim = v5Files[0]!;
  const goner = v5Trees[0]!;
  const original = Buffer.from(await (await store.client.send(new GetObjectCommand({ Bucket: store.bucket, Key: objKey(victim) }))).Body!.transformToByteArray());
  const flipped = Buffer.from(original);
  flipped[flipped.length - 5] ^= 0x55;
  await store.client.send(new PutObjectCommand({ Bucket: store.bucket, Key: objKey(victim), Body: flipped }));
  await store.client.send(new DeleteObjectCommand({ Bucket: store.bucket, Key: objKey(goner) }));
  const victimName = victim.replace('/', '');
  const gonerName = goner.replace('/', '');

  const damaged = await cli(['fsck', '--repo', 'main'], { CAIRN_STORAGE: location });
  assert.equal(damaged.code, 1, damaged.stderr);
  assert.match(damaged.stdout, new RegExp(`main: corrupt ${victimName}: `));
  assert.match(damaged.stdout, new RegExp(`main: missing ${gonerName} \\(needed by commit ${v5}\\)`));
  const viaApi = await api('POST', `${server.url}/api/repos/main/fsck`, admin, {});
  assert.equal(viaApi.json.ok, false);
  assert.deepEqual((viaApi.json.corrupt as Array<{ object: string }>).map((c) => c.object), [victimName]);
  assert.deepEqual((viaApi.json.missing as Array<{ object: string }>).map((c) => c.object), [gonerName]);

  // --repair quarantines the corrupt object in the bucket (never served); pushing the commit again restores both.
  const repaired = await cli(['fsck', '--storage', location, '--repo', 'main', '--repair']);
  assert.equal(repaired.code, 1);
  assert.match(repaired.stdout, new RegExp(`quarantined ${victimName} -> state/cairn/quarantine/`));
  assert.equal(await b.stat(`repos/main/objects/${victim}`), null, 'the corrupt object left objects/');
  const served = await fetch(`${server.url}/repo/main/objects/${victim}`);
  assert.equal(served.status, 404, 'and is not served');
  await cliOk(['push', '--url', `${server.url}/repo/main`, '--token', push, '--repo', local, REF]);
  const whole = await cliOk(['fsck', '--storage', location, '--repo', 'main']);
  assert.match(whole.stderr, /1 repositories checked: no damage/);
  assert.equal(await verifyingPull(path.join(work, 'client2'), server.url, gpgAsc, REF), v5);
});

test('gc on S3 by the store-layer API: whole-second Last-Modified never deletes an object younger than the grace window', async () => {
  // A repository of the bucket opened by the storage layer directly. An unreachable object written
  // late in a second (Last-Modified truncates it by up to a second) and collected at once with a
  // grace of 0.3 s: its truncated date alone says "0.9 s old", older than the window; it is kept,
  // and goes once it is older than the window by the store's clock.
  const registry = new RepoRegistry(location);
  const repo = await registry.open('main');
  assert.ok(repo);
  const orphan = 'objects/ab/' + 'c'.repeat(62) + '.dirmeta';
  const intoSecond = Date.now() % 1000;
  await new Promise((r) => setTimeout(r, (1850 - intoSecond) % 1000)); // ~0.85 s into a second
  await repo.backend.write(orphan, Buffer.alloc(12)); // not even valid: gc does not read unreachable objects
  const info = await repo.backend.stat(orphan);
  assert.equal(info!.mtimeMs % 1000, 0, 'the store dates objects in whole seconds');
  const first = await gc(repo, { graceMs: 300 });
  assert.equal(first.deletedObjects, 0, JSON.stringify(first.sample));
  assert.equal(first.young, 1);
  assert.ok(await repo.backend.stat(orphan), 'kept within the window');
  await new Promise((r) => setTimeout(r, 2500));
  const second = await gc(repo, { graceMs: 300 });
  assert.deepEqual(second.sample, [`ab${'c'.repeat(62)}.dirmeta`]);
  assert.equal(await repo.backend.stat(orphan), null);
  // Nothing else went: the repository still checks clean.
  assert.equal((await fsck(repo)).ok, true);
});

test('cairn gc --storage in another process while cairn push publishes through cairn serve --storage: every push succeeds, the old garbage goes, the stock client pulls', async () => {
  // gc's rounds hold the bucket's lease lock; a publisher in another process polls for it. The
  // garbage (1,500 unreachable objects, older than the grace window) takes several rounds, and
  // commits are pushed one after another until gc is done: each must succeed.
  assert.ok(server);
  const b = new S3Backend(store.client, store.bucket, prefix);
  const junk: string[] = [];
  for (let i = 0; i < 1500; i++) junk.push(`repos/main/objects/${(i % 256).toString(16).padStart(2, '0')}/${i.toString(16).padStart(62, 'e')}.dirmeta`);
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < junk.length) await b.write(junk[next++]!, Buffer.alloc(12));
    }),
  );
  const written = Date.now();
  const grace = 30;
  await new Promise((r) => setTimeout(r, grace * 1000 + 2500 - (Date.now() - written)));

  const push = (await cliOk(['token', '--scope', 'push', '--repo', 'main', '--prefix', 'os/', '--ttl', '1h'])).stdout.trim();
  const local = path.join(work, 'local');
  let collecting = true;
  const collector = cli(['gc', '--storage', location, '--repo', 'main', '--grace', `${grace}s`, '--json']).finally(() => (collecting = false));
  const pushes: Array<{ ms: number; commit: string; duringGc: boolean }> = [];
  let head = '';
  for (let n = 10; collecting || pushes.length < 2; n++) {
    head = await commitVersion(work, local, REF, n);
    const t0 = Date.now();
    const duringGc = collecting;
    await cliOk(['push', '--url', `${server.url}/repo/main`, '--token', push, '--repo', local, REF]);
    pushes.push({ ms: Date.now() - t0, commit: head, duringGc });
  }
  const gcRun = await collector;
  assert.equal(gcRun.code, 0, gcRun.stderr);
  const report = JSON.parse(gcRun.stdout) as { deletedObjects: number };
  assert.ok(report.deletedObjects >= junk.length, `${report.deletedObjects} deleted`);
  assert.ok(pushes.filter((p) => p.duringGc).length >= 2, `pushes while gc ran: ${JSON.stringify(pushes)}`);
  let left = 0;
  for await (const k of b.list('repos/main/objects')) if (k.endsWith('e'.repeat(20) + '.dirmeta')) left++;
  assert.equal(left, 0, 'the garbage is gone');
  const ok = await cliOk(['fsck', '--storage', location, '--repo', 'main']);
  assert.match(ok.stderr, /no damage/);
  const gpgAsc = await saveGpgKey(server.url, path.join(work, 'gpg3.asc'));
  assert.equal(await verifyingPull(path.join(work, 'client3'), server.url, gpgAsc, REF), head);
  process.stderr.write(`pushes during gc (ms): ${pushes.map((p) => `${p.ms}${p.duringGc ? '' : '*'}`).join(' ')}\n`);
});

test('cairn commit, delta and adopt --storage s3://…: a commit and its delta written into the bucket, a repository copied into the bucket adopted; the stock client pulls them through cairn serve', async () => {
  assert.ok(server);
  const b = new S3Backend(store.client, store.bucket, prefix);
  const tree = path.join(work, 'cli-tree');
  await fsp.mkdir(path.join(tree, 'etc'), { recursive: true });
  await fsp.writeFile(path.join(tree, 'etc', 'motd'), 'committed by cairn commit --storage\n');
  const made = await cliOk(['commit', '--storage', location, '--repo', 'main', '--branch', 'os/cli', '--tree', tree, '-s', 'from the CLI']);
  const commit = made.stdout.trim();
  assert.match(commit, /^[0-9a-f]{64}$/);
  assert.equal((await b.read('repos/main/refs/heads/os/cli'))?.data.toString().trim(), commit, 'the ref is in the bucket');
  const gen = await cliOk(['delta', 'generate', '--storage', location, '--repo', 'main', '--to', 'os/cli', '--empty']);
  assert.equal(gen.stdout.trim(), commit);
  const listed = JSON.parse((await cliOk(['delta', 'list', '--storage', location, '--repo', 'main', '--json'])).stdout) as { deltas: Array<{ name: string }> };
  assert.ok(listed.deltas.some((d) => d.name === commit), JSON.stringify(listed));
  const gpgAsc = await saveGpgKey(server.url, path.join(work, 'gpg4.asc'));
  assert.equal(await verifyingPull(path.join(work, 'client4'), server.url, gpgAsc, 'os/cli'), commit);

  // A repository made by ostree, copied into the bucket (as `aws s3 sync` would): served as it is, refused for writes, then adopted.
  const foreign = await initRepo(path.join(work, 'foreign'), 'archive');
  const fc = await commitVersion(work, foreign, 'os/foreign', 1);
  await ostree(['summary', '-u'], { repo: foreign });
  const files: string[] = [];
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(path.join(d, e.name), `${rel}${e.name}/`);
      else if (e.isFile()) files.push(`${rel}${e.name}`);
    }
  };
  await walk(foreign, '');
  for (const f of files) await b.write(`repos/foreign/${f}`, await fsp.readFile(path.join(foreign, f)));
  const refused = await cli(['gc', '--storage', location, '--repo', 'foreign']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /not created by Cairn/);
  await cliOk(['adopt', 'foreign', '--storage', location]);
  assert.equal((JSON.parse((await b.read('settings/foreign.json'))!.data.toString()) as { owned: boolean }).owned, true);
  assert.ok(await b.stat('repos/foreign/summary.sig'), 'adopted: Cairn signed its summary');
  assert.ok(await b.stat('keys/foreign/gpg-secret.asc'), 'with keys of its own in the bucket');
  const key = await fetch(`${server.url}/repo/foreign/keys/gpg.asc`);
  assert.equal(key.status, 200);
  const fgpg = path.join(work, 'gpg5.asc');
  await fsp.writeFile(fgpg, Buffer.from(await key.arrayBuffer()));
  const client = path.join(work, 'client5');
  await initRepo(client, 'archive');
  // The summary is verified (Cairn signed it on adoption); ostree's own commits carry no signature.
  await ostree(['remote', 'add', `--gpg-import=${fgpg}`, '--set=gpg-verify-summary=true', '--set=gpg-verify=false', 'cairn', `${server.url}/repo/foreign`], { repo: client });
  await ostree(['pull', 'cairn', 'os/foreign'], { repo: client });
  assert.equal((await ostree(['rev-parse', 'cairn:os/foreign'], { repo: client })).trim(), fc);
  await cliOk(['gc', '--storage', location, '--repo', 'foreign', '--grace', '1h']);
  const f = await cliOk(['fsck', '--storage', location]);
  assert.match(f.stderr, /2 repositories checked: no damage/);
});

test('the background scrub of cairn serve --storage: a pass over the bucket, a corrupt object found, quarantined in the bucket and answered 404', async () => {
  assert.ok(server);
  const admin = (await cliOk(['token', '--scope', 'admin', '--repo', 'main', '--ttl', '1h'])).stdout.trim();
  type Status = { enabled: boolean; passes: number; lastPass: { objects: number; corrupt: number } | null; findings: Array<{ object: string; quarantinedTo: string }> };
  const status = async () => (await api('GET', `${server!.url}/api/repos/main/scrub`, admin)).json as unknown as Status;
  const until = async (what: string, ok: (s: Status) => boolean): Promise<Status> => {
    let s = await status();
    for (let i = 0; i < 600 && !ok(s); i++) {
      await new Promise((r) => setTimeout(r, 100));
      s = await status();
    }
    assert.ok(ok(s), `${what}: ${JSON.stringify(s)}`);
    return s;
  };
  assert.equal((await api('PATCH', `${server.url}/api/repos/main/settings`, admin, { maintenance: { scrub: { objectsPerSecond: 2000 } } })).status, 200);
  const first = await until('a whole pass', (s) => s.passes >= 1);
  assert.ok(first.lastPass!.objects > 10, JSON.stringify(first.lastPass));
  assert.equal(first.lastPass!.corrupt, 0);

  // One .filez of the head overwritten in the bucket: the next pass finds it.
  const b = new S3Backend(store.client, store.bucket, prefix);
  let victim = '';
  for await (const k of b.list('repos/main/objects')) if (k.endsWith('.filez')) victim = k;
  const bytes = (await b.read(victim))!.data;
  bytes[bytes.length - 3] ^= 0x0f;
  await store.client.send(new PutObjectCommand({ Bucket: store.bucket, Key: `${prefix}${victim}`, Body: bytes }));
  const name = victim.slice('repos/main/objects/'.length).replace('/', '');
  const found = await until('the corrupt object found', (s) => s.findings.some((f) => f.object === name));
  const f = found.findings.find((x) => x.object === name)!;
  assert.match(f.quarantinedTo, /^state\/cairn\/quarantine\/scrub-/);
  assert.ok(await b.stat(`repos/main/${f.quarantinedTo}`), 'moved into the quarantine, in the bucket');
  assert.equal(await b.stat(victim), null);
  assert.equal((await fetch(`${server.url}/repo/main/${victim.slice('repos/main/'.length)}`)).status, 404);
  assert.equal((await api('PATCH', `${server.url}/api/repos/main/settings`, admin, { maintenance: { scrub: null } })).status, 200);
});
