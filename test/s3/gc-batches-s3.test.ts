// gc's deletions on S3 in batches (Backend.removeMany: DeleteObjects, 1,000 keys a request) against a
// real Ceph RADOS Gateway (scripts/with-ceph.sh, or test/s3/ceph.ts starts one): the requests the
// driver sends, a key the store refuses to delete (a bucket policy: RGW lists it in `Errors`) failing
// the call with IO, and gc's order across batches (a commit's .commitmeta and partial marker before
// the commit, every commit before any other object), counted on the requests themselves.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CreateBucketCommand, DeleteBucketPolicyCommand, PutBucketPolicyCommand, type S3Client } from '@aws-sdk/client-s3';
import { makeS3Client, S3Backend } from '../../storage/backends/s3';
import { CairnError } from '../../storage/errors';
import { gc } from '../../storage/maintenance/gc';
import { Repo } from '../../storage/repo/repo';
import { emptyPrefix, freshPrefix, s3TestStore, type S3TestStore } from './ceph';

let store: S3TestStore;
const prefixes: string[] = [];

before(async () => {
  store = await s3TestStore();
});

after(async () => {
  for (const p of prefixes) await emptyPrefix(store, p).catch(() => undefined);
});

/** The S3 requests a client sends: command name, and the keys of each DeleteObjects. */
interface Sent {
  commands: string[];
  deletes: string[][];
}

/** A client of the test store that records what it sends (the requests go to the store as they are). */
function recordingClient(): { client: S3Client; sent: Sent } {
  const client = makeS3Client(store.settings);
  const sent: Sent = { commands: [], deletes: [] };
  client.middlewareStack.add(
    (next, context) => async (args) => {
      sent.commands.push(context.commandName ?? '?');
      const input = args.input as { Delete?: { Objects?: Array<{ Key?: string }> } };
      if (context.commandName === 'DeleteObjectsCommand') sent.deletes.push((input.Delete?.Objects ?? []).map((o) => o.Key ?? ''));
      return next(args);
    },
    { step: 'initialize', name: 'cairnTestRecord' },
  );
  return { client, sent };
}

function fresh(what: string, client: S3Client = store.client, bucket = store.bucket): { backend: S3Backend; prefix: string } {
  const prefix = freshPrefix(what);
  if (bucket === store.bucket) prefixes.push(prefix);
  return { backend: new S3Backend(client, bucket, prefix), prefix };
}

const count = (sent: Sent, name: string) => sent.commands.filter((c) => c === name).length;

async function writeAll(b: S3Backend, keys: string[]): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < keys.length) await b.write(keys[next++]!, Buffer.from('garbage'));
    }),
  );
}

async function listAll(b: S3Backend, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const k of b.list(prefix)) out.push(k);
  return out.sort();
}

const hex = (i: number, salt: string) => `${salt}${i.toString(16)}`.padStart(64, '0');

test('removeMany on RGW: 1,001 keys are two DeleteObjects requests and no single DELETE; a key XML cannot carry is deleted by itself', async () => {
  const { client, sent } = recordingClient();
  const { backend } = fresh('remove-many', client);
  const keys = Array.from({ length: 1001 }, (_, i) => `objects/${(i % 7).toString(16).padStart(2, '0')}/${hex(i, 'a').slice(2)}.filez`);
  const odd = 'refs/heads/ctl\u0001char';
  await writeAll(backend, [...keys, odd, 'config']);
  assert.deepEqual(await listAll(backend), [...keys, odd, 'config'].sort());
  sent.commands.length = 0;
  await backend.removeMany([...keys, odd, 'objects/00/absent.filez']);
  assert.equal(count(sent, 'DeleteObjectsCommand'), 2, sent.commands.join(' '));
  assert.deepEqual(sent.deletes.map((d) => d.length).sort((a, b) => a - b), [2, 1000], 'the absent key is sent too: absent is no error');
  assert.equal(count(sent, 'DeleteObjectCommand'), 1, 'only the key with a control character goes by itself');
  assert.deepEqual(await listAll(backend), ['config']);
});

