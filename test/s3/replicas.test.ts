// Two (or three) `cairn serve --storage s3://BUCKET/PREFIX` replicas on one prefix of a real Ceph
// RGW, sharing CAIRN_TOKEN_SECRET, each with CAIRN_E2E_WORKERS processes (the delta jobs run in
// each replica's primary). Delta jobs are durable records with leases in the bucket
// (server/jobs/durable.ts):
//   - push through A, the stock client pulls objects and then the static delta through B, and
//     every delta is claimed by exactly one replica;
//   - concurrent ref updates through both, same expectation: exactly one winner, the other 409
//     CONFLICT, and both replicas' summaries name exactly the refs;
//   - a replica SIGKILLed while it holds a delta job (CAIRN_TEST_DELTA_JOB_DELAY_MS keeps the job
//     running) has the job taken over and finished by the other once the lease ran out, and not
//     before while it still renewed;
//   - jobs survive a restart: a stopped replica's running job is handed back and its queued one
//     stays queued, and a replica started later runs both.
// The lease is shortened to LEASE_MS (CAIRN_JOBS_LEASE_MS) so that takeovers take seconds.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { S3Backend } from '../../storage/backends/s3';
import { deltaRecordKey, listDeltaRecordKeys, readDeltaRecord, type DeltaRecord } from '../../storage/jobs/records';
import { summaryRefs } from '../../storage/repo/recovery';
import { jobsSettled, startCairn, type CairnProcess } from '../helpers/cairn-process';
import { addRemote, commitTree, deltaSuperblockPath, initRepo, makeSourceTree, makeTempDir, ostree, removeTempDirs } from '../helpers/ostree';
import { cli, moveRefs, saveGpgKey } from '../e2e/publish-helpers';
import { emptyPrefix, freshPrefix, s3ClientEnv, s3TestStore, type S3TestStore } from './ceph';

const SECRET = 'cairn-s3-replicas-jobs-secret-0123456789abcdef';
const LEASE_MS = 4000;
let store: S3TestStore;
let work: string;
const prefixes: string[] = [];
const running: CairnProcess[] = [];
let pushToken: string;
let seq = 0;

before(async () => {
  store = await s3TestStore();
  work = await makeTempDir('cairn-s3-replicas-');
  const t = await cli(['token', '--scope', 'push', '--repo', 'main', '--ttl', '1h', '--sub', 'replicas'], { CAIRN_TOKEN_SECRET: SECRET });
  assert.equal(t.code, 0, t.stderr);
  pushToken = t.stdout.trim();
});

after(async () => {
  await Promise.all(running.map((c) => c.stop()));
  for (const p of prefixes) await emptyPrefix(store, p).catch(() => undefined);
  await removeTempDirs();
});

/** A fresh prefix of the test bucket and its s3:// location. */
function bucketPrefix(what: string): { prefix: string; location: string; backend: S3Backend } {
  const prefix = freshPrefix(`replicas-${what}`);
  prefixes.push(prefix);
  return { prefix, location: `s3://${store.bucket}/${prefix.replace(/\/$/, '')}`, backend: new S3Backend(store.client, store.bucket, prefix) };
}

async function replica(location: string, env: NodeJS.ProcessEnv = {}): Promise<CairnProcess> {
  const c = await startCairn({
    dataDir: path.join(work, `scratch-${++seq}`),
    extraArgs: ['--storage', location],
    env: {
      ...s3ClientEnv(store),
      CAIRN_TOKEN_SECRET: SECRET,
      CAIRN_LOG: 'info',
      CAIRN_JOBS_LEASE_MS: String(LEASE_MS),
      ...env,
    },
  });
  running.push(c);
  return c;
}

async function push(via: CairnProcess, local: string, commit: string, ref: string): Promise<void> {
  const r = await cli(['push', '--url', `${via.url}/repo/main`, '--token', pushToken, '--repo', local, commit, '--to', ref]);
  assert.equal(r.code, 0, `${r.stderr}\n--- server ---\n${via.output().split('\n').slice(-20).join('\n')}`);
}

async function records(b: S3Backend): Promise<DeltaRecord[]> {
  const out: DeltaRecord[] = [];
  for (const k of await listDeltaRecordKeys(b, 1000)) {
    const r = await readDeltaRecord(b, k);
    if (r?.record) out.push(r.record);
  }
  return out;
}

