// `cairn serve --storage s3://BUCKET/PREFIX`: repositories and server state in an S3-compatible
// store (a real Ceph RADOS Gateway: scripts/with-ceph.sh, or test/s3/ceph.ts starts one), the data
// folder only local scratch. `cairn push` publishes through it and the stock `ostree pull` verifies
// commit and summary signatures through it.

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { S3Backend } from '../../storage/backends/s3';
import { objectKey, ObjectType } from '../../storage/objects/types';
import { jobsSettled, startCairn, type CairnProcess } from '../helpers/cairn-process';
import { commitTree, initRepo, makeSourceTree, makeTempDir, removeTempDirs } from '../helpers/ostree';
import { cli, saveGpgKey, verifyingPull } from '../e2e/publish-helpers';
import { emptyPrefix, freshPrefix, s3ClientEnv, s3TestStore, type S3TestStore } from './ceph';

const REF = 'os/s3';
const SECRET = 'cairn-s3-e2e-token-secret-0123456789abcdef';
let store: S3TestStore;
let prefix: string;
let work: string;
let cairn: CairnProcess | undefined;

before(async () => {
  store = await s3TestStore();
  prefix = freshPrefix('serve');
  work = await makeTempDir('cairn-serve-s3-');
});

after(async () => {
  await cairn?.stop();
  await emptyPrefix(store, prefix).catch(() => undefined);
  await removeTempDirs();
});

test('cairn serve --storage s3://…: cairn push publishes through it, the stock client pulls and verifies through it', async () => {
  const env = {
    ...s3ClientEnv(store),
    CAIRN_TOKEN_SECRET: SECRET,
  };
  const location = `s3://${store.bucket}/${prefix.replace(/\/$/, '')}`;
  const scratch = path.join(work, 'scratch');
  cairn = await startCairn({ dataDir: scratch, extraArgs: ['--storage', location], env });

  const local = await initRepo(path.join(work, 'local'), 'archive');
  const tree = await makeSourceTree(path.join(work, 'tree'), { seed: 71, bigFileBytes: 300_000 });
  const commit = await commitTree(local, { branch: REF, tree, subject: 'on S3', timestamp: 1_709_251_200 });
  const t = await cli(['token', '--scope', 'push', '--repo', 'main', '--prefix', 'os/', '--ttl', '1h', '--sub', 'e2e'], { CAIRN_TOKEN_SECRET: SECRET });
  assert.equal(t.code, 0, t.stderr);
  const push = await cli(['push', '--url', `${cairn.url}/repo/main`, '--token', t.stdout.trim(), '--repo', local, REF]);
  assert.equal(push.code, 0, push.stderr);

  const gpgAsc = await saveGpgKey(cairn.url, path.join(work, 'gpg.asc'));
  assert.equal(await verifyingPull(path.join(work, 'client'), cairn.url, gpgAsc, REF), commit);

  // Everything is in the bucket: the repository's objects, refs and summary, the signing keys.
  const b = new S3Backend(store.client, store.bucket, prefix);
  assert.ok(await b.stat(`repos/main/${objectKey(commit, ObjectType.Commit)}`), 'the commit object is in the bucket');
  assert.equal((await b.read(`repos/main/refs/heads/${REF}`))?.data.toString().trim(), commit);
  assert.ok(await b.stat('repos/main/summary.sig'));
  assert.ok(await b.stat('keys/main/gpg-secret.asc'), 'signing keys live in the store');
  // The delta policy's from-scratch delta to the new head was built (in the store) by the job queue.
  await jobsSettled(cairn.url);
  const deltas: string[] = [];
  for await (const k of b.list('repos/main/deltas')) deltas.push(k);
  assert.ok(deltas.some((k) => k.endsWith('/superblock')), `a delta superblock in the bucket: ${deltas.join(', ')}`);
  // ... and nothing of it in the local data folder.
  const local_ = await fsp.readdir(scratch).catch(() => [] as string[]);
  assert.ok(!local_.includes('repos') && !local_.includes('keys'), `scratch holds ${local_.join(', ')}`);
});
