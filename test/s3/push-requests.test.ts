// S3 requests per pushed object (issue #13, push throughput to S3). `cairn push --jobs 4` of a fresh
// commit to `cairn serve --storage s3://…` on a real Ceph RGW, every S3 request of the server counted
// (bench/s3-count.ts preloaded, as bench:s3 does): one HEAD per object (objects/missing, the honest
// answer) and one PUT (create, If-None-Match: *), and nothing more per object: ingest asks no
// separate HEAD (create says whether the object was there), the ref update's completeness walk
// takes what this process just stored from its presence memo (storage/repo/presence.ts). It was
// 4.2 requests an object before (bench/results/s3-latest.json of 2026-11-30). With two workers the
// walk runs in one of them and finds only that one's uploads in its memo: at most one HEAD more an
// object (and a HEAD and a GET a dirtree).
// Also: on S3 an upload still replaces a corrupt stored copy (create fails its condition, the
// stored copy is checked, the verified bytes replace it) and keeps a sound one.

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { FsBackend } from '../../storage/backends/fs';
import { S3Backend } from '../../storage/backends/s3';
import { commitFolder } from '../../storage/import/folder';
import { parseObjectKey } from '../../storage/maintenance/reach';
import { ObjectType } from '../../storage/objects/types';
import { DEFAULT_INGEST_LIMITS, WHOLE_OBJECT_BYTES, ingestObject } from '../../storage/repo/ingest';
import { Repo } from '../../storage/repo/repo';
import { mainToken, S3_COUNTER, settledCounts, withoutPolicyDeltas } from './s3-counts';
import { e2eWorkers, startCairn, type CairnProcess } from '../helpers/cairn-process';
import { commitTree, initRepo, makeSourceTree, makeTempDir, pseudoRandomBytes, removeTempDirs } from '../helpers/ostree';
import { cli } from '../e2e/publish-helpers';
import { emptyPrefix, freshPrefix, s3ClientEnv, s3TestStore, type S3TestStore } from './ceph';

const REF = 'os/requests';
const SECRET = 'cairn-s3-push-requests-secret-0123456789abcdef';
let store: S3TestStore;
const prefixes: string[] = [];
let work: string;
let cairn: CairnProcess | undefined;

before(async () => {
  store = await s3TestStore();
  work = await makeTempDir('cairn-push-requests-');
});

after(async () => {
  await cairn?.stop();
  for (const p of prefixes) await emptyPrefix(store, p).catch(() => undefined);
  await removeTempDirs();
});



const OBJECT_CLASSES = /^(commit|dirtree|dirmeta|filez.*|commitmeta)$/;

