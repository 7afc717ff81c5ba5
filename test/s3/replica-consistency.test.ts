// How fresh one replica's answers are after another replica acknowledged a change, with two
// `cairn serve --storage s3://…` processes on one bucket prefix (a real Ceph RGW), each with
// CAIRN_E2E_WORKERS processes. The bounds (README "S3 storage"):
//   - refs, summary, summary.sig and the revocation list: none. Every request for them reads the
//     store (one HEAD, then the bytes unless the cached copy is of that version), so the first
//     request after the acknowledgement sees the change. (One exception, by design: a connection
//     that fetched summary.sig gets that signature's summary for 30 s, server/files/summary-pair.ts;
//     so summary.sig is fetched here on a connection of its own.)
//   - a repository's settings (private or not) and its existence: at most REPO_CHECK_MS. The read
//     path re-checks a repository it has seen within that time (registry.openFast); the API re-reads
//     them on every request.
// Before each change replica B is kept busy with the same requests, so what it holds in memory is as
// warm as it gets: the worst case for staleness.

import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { summaryRefs } from '../../storage/repo/recovery';
import { startCairn, type CairnProcess } from '../helpers/cairn-process';
import { commitTree, initRepo, makeSourceTree, makeTempDir, removeTempDirs } from '../helpers/ostree';
import { cli } from '../e2e/publish-helpers';
import { emptyPrefix, freshPrefix, s3ClientEnv, s3TestStore, type S3TestStore } from './ceph';

/** The read path's bound for a repository's existence and settings (server/files/answer.ts openFast). */
const REPO_CHECK_MS = 1000;
const SECRET = 'cairn-s3-replicas-token-secret-0123456789abcdef';
const REF = 'os/fresh';

let store: S3TestStore;
let prefix: string;
let work: string;
let a: CairnProcess | undefined;
let b: CairnProcess | undefined;

before(async () => {
  store = await s3TestStore();
  prefix = freshPrefix('replica-consistency');
  work = await makeTempDir('cairn-s3-fresh-');
  const env = {
    ...s3ClientEnv(store),
    CAIRN_TOKEN_SECRET: SECRET,
  };
  const location = `s3://${store.bucket}/${prefix.replace(/\/$/, '')}`;
  a = await startCairn({ dataDir: path.join(work, 'scratch-a'), extraArgs: ['--storage', location], env });
  b = await startCairn({ dataDir: path.join(work, 'scratch-b'), extraArgs: ['--storage', location], env });
});

after(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await emptyPrefix(store, prefix).catch(() => undefined);
  await removeTempDirs();
});

async function token(scope: string, extra: string[] = []): Promise<string> {
  const t = await cli(['token', '--scope', scope, '--ttl', '1h', '--sub', 'replicas', ...extra], { CAIRN_TOKEN_SECRET: SECRET });
  assert.equal(t.code, 0, t.stderr);
  return t.stdout.trim();
}

function jtiOf(tok: string): string {
  for (const part of tok.split('.')) {
    try {
      const claims = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as { jti?: unknown };
      if (typeof claims.jti === 'string') return claims.jti;
    } catch {
      // not the claims part
    }
  }
  throw new Error('no jti in the token');
}

/** Requests `url` every few ms until stopped: keeps a replica's in-memory state warm. */
function hammer(url: string, headers: Record<string, string> = {}): () => Promise<void> {
  let on = true;
  const loop = (async () => {
    while (on) await fetch(url, { headers }).then((r) => r.arrayBuffer()).catch(() => undefined);
  })();
  return async () => {
    on = false;
    await loop;
  };
}