test('removeMany on RGW: a key the store refuses to delete (AccessDenied in Errors) fails the call with IO naming it; the others are gone', async () => {
  // A bucket of its own: a policy denying deletions below */protected/ (RGW applies it to the owner too).
  const bucket = 'cairn-tests-deny';
  await store.client.send(new CreateBucketCommand({ Bucket: bucket })).catch((e: unknown) => {
    const name = (e as { name?: string }).name;
    if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw e;
  });
  const { backend, prefix } = fresh('deny', store.client, bucket);
  const keys = ['objects/aa/1.filez', 'protected/objects/bb/2.filez', 'objects/cc/3.filez', 'protected/x'];
  await writeAll(backend, keys);
  await store.client.send(
    new PutBucketPolicyCommand({
      Bucket: bucket,
      Policy: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Deny', Principal: '*', Action: ['s3:DeleteObject'], Resource: [`arn:aws:s3:::${bucket}/${prefix}protected/*`] }] }),
    }),
  );
  try {
    await assert.rejects(backend.removeMany(keys), (e: unknown) => {
      assert.ok(e instanceof CairnError, String(e));
      assert.equal(e.code, 'IO');
      assert.match(e.message, /protected\/.*AccessDenied \(2 of 4 keys not deleted\)/);
      assert.deepEqual(
        (e.details?.failed as Array<{ key: string; code: string }>).map((f) => f.key).sort(),
        ['protected/objects/bb/2.filez', 'protected/x'],
      );
      return true;
    });
    assert.deepEqual(await listAll(backend), ['protected/objects/bb/2.filez', 'protected/x']);
    // remove() of one such key fails the same way
    await assert.rejects(backend.remove('protected/x'), (e: unknown) => e instanceof CairnError && e.code === 'IO');
  } finally {
    await store.client.send(new DeleteBucketPolicyCommand({ Bucket: bucket }));
  }
  await backend.removeMany(keys);
  assert.deepEqual(await listAll(backend), []);
});

test('gc on S3 deletes in DeleteObjects batches: each commit\'s .commitmeta and partial marker in an earlier request than the commit, every commit before any other object; old clock probes go', async () => {
  const { client, sent } = recordingClient();
  const { backend, prefix } = fresh('gc-batches', client);
  const repo = new Repo('main', backend);
  // No ref: everything below is garbage. 40 commits (30 with detached metadata, 20 with a partial
  // marker) and 1,300 other objects; gc does not read unreachable objects, so bytes are arbitrary.
  const commits = Array.from({ length: 40 }, (_, i) => hex(i, 'c'));
  const objectKey = (c: string, ext: string) => `objects/${c.slice(0, 2)}/${c.slice(2)}.${ext}`;
  const rest = Array.from({ length: 1300 }, (_, i) => objectKey(hex(i, 'f'), i % 3 === 0 ? 'dirtree' : 'filez'));
  const metas = commits.slice(0, 30).map((c) => objectKey(c, 'commitmeta'));
  const partials = commits.slice(10, 30).map((c) => `state/${c}.commitpartial`);
  // Clock probes a killed gc left (tmp/cairn-gc-clock-PID-HEX): removed once older than an hour; other tmp/ files stay.
  const probes = ['tmp/cairn-gc-clock-4242-0123456789ab', 'tmp/cairn-gc-clock-7-aaaaaaaaaaaa'];
  const others = ['tmp/cairn-gc-clock-notaprobe', 'tmp/other'];
  await writeAll(backend, [...commits.map((c) => objectKey(c, 'commit')), ...metas, ...partials, ...rest, ...probes, ...others]);
  sent.commands.length = 0;
  sent.deletes.length = 0;

  // An hour and a half ahead (this host's clock, as the store's is the same machine's here): every object and probe is old.
  const report = await gc(repo, { graceMs: 0, now: () => Date.now() + 90 * 60_000 });
  assert.equal(report.deletedObjects, commits.length + rest.length, 'the .commitmeta went with their commits (not counted)');
  assert.equal(report.deleted.commit, commits.length);
  const left = await listAll(backend);
  assert.deepEqual(
    left.filter((k) => k !== 'state/cairn/gc-epoch' && !/^tmp\/cairn-[a-z-]+\.lock$/.test(k)),
    [...others].sort(),
  );

  // The requests: no single DELETE of an object; the probes in one request of their own, first.
  assert.equal(count(sent, 'DeleteObjectCommand'), 0, sent.commands.join(' '));
  assert.deepEqual(sent.deletes[0]!.map((k) => k.slice(prefix.length)).sort(), [...probes].sort());
  const requestOf = new Map<string, number>();
  sent.deletes.forEach((keys, i) => keys.forEach((k) => requestOf.set(k.slice(prefix.length), i)));
  for (const c of commits) {
    const at = requestOf.get(objectKey(c, 'commit'));
    assert.ok(at !== undefined, `commit ${c} deleted`);
    assert.ok(requestOf.get(objectKey(c, 'commitmeta'))! < at, 'its .commitmeta in an earlier request');
    assert.ok(requestOf.get(`state/${c}.commitpartial`)! < at, 'its partial marker in an earlier request');
  }
  const lastCommit = Math.max(...commits.map((c) => requestOf.get(objectKey(c, 'commit'))!));
  for (const k of rest) assert.ok(requestOf.get(k)! > lastCommit, `${k} after every commit`);
  // The probes, the commits' metadata, the commits, 1,300 other objects in batches of at most 1,000.
  assert.ok(sent.deletes.every((d) => d.length <= 1000));
  assert.ok(count(sent, 'DeleteObjectsCommand') <= 6, `${count(sent, 'DeleteObjectsCommand')} DeleteObjects requests`);
});
