// The summary pair on S3 (server/files/summary-pair.ts; test/e2e/publish-pair and publish-load are
// the filesystem's): `cairn serve --storage s3://…` against a real Ceph RGW.
// - a connection that fetched summary.sig gets, for summary, the summary that signature signs, even
//   when a publish landed in between; a new connection gets the new pair;
// - while the pair is mid-switch in the bucket (the journal lists both pairs, summary replaced,
//   summary.sig not yet), the pair served is the previous one, never a mix;
// - verifying pulls by the stock client (gpg-verify-summary) while the ref moves back and forth:
//   not one "BAD signature". (Before the pair was served as one on S3, its files were served as
//   any file, one HEAD and GET each, and a publish between the client's two requests tore it.)

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { S3Backend } from '../../storage/backends/s3';
import { JOURNAL_KEY, type Journal } from '../../storage/repo/journal';
import { startCairn, type CairnProcess } from '../helpers/cairn-process';
import { commitTree, initRepo, makeSourceTree, makeTempDir, ostreeResult, removeTempDirs } from '../helpers/ostree';
import { cli, moveRefs, saveGpgKey, verifyingClient } from '../e2e/publish-helpers';
import { emptyPrefix, freshPrefix, s3ClientEnv, s3TestStore, type S3TestStore } from './ceph';

const REF = 'os/pair';
const SECRET = 'cairn-s3-pair-token-secret-0123456789abcdef';
/** At least this many pulls, and on until the ref moved MIN_PUBLISHES times (a publish on S3 takes seconds). */
const PULLS = 24;
const MIN_PUBLISHES = 6;
const CONCURRENCY = 4;

let store: S3TestStore;
let prefix: string;
let bucket: S3Backend;
let work: string;
let cairn: CairnProcess | undefined;
let token: string;
const commits: string[] = [];

before(async () => {
  store = await s3TestStore();
  prefix = freshPrefix('pair');
  bucket = new S3Backend(store.client, store.bucket, `${prefix}repos/main/`);
  work = await makeTempDir('cairn-s3-pair-');
  const env = {
    ...s3ClientEnv(store),
    CAIRN_TOKEN_SECRET: SECRET,
  };
  cairn = await startCairn({ dataDir: path.join(work, 'scratch'), extraArgs: ['--storage', `s3://${store.bucket}/${prefix.replace(/\/$/, '')}`], env });
  const t = await cli(['token', '--scope', 'admin', '--repo', 'main', '--ttl', '1h', '--sub', 'e2e'], { CAIRN_TOKEN_SECRET: SECRET });
  assert.equal(t.code, 0, t.stderr);
  token = t.stdout.trim();
  // No delta jobs: their summary regenerations would move the pair under the deterministic tests, and
  // the publishes below are what the pair must survive.
  const s = await fetch(`${cairn.url}/api/repos/main/settings`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ deltas: { scratch: false, previousCommits: 0 } }),
  });
  assert.equal(s.status, 200, await s.text());
  const local = await initRepo(path.join(work, 'local'), 'archive');
  for (let i = 0; i < 2; i++) {
    const tree = await makeSourceTree(path.join(work, `t${i}`), { seed: 80 + i, bigFileBytes: 5_000 });
    commits.push(await commitTree(local, { branch: REF, tree, subject: `v${i}`, timestamp: 1_709_251_200 + i }));
  }
  for (const c of commits) {
    const r = await cli(['push', '--url', `${cairn.url}/repo/main`, '--token', token, '--repo', local, '--to', REF, '--force', c]);
    assert.equal(r.code, 0, r.stderr);
  }
});

after(async () => {
  await cairn?.stop();
  await emptyPrefix(store, prefix).catch(() => undefined);
  await removeTempDirs();
});