/** A GET on a connection of its own, closed after it. */
function getAlone(url: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

async function bodyOf(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(url, { headers });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

test('two replicas on one bucket: refs, summary and revocations are never stale; settings at most the read path bound', async () => {
  const admin = await token('admin', ['--repo', '*']);
  const push = await token('push', ['--repo', 'main', '--prefix', 'os/']);
  const local = await initRepo(path.join(work, 'local'), 'archive');
  const commits: string[] = [];
  for (let i = 0; i < 3; i++) {
    const tree = await makeSourceTree(path.join(work, `tree${i}`), { seed: 300 + i, bigFileBytes: 20_000 });
    commits.push(await commitTree(local, { branch: REF, tree, subject: `v${i}`, timestamp: 1_709_251_200 + i }));
  }

  // Each publish goes through one replica while the other is busy serving the ref and summary; the
  // other's very next answers name the new commit, and its summary is the one in the store.
  for (let i = 0; i < commits.length; i++) {
    const [via, other] = i % 2 === 0 ? [a!, b!] : [b!, a!];
    const stop = [hammer(`${other.url}/repo/main/refs/heads/${REF}`), hammer(`${other.url}/repo/main/summary`)];
    const pushed = await cli(['push', '--url', `${via.url}/repo/main`, '--token', push, '--repo', local, commits[i]!, '--to', REF]);
    assert.equal(pushed.code, 0, pushed.stderr);
    const [ref, summary, sig] = await Promise.all([bodyOf(`${other.url}/repo/main/refs/heads/${REF}`), bodyOf(`${other.url}/repo/main/summary`), getAlone(`${other.url}/repo/main/summary.sig`)]);
    await Promise.all(stop.map((s) => s()));
    assert.equal(ref!.body.toString().trim(), commits[i], `push ${i}: the other replica's first answer for the ref`);
    assert.equal(summaryRefs(summary!.body)?.refs.get(REF), commits[i], `push ${i}: the other replica's first summary`);
    const fromVia = await bodyOf(`${via.url}/repo/main/summary`);
    assert.ok(fromVia.body.equals(summary!.body), `push ${i}: both replicas serve one summary`);
    const sigVia = await getAlone(`${via.url}/repo/main/summary.sig`);
    assert.ok(sigVia.body.equals(sig!.body), `push ${i}: both replicas serve one summary.sig`);
  }

  // A token revoked through A is refused by B on its next request.
  const reader = await token('admin', ['--repo', '*']);
  const auth = { authorization: `Bearer ${reader}` };
  assert.equal((await bodyOf(`${b!.url}/api/tokens/revoked`, auth)).status, 200);
  const stopRevoked = hammer(`${b!.url}/api/tokens/revoked`, auth);
  const revoke = await fetch(`${a!.url}/api/tokens/revoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
    body: JSON.stringify({ jti: jtiOf(reader), reason: 'replica test' }),
  });
  assert.equal(revoke.status, 200, await revoke.text());
  const afterRevoke = await bodyOf(`${b!.url}/api/tokens/revoked`, auth);
  await stopRevoked();
  assert.equal(afterRevoke.status, 401, 'B refuses the revoked token on the next request');

  // The repository made private through A: B's read path refuses anonymous reads once the bound passed.
  const stopSummary = hammer(`${b!.url}/repo/main/summary`);
  const patch = await fetch(`${a!.url}/api/repos/main/settings`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
    body: JSON.stringify({ private: true }),
  });
  assert.equal(patch.status, 200, await patch.text());
  const acked = Date.now();
  assert.equal((await bodyOf(`${b!.url}/api/repos/main/refs`)).status, 404, "B's API sees the change on its next request (a private repository: as one that does not exist)");
  await new Promise((r) => setTimeout(r, REPO_CHECK_MS + 200 - (Date.now() - acked)));
  const late = await Promise.all([bodyOf(`${b!.url}/repo/main/summary`), bodyOf(`${b!.url}/repo/main/refs/heads/${REF}`), bodyOf(`${b!.url}/repo/main/config`)]);
  await stopSummary();
  assert.deepEqual(late.map((r) => r.status), [404, 404, 404], 'anonymous reads from B after the bound');
  const withToken = await bodyOf(`${b!.url}/repo/main/refs/heads/${REF}`, { authorization: `Bearer ${admin}` });
  assert.equal(withToken.status, 200);
  assert.equal(withToken.body.toString().trim(), commits[commits.length - 1]);
});
