import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CairnError } from '../../storage/errors';
import { S3Backend } from '../../storage/backends/s3';
import { JOURNAL_KEY } from '../../storage/repo/journal';
import { updateRefs } from '../../storage/repo/publish';
import { summaryRefs } from '../../storage/repo/recovery';
import { Repo } from '../../storage/repo/repo';
import { commitTree, initRepo, makeSourceTree, makeTempDir, removeTempDirs } from '../helpers/ostree';
import { emptyPrefix, freshPrefix, s3TestStore, type S3TestStore } from './ceph';

/**
 * The publish fence on S3 (HeldLock.confirm, storage/repo/mutex.ts confirmLocks): replica A holds the
 * repository's `refs` and `summary` locks and has read the refs, then stalls past its lease (here: its
 * lock records are broken into while its summary signer waits, as a waiter does once A's renewals stop
 * for a lease); replica B (another process) takes the locks over and publishes. When A resumes, it must
 * switch nothing: without the fence A would write its ref and a summary built from the refs it read
 * before B's publish, and the summary would lose B's ref. Also: confirm() renews a held lease, and
 * rejects with CONFLICT once the lock was taken over.
 */
let store: S3TestStore;
let work: string;
const prefixes: string[] = [];
const LEASE_MS = 600;

before(async () => {
  store = await s3TestStore();
  work = await makeTempDir('cairn-s3-fence-');
});
after(async () => {
  for (const p of prefixes) await emptyPrefix(store, p);
  await removeTempDirs();
});

function fresh(what: string): S3Backend {
  const prefix = freshPrefix(what);
  prefixes.push(prefix);
  return new S3Backend(store.client, store.bucket, prefix, { lockLeaseMs: LEASE_MS });
}

/** Someone else's record over the lock `name` (a waiter that broke in after a lease without renewal). */
async function breakIn(b: S3Backend, name: string): Promise<void> {
  const key = `tmp/cairn-${name}.lock`;
  const cur = (await b.read(key))!;
  const rec = Buffer.from(JSON.stringify({ host: 'breaker', pid: 1, token: 'breaker', state: 'released', seq: 0 }) + '\n');
  assert.ok(await b.compareAndSwap(key, rec, cur.info.version), `broke into ${name}`);
}

test('confirm() renews a held lease, and rejects with CONFLICT once the lock was taken over', async () => {
  const b = fresh('confirm');
  const release = await b.lock('refs');
  const before_ = (await b.stat('tmp/cairn-refs.lock'))!.version;
  await release.confirm();
  assert.notEqual((await b.stat('tmp/cairn-refs.lock'))!.version, before_, 'the record was renewed');
  await breakIn(b, 'refs');
  await assert.rejects(release.confirm(), (e: unknown) => e instanceof CairnError && e.code === 'CONFLICT');
  await release();
  await assert.rejects(release.confirm(), (e: unknown) => e instanceof CairnError && e.code === 'CONFLICT', 'released: not ours');
});

const CHILD = `
const [dist, settingsJson, bucket, prefix, commit] = process.argv.slice(1);
const { S3Backend, makeS3Client } = require(dist + '/storage/backends/s3');
const { Repo } = require(dist + '/storage/repo/repo');
const { updateRefs } = require(dist + '/storage/repo/publish');
const b = new S3Backend(makeS3Client(JSON.parse(settingsJson)), bucket, prefix, { lockLeaseMs: ${LEASE_MS} });
updateRefs(new Repo('r', b), [{ ref: 'os/b', commit, expected: null }], { actor: 'replica-b' })
  .then(() => process.stdout.write('PUBLISHED'), (e) => { process.stdout.write('ERROR ' + e.message); process.exitCode = 1; });
`;

function replicaB(prefix: string, commit: string): Promise<{ code: number | null; out: string }> {
  const dist = path.resolve(__dirname, '../..');
  const child = spawn(process.execPath, ['-e', CHILD, dist, JSON.stringify(store.settings), store.bucket, prefix, commit], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out })));
}

/** Every file of a local archive repository's objects/ into the backend. */
async function copyObjects(local: string, b: S3Backend): Promise<void> {
  const root = path.join(local, 'objects');
  for (const dir of await fsp.readdir(root)) {
    for (const f of await fsp.readdir(path.join(root, dir))) await b.write(`objects/${dir}/${f}`, await fsp.readFile(path.join(root, dir, f)));
  }
}

test('a replica that lost its locks while stalled switches nothing; the replica that took them over published, and the summary lists its ref', async () => {
  const local = await initRepo(path.join(work, 'local'), 'archive');
  const ca = await commitTree(local, { branch: 'os/a', tree: await makeSourceTree(path.join(work, 'ta'), { seed: 501, bigFileBytes: 5_000 }), timestamp: 1_709_251_200 });
  const cb = await commitTree(local, { branch: 'os/b', tree: await makeSourceTree(path.join(work, 'tb'), { seed: 502, bigFileBytes: 5_000 }), timestamp: 1_709_251_201 });
  const b = fresh('fence');
  const repo = await Repo.init('r', b);
  await copyObjects(local, b);

  let published: { code: number | null; out: string } | undefined;
  const stalled = updateRefs(repo, [{ ref: 'os/a', commit: ca, expected: null }], {
    actor: 'replica-a',
    signer: {
      signCommit: async () => Buffer.from([]),
      // Inside A's critical section, after it read the refs and built its summary: A "stalls" here.
      signSummary: async () => {
        await breakIn(b, 'refs');
        await breakIn(b, 'summary');
        published = await replicaB(b.prefix, cb);
        return Buffer.from([]);
      },
    },
  });
  await assert.rejects(stalled, (e: unknown) => e instanceof CairnError && e.code === 'CONFLICT' && /taken over/.test(e.message));
  assert.deepEqual(published, { code: 0, out: 'PUBLISHED' });

  assert.deepEqual(Object.fromEntries(await repo.listRefs()), { 'os/b': cb }, "only B's ref moved");
  const summary = summaryRefs((await b.read('summary'))!.data);
  assert.deepEqual(Object.fromEntries(summary!.refs), { 'os/b': cb }, 'the summary is B’s, listing the refs');
  assert.equal(await b.stat(JOURNAL_KEY), null, 'no journal left');
});