async function record(b: S3Backend, from: string | null, to: string): Promise<DeltaRecord | null> {
  return (await readDeltaRecord(b, deltaRecordKey('main', from, to)))?.record ?? null;
}

async function until(what: string, pred: () => boolean | Promise<boolean>, ms = 90_000, why: () => string = () => ''): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}\n${why()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Nothing queued, running or being decided on any of `replicas`, and no record in the store still queued or running. */
async function settledEverywhere(b: S3Backend, replicas: CairnProcess[]): Promise<void> {
  await until(
    'every delta job to settle',
    async () => {
      for (const r of replicas) await jobsSettled(r.url, 90_000);
      return (await records(b)).every((r) => r.state !== 'queued' && r.state !== 'running');
    },
    120_000,
  );
}

/** The JSON log lines of `c` with message `msg`. */
function logged(c: CairnProcess, msg: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of c.output().split('\n')) {
    if (!line.startsWith('{') || !line.includes(`"msg":"${msg}"`)) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line cut by the kill
    }
  }
  return out;
}

/** A bare-user host (static deltas need one) verifying commit and summary signatures with `gpgAsc`, remote `cairn` at `url`. */
async function verifyingHost(dir: string, url: string, gpgAsc: string): Promise<string> {
  await initRepo(dir, 'bare-user');
  await addRemote(dir, 'cairn', `${url}/repo/main`, { gpgImport: gpgAsc, set: { 'gpg-verify': 'true', 'gpg-verify-summary': 'true' } });
  return dir;
}

function tail(...cs: CairnProcess[]): string {
  return cs.map((c, i) => `--- replica ${i} ---\n${c.output().split('\n').slice(-25).join('\n')}`).join('\n');
}

test('push through replica A, the stock client pulls objects and the static delta through replica B; each delta is built by exactly one replica', async () => {
  const { location, backend } = bucketPrefix('pull');
  const a = await replica(location);
  const b = await replica(location);
  const REF = 'os/replicas';
  const local = await initRepo(path.join(work, 'local-pull'), 'archive');
  const v1 = await commitTree(local, { branch: REF, tree: await makeSourceTree(path.join(work, 'pull-v1'), { seed: 81, bigFileBytes: 300_000 }), subject: 'v1', timestamp: 1_709_251_200 });
  await push(a, local, v1, REF);
  await settledEverywhere(backend, [a, b]);

  const gpgAsc = await saveGpgKey(b.url, path.join(work, 'pull-gpg.asc'));
  const client = await verifyingHost(path.join(work, 'pull-client'), b.url, gpgAsc);
  await ostree(['pull', '--disable-static-deltas', 'cairn', REF], { repo: client });
  assert.ok(b.requests().some((r) => r.path.startsWith('/repo/main/objects/') && r.status === 200), 'v1 came as objects from B');

  const v2 = await commitTree(local, {
    branch: REF,
    tree: await makeSourceTree(path.join(work, 'pull-v2'), { seed: 81, bigFileBytes: 300_000, extra: { 'etc/added-in-v2': 'two\n'.repeat(500) } }),
    subject: 'v2',
    timestamp: 1_709_251_300,
  });
  await push(a, local, v2, REF);
  await settledEverywhere(backend, [a, b]);
  assert.ok(await backend.stat(`repos/main/${deltaSuperblockPath(v1, v2)}`), `the v1→v2 delta is in the bucket\n${tail(a, b)}`);

  const seen = b.requests().length;
  await ostree(['pull', '--require-static-deltas', 'cairn', REF], { repo: client });
  const superblock = `/repo/main/${deltaSuperblockPath(v1, v2)}`;
  assert.ok(
    b.requests().slice(seen).some((r) => r.path === superblock && r.status === 200) || (await b.waitForRequest((r) => r.path === superblock && r.status === 200)),
    'the client fetched the v1→v2 superblock from B',
  );
  assert.match(await ostree(['fsck'], { repo: client }), /no errors found/);
  assert.equal((await ostree(['rev-parse', `cairn:${REF}`], { repo: client })).trim(), v2);

  // Every delta was claimed (started) by one replica only, and the v1→v2 one was.
  const claims = new Map<string, number>();
  for (const c of [a, b]) for (const l of [...logged(c, 'delta job claimed'), ...logged(c, 'delta job taken over')]) claims.set(String(l.delta), (claims.get(String(l.delta)) ?? 0) + 1);
  for (const [delta, n] of claims) assert.equal(n, 1, `${delta} claimed ${n} times\n${tail(a, b)}`);
  assert.equal(claims.get(deltaRecordKey('main', v1, v2)), 1, `the v1→v2 delta was claimed once\n${tail(a, b)}`);
  const rec = await record(backend, v1, v2);
  assert.equal(rec?.state, 'done', `${JSON.stringify(rec)}\n${tail(a, b)}`);
});