/** GET on `agent` (one kept-alive socket when maxSockets is 1). */
function get(agent: http.Agent, file: string): Promise<{ status: number; body: Buffer; socket: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${cairn!.url}/repo/main/${file}`, { agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), socket: req.socket }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function pair(agent: http.Agent): Promise<{ summary: string; sig: string }> {
  const sig = await get(agent, 'summary.sig');
  const summary = await get(agent, 'summary');
  assert.equal(sig.status, 200);
  assert.equal(summary.status, 200);
  return { summary: sha(summary.body), sig: sha(sig.body) };
}

async function bucketPair(): Promise<{ summary: string; sig: string }> {
  return { summary: sha((await bucket.read('summary'))!.data), sig: sha((await bucket.read('summary.sig'))!.data) };
}

async function headOf(): Promise<string> {
  return (((await (await fetch(`${cairn!.url}/api/repos/main/refs`)).json()) as { refs: Record<string, string> }).refs[REF])!;
}

async function flip(): Promise<void> {
  const head = await headOf();
  const moved = await moveRefs(cairn!.url, token, [{ ref: REF, commit: head === commits[0] ? commits[1]! : commits[0]!, expected: head }]);
  assert.equal(moved.status, 200, JSON.stringify(moved.body));
}

test('on S3, summary follows the summary.sig its connection fetched, across a publish; a new connection gets the new pair', async () => {
  const one = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const other = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const before = await bucketPair();
    const sig = await get(one, 'summary.sig');
    assert.equal(sha(sig.body), before.sig);
    await flip();
    const after = await bucketPair();
    assert.notEqual(after.summary, before.summary, 'the publish replaced the pair');
    const summary = await get(one, 'summary');
    assert.equal(summary.socket, sig.socket, 'the same connection');
    assert.equal(sha(summary.body), before.summary, 'the summary its summary.sig signs, not the newer one');
    assert.deepEqual(await pair(other), after, 'a connection asking now gets the new pair');
    assert.deepEqual(await pair(one), after, 'and so does the first one once it asks for summary.sig again');
  } finally {
    one.destroy();
    other.destroy();
  }
});

test('on S3, a pair mid-switch in the bucket (journal written, summary replaced, summary.sig not yet) is never served mixed', async () => {
  const agent = new http.Agent({ keepAlive: false });
  const current = await bucketPair();
  assert.deepEqual(await pair(agent), current);
  const [summary, sig] = [(await bucket.read('summary'))!.data, (await bucket.read('summary.sig'))!.data];
  await flip();
  const published = await bucketPair();
  assert.deepEqual(await pair(agent), published);
  // A hand-made switch back to the pair just replaced, stopped half-way.
  const j: Journal = { version: 1, id: 'test', time: new Date().toISOString(), changes: [], next: current, prev: published };
  await bucket.write(JOURNAL_KEY, Buffer.from(JSON.stringify(j)));
  await bucket.write('summary', summary);
  for (let i = 0; i < 3; i++) {
    const s = await get(agent, 'summary');
    const g = await get(agent, 'summary.sig');
    assert.deepEqual({ summary: sha(s.body), sig: sha(g.body) }, published, 'the previous pair while the switch is half done');
  }
  await bucket.write('summary.sig', sig);
  assert.deepEqual(await pair(agent), current, 'the new pair once both files switched');
  await bucket.remove(JOURNAL_KEY);
  assert.deepEqual(await pair(agent), current);
  // Put the repository back as the refs say.
  const head = await headOf();
  assert.equal((await moveRefs(cairn!.url, token, [{ ref: REF, commit: head, expected: head }])).status, 200);
});

test(`on S3, verifying pulls (${PULLS} or more) while the ref moves back and forth: not one torn summary pair`, { timeout: 600_000 }, async () => {
  const gpgAsc = await saveGpgKey(cairn!.url, path.join(work, 'gpg.asc'));
  let stop = false;
  let publishes = 0;
  const publisher = (async () => {
    while (!stop) {
      await flip();
      publishes++;
    }
  })();
  const failures: string[] = [];
  const kept = await Promise.all(Array.from({ length: CONCURRENCY }, (_, k) => verifyingClient(path.join(work, `kept-${k}`), cairn!.url, gpgAsc)));
  let next = 0;
  const slot = async (k: number) => {
    for (let i = next++; (i < PULLS || publishes < MIN_PUBLISHES) && i < 200; i = next++) {
      // Even pulls: a client that keeps its cached summary and signature; odd ones: a fresh client.
      const repo = i % 2 === 0 ? kept[k]! : await verifyingClient(path.join(work, `fresh-${i}`), cairn!.url, gpgAsc);
      const r = await ostreeResult(['pull', 'cairn', REF], { repo });
      if (r.code !== 0) failures.push(`pull ${i} (${i % 2 === 0 ? 'cached' : 'fresh'} client): ${r.stderr.trim()}`);
    }
  };
  try {
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, k) => slot(k)));
  } finally {
    stop = true;
    await publisher;
  }
  assert.ok(publishes >= MIN_PUBLISHES, `the ref moved while the pulls ran (${publishes} publishes)`);
  assert.deepEqual(failures, [], `${failures.length} of ${next} pulls failed across ${publishes} publishes`);
});