test('a fresh push to cairn serve --storage s3://…: one HEAD and one PUT an object, ≤ 2.2 S3 requests an object in all (one worker)', async (t) => {
  const workers = e2eWorkers();
  const prefix = freshPrefix('push-requests');
  prefixes.push(prefix);
  const counts = path.join(work, 'counts');
  await fsp.mkdir(counts);
  const env = {
    ...s3ClientEnv(store),
    CAIRN_TOKEN_SECRET: SECRET,
    CAIRN_BENCH_S3_COUNTS: counts,
  };
  cairn = await startCairn({ dataDir: path.join(work, 'scratch'), extraArgs: ['--storage', `s3://${store.bucket}/${prefix.replace(/\/$/, '')}`], nodeArgs: ['--require', S3_COUNTER], env });

  // A tree of ~650 objects: the usual test tree (a 3 MiB file streamed, symlinks, odd names) and 600 small files in 30 folders.
  const extra: Record<string, Buffer> = {};
  for (let i = 0; i < 600; i++) extra[`d${i % 30}/f${i}`] = pseudoRandomBytes(9000 + i, 200 + (i % 50) * 40);
  const tree = await makeSourceTree(path.join(work, 'tree'), { seed: 13, extra });
  const local = await initRepo(path.join(work, 'local'), 'archive');
  await commitTree(local, { branch: REF, tree, subject: 'counted', timestamp: 1_709_251_200 });
  const token = (scope: string, more: string[] = []) => mainToken(SECRET, scope, more);
  // No policy delta after the push: its compile would read the objects back while we count.
  await withoutPolicyDeltas(cairn.url, await token('admin'));
  const push = await token('push', ['--prefix', 'os/']);

  const before = await settledCounts(counts);
  const r = await cli(['push', '--url', `${cairn.url}/repo/main`, '--token', push, '--repo', local, '--jobs', '4', '--json', REF]);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { objects: number; uploaded: number };
  const afterPush = await settledCounts(counts);

  const during = new Map<string, number>();
  for (const [k, v] of afterPush) if (v !== (before.get(k) ?? 0)) during.set(k, v - (before.get(k) ?? 0));
  const sum = (f: (op: string, cls: string) => boolean) => [...during].reduce((s, [k, v]) => (f(k.slice(0, k.indexOf(' ')), k.slice(k.indexOf(' ') + 1)) ? s + v : s), 0);
  const total = sum(() => true);
  const onObjects = sum((_op, cls) => OBJECT_CLASSES.test(cls));
  const dirtrees = (await fsp.readdir(path.join(local, 'objects'), { recursive: true })).filter((f) => f.endsWith('.dirtree')).length;
  const table = [...during].sort().map(([k, v]) => `${k}: ${v}`).join('\n');
  const perObject = total / out.uploaded;
  t.diagnostic(`${workers} worker(s): ${out.uploaded} objects uploaded, ${total} S3 requests (${perObject.toFixed(2)} an object), ${onObjects} on object keys`);

  assert.equal(out.uploaded, out.objects, 'a fresh push uploads everything');
  assert.ok(out.uploaded > 600, `${out.uploaded} objects`);
  // Every object written once: the PUTs are exactly the objects (and the .commitmeta the publish signs).
  assert.equal(sum((op, cls) => op === 'PutObject' && OBJECT_CLASSES.test(cls) && cls !== 'commitmeta'), out.uploaded, table);
  if (workers === '1') {
    // One HEAD (objects/missing) and one PUT an object; a few more for the push as a whole (the
    // streamed 3 MiB file's and the .commitmeta's presence checks, the publish reading its commit).
    assert.ok(onObjects <= 2 * out.uploaded + 12, `${onObjects} requests on objects for ${out.uploaded} objects:\n${table}`);
    assert.ok(perObject <= 2.2, `${perObject.toFixed(2)} S3 requests an object:\n${table}`);
  } else {
    // The walk's worker may have stored none of them: a HEAD more an object, a HEAD and a GET more a dirtree.
    assert.ok(onObjects <= 3 * out.uploaded + 2 * dirtrees + 12, `${onObjects} requests on objects for ${out.uploaded} objects:\n${table}`);
    assert.ok(perObject <= 3.3, `${perObject.toFixed(2)} S3 requests an object:\n${table}`);
  }
});

test('on S3 an upload replaces a corrupt stored copy and keeps a sound one (whole and streamed)', async () => {
  const prefix = freshPrefix('push-requests-replace');
  prefixes.push(prefix);
  const repo = await Repo.init('r', new S3Backend(store.client, store.bucket, prefix));
  const src = path.join(work, 'replace-src');
  await fsp.mkdir(path.join(src, 'd'), { recursive: true });
  await fsp.writeFile(path.join(src, 'd', 'small'), 'small file\n'.repeat(100));
  await fsp.writeFile(path.join(src, 'd', 'big'), pseudoRandomBytes(5, 2 * WHOLE_OBJECT_BYTES));
  const source = await Repo.init('s', new FsBackend(path.join(work, 'replace-source')));
  await commitFolder(source, src, null, { subject: 'c', timestamp: 1_760_000_000n });
  const objects: Array<{ key: string; checksum: string; type: ObjectType; bytes: Buffer }> = [];
  for await (const key of source.backend.list('objects')) {
    const o = parseObjectKey(key);
    if (o && o.type !== ObjectType.Commit) objects.push({ key, ...o, bytes: (await source.backend.read(key))!.data });
  }
  assert.ok(objects.some((o) => o.bytes.length > WHOLE_OBJECT_BYTES), 'one .filez goes the streamed way');
  const upload = (o: (typeof objects)[number]) => ingestObject(repo, o.checksum, o.type, Readable.from([o.bytes]), DEFAULT_INGEST_LIMITS, { wholeBytes: WHOLE_OBJECT_BYTES });
  for (const o of objects) {
    assert.equal((await upload(o)).stored, true, `${o.key}: stored`);
    assert.equal((await upload(o)).stored, false, `${o.key}: a sound copy is kept`);
    const bad = Buffer.from(o.bytes);
    bad[bad.length >> 1] ^= 0x40;
    await repo.backend.write(o.key, bad);
    assert.equal((await upload(o)).stored, true, `${o.key}: the corrupt copy was replaced`);
    assert.deepEqual((await repo.backend.read(o.key))!.data, o.bytes, o.key);
  }
  // A refused upload of a present object leaves the stored copy as it was.
  const small = objects.find((o) => o.type === ObjectType.File && o.bytes.length < 4096)!;
  const junk = Buffer.from(small.bytes);
  junk[junk.length - 1] ^= 0x01;
  await assert.rejects(upload({ ...small, bytes: junk }));
  assert.deepEqual((await repo.backend.read(small.key))!.data, small.bytes);
});