test('concurrent ref updates through both replicas, same expected value: exactly one winner, the other 409 CONFLICT; the summary always matches the refs', async () => {
  const { location } = bucketPrefix('race');
  const a = await replica(location);
  const b = await replica(location);
  const ROUNDS = 5;
  const local = await initRepo(path.join(work, 'local-race'), 'archive');
  const candidates: Array<[string, string]> = [];
  for (let i = 0; i < ROUNDS; i++) {
    const pair: string[] = [];
    for (const side of ['a', 'b']) {
      const tree = await makeSourceTree(path.join(work, `race-${i}-${side}`), { seed: 400 + i * 2 + (side === 'a' ? 0 : 1), bigFileBytes: 5_000 });
      // Bound to its own ref and to os/race (clients accept it under either).
      const out = await ostree(['commit', `--branch=race/${side}-${i}`, '--bind-ref=os/race', `--tree=dir=${tree}`, `--subject=${side}${i}`, `--timestamp=${new Date((1_709_251_200 + i) * 1000).toISOString()}`], { repo: local });
      pair.push(out.trim());
    }
    candidates.push(pair as [string, string]);
  }
  const all = await cli(['push', '--url', `${a.url}/repo/main`, '--token', pushToken, '--repo', local, '--all']);
  assert.equal(all.code, 0, all.stderr);

  const REF = 'os/race';
  let current: string | null = null;
  for (let i = 0; i < ROUNDS; i++) {
    const [x, y] = candidates[i]!;
    const [ra, rb]: Array<{ status: number; body: unknown }> = await Promise.all([moveRefs(a.url, pushToken, [{ ref: REF, commit: x, expected: current }]), moveRefs(b.url, pushToken, [{ ref: REF, commit: y, expected: current }])]);
    assert.deepEqual([ra.status, rb.status].sort(), [200, 409], `round ${i}: one winner (${JSON.stringify([ra, rb])})`);
    const loser = ra.status === 409 ? ra : rb;
    assert.equal((loser.body as { error: { code: string } }).error.code, 'CONFLICT');
    current = ra.status === 200 ? x : y;

    // Both replicas: the API's refs, the ref file and the summary name the winner, and the summary names exactly the refs.
    for (const r of [a, b]) {
      const refs = ((await (await fetch(`${r.url}/api/repos/main/refs`)).json()) as { refs: Record<string, string> }).refs;
      assert.equal(refs[REF], current, `round ${i}: the refs of ${r.url}`);
      assert.equal((await (await fetch(`${r.url}/repo/main/refs/heads/${REF}`)).text()).trim(), current);
      const summary = summaryRefs(Buffer.from(await (await fetch(`${r.url}/repo/main/summary`)).arrayBuffer()));
      assert.ok(summary, 'a summary');
      assert.deepEqual(Object.fromEntries([...summary.refs].sort()), Object.fromEntries(Object.entries(refs).sort()), `round ${i}: the summary of ${r.url} matches its refs`);
    }
  }
});

test('a replica SIGKILLed while it runs a delta job: the other replica takes the job over once the lease ran out and finishes it', async () => {
  const { location, backend } = bucketPrefix('kill');
  // A holds every delta job (lease renewed) for 10 minutes before compiling.
  const a = await replica(location, { CAIRN_TEST_DELTA_JOB_DELAY_MS: '600000' });
  const REF = 'os/killed';
  const local = await initRepo(path.join(work, 'local-kill'), 'archive');
  const v1 = await commitTree(local, { branch: REF, tree: await makeSourceTree(path.join(work, 'kill-v1'), { seed: 91, bigFileBytes: 200_000 }), subject: 'v1', timestamp: 1_709_251_200 });
  await push(a, local, v1, REF);
  await until('A to claim the from-scratch delta', () => logged(a, 'delta job claimed').length > 0, 60_000, () => tail(a));
  const owner = String(logged(a, 'delta job claimed')[0]!.replica);
  assert.equal((await record(backend, null, v1))?.owner, owner);

  // B starts while A holds the job: A's renewals keep it A's for longer than a lease.
  const b = await replica(location);
  await new Promise((r) => setTimeout(r, LEASE_MS * 1.5));
  const held = await record(backend, null, v1);
  assert.equal(held?.state, 'running');
  assert.equal(held?.owner, owner, 'not taken over while A renews');
  assert.equal(held?.attempts, 1);
  assert.equal(logged(b, 'delta job taken over').length, 0);

  process.kill(a.pid, 'SIGKILL');
  const killed = Date.now();
  await until('B to finish the job', async () => (await record(backend, null, v1))?.state === 'done', 90_000, () => tail(a, b));
  const took = logged(b, 'delta job taken over');
  assert.equal(took.length, 1, tail(b));
  assert.equal(took[0]!.previous_owner, owner);
  // B measures the lease from when it first saw A's last renewal (up to a renewal interval, 1 s, before the kill).
  assert.ok(Date.now() - killed >= LEASE_MS / 2, 'not at once: after the lease ran out (as B measured it)');
  const done = (await record(backend, null, v1))!;
  assert.equal(done.attempts, 2);
  assert.equal(done.owner, took[0]!.replica);
  assert.ok(await backend.stat(`repos/main/${deltaSuperblockPath(null, v1)}`), 'the delta is in the bucket');

  // The stock client installs through that delta from B.
  await jobsSettled(b.url);
  const gpgAsc = await saveGpgKey(b.url, path.join(work, 'kill-gpg.asc'));
  const client = await verifyingHost(path.join(work, 'kill-client'), b.url, gpgAsc);
  await ostree(['pull', '--require-static-deltas', 'cairn', REF], { repo: client });
  assert.ok(await b.waitForRequest((r) => r.path === `/repo/main/${deltaSuperblockPath(null, v1)}` && r.status === 200), 'through the scratch delta');
  assert.equal((await ostree(['rev-parse', `cairn:${REF}`], { repo: client })).trim(), v1);
});

test('jobs survive a restart: a stopped replica hands its running job back, its queued one stays queued, and a replica started later runs both', async () => {
  const { location, backend } = bucketPrefix('restart');
  const a = await replica(location, { CAIRN_TEST_DELTA_JOB_DELAY_MS: '600000', CAIRN_JOBS_CONCURRENCY: '1' });
  const local = await initRepo(path.join(work, 'local-restart'), 'archive');
  const one = await commitTree(local, { branch: 'os/one', tree: await makeSourceTree(path.join(work, 'restart-1'), { seed: 95, bigFileBytes: 100_000 }), subject: 'one', timestamp: 1_709_251_200 });
  const two = await commitTree(local, { branch: 'os/two', tree: await makeSourceTree(path.join(work, 'restart-2'), { seed: 96, bigFileBytes: 100_000 }), subject: 'two', timestamp: 1_709_251_200 });
  await push(a, local, one, 'os/one');
  await push(a, local, two, 'os/two');
  await until('one job held and the other queued', async () => {
    const rs = await records(backend);
    return rs.length === 2 && rs.some((r) => r.state === 'running') && rs.some((r) => r.state === 'queued');
  }, 60_000, () => tail(a));
  await a.stop(); // SIGTERM
  assert.equal(logged(a, 'delta job handed back').length, 1, tail(a));
  const left = await records(backend);
  assert.deepEqual(left.map((r) => [r.to, r.state, r.owner ?? null]).sort(), [[one, 'queued', null], [two, 'queued', null]].sort(), 'both wait in the store');
  for (const c of [one, two]) assert.equal(await backend.stat(`repos/main/${deltaSuperblockPath(null, c)}`), null);

  const c = await replica(location);
  await until('both jobs to be done', async () => (await records(backend)).every((r) => r.state === 'done'), 90_000, () => tail(c));
  for (const x of [one, two]) assert.ok(await backend.stat(`repos/main/${deltaSuperblockPath(null, x)}`), `the delta to ${x} is in the bucket`);
  assert.equal(logged(c, 'delta job picked up from the store').length, 2, tail(c));
  await jobsSettled(c.url);
  const summary = summaryRefs(Buffer.from(await (await fetch(`${c.url}/repo/main/summary`)).arrayBuffer()));
  assert.equal(summary?.deltas.size, 2, 'the summary lists both deltas');
});
