// The presence memo (storage/repo/presence.ts): a push's uploads (ingestObject) enter what they
// stored, verified, and the ref update's completeness walk (walkCommitTree) takes it as present
// without asking the store; but never an object that is gone after the memo's TTL, nor one this
// process removed (gc clears the store's entries when it starts) or another process's gc may have
// removed (each deleting round changes the store's gc epoch), nor one fsck --repair or the
// scrub quarantined (in any process: the walk lists the quarantine first), nor one an upload only
// found already stored (its age is unknown).

import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import type { Backend } from '../../storage/backends/backend';
import { FsBackend } from '../../storage/backends/fs';
import { commitFolder } from '../../storage/import/folder';
import { gc } from '../../storage/maintenance/gc';
import { QUARANTINE_PREFIX, quarantine } from '../../storage/maintenance/fsck';
import { parseObjectKey } from '../../storage/maintenance/reach';
import { decodeCommit } from '../../storage/objects/commit';
import { decodeDirTree } from '../../storage/objects/dirtree';
import { ObjectType, objectKey } from '../../storage/objects/types';
import { objectName, walkCommitTree } from '../../storage/repo/closure';
import { ingestObject, DEFAULT_INGEST_LIMITS, WHOLE_OBJECT_BYTES } from '../../storage/repo/ingest';
import { GC_EPOCH_KEY, MAX_KEPT_BYTES, PRESENCE_TTL_MS, PresenceMemo, readGcEpoch } from '../../storage/repo/presence';
import { Repo } from '../../storage/repo/repo';
import { makeTempDir, removeTempDirs } from '../helpers/ostree';
import { CountingRepo } from '../helpers/counting-repo';

let work: string;
let source: Repo;
let commit: string;
/** Every object of the commit, as stored in the source repository. */
let objects: Array<{ key: string; checksum: string; type: ObjectType; bytes: Buffer }>;


before(async () => {
  work = await makeTempDir('cairn-presence-');
  const src = path.join(work, 'src');
  for (let i = 0; i < 5; i++) {
    await fsp.mkdir(path.join(src, `d${i}`, 'sub'), { recursive: true });
    await fsp.writeFile(path.join(src, `d${i}`, 'sub', 'f'), `file ${i}\n`.repeat(i + 1));
    await fsp.writeFile(path.join(src, `d${i}`, 'g'), `g ${i}\n`);
  }
  source = await Repo.init('src', new FsBackend(path.join(work, 'source')));
  commit = (await commitFolder(source, src, null, { subject: 'presence', timestamp: 1_760_000_000n })).commit;
  objects = [];
  for await (const key of source.backend.list('objects')) {
    const o = parseObjectKey(key);
    if (o) objects.push({ key, ...o, bytes: (await source.backend.read(key))!.data });
  }
  assert.ok(objects.length > 20, `${objects.length} objects`);
});

after(removeTempDirs);

let n = 0;
/**
 * A fresh repository (its own location, so its own memo entries) with the commit's objects uploaded
 * into it, after the store's gc epoch was read (as objects/missing does before a push's uploads).
 */
async function pushed(opts: { readEpoch?: boolean } = {}): Promise<{ repo: CountingRepo; dir: string }> {
  const dir = path.join(work, `target-${n++}`);
  await Repo.init('t', new FsBackend(dir));
  const repo = new CountingRepo('t', new FsBackend(dir));
  if (opts.readEpoch !== false) await readGcEpoch(repo.backend);
  for (const o of objects) {
    const r = await ingestObject(repo, o.checksum, o.type, Readable.from([o.bytes]), DEFAULT_INGEST_LIMITS, { wholeBytes: WHOLE_OBJECT_BYTES });
    assert.equal(r.stored, true);
  }
  repo.looks = 0;
  return { repo, dir };
}

async function missingOf(repo: Repo): Promise<string[]> {
  return (await walkCommitTree(repo, commit)).missing.map(objectName).sort();
}

function pick(type: ObjectType): { key: string; checksum: string; type: ObjectType } {
  return objects.find((o) => o.type === type)!;
}

test('the walk takes what the uploads of this process just stored from the memo: no look at the store', async () => {
  const { repo } = await pushed();
  const walk = await walkCommitTree(repo, commit);
  assert.deepEqual(walk.missing, []);
  assert.equal(walk.objects.length, objects.length);
  assert.equal(repo.looks, 0, 'no stat and no read: the commit and dirtrees came with their bytes, the rest as present');
});

test('an object quarantined (fsck --repair, the scrub), by this or another process, is missing at once', async () => {
  const { repo, dir } = await pushed();
  const file = pick(ObjectType.File);
  // A leaf dirtree (its files are listed nowhere else once it is gone).
  const root = decodeDirTree(objects.find((o) => o.checksum === decodeCommit(objects.find((x) => x.type === ObjectType.Commit)!.bytes).rootTree)!.bytes);
  const d0 = decodeDirTree(objects.find((o) => o.checksum === root.dirs[0]!.treeChecksum)!.bytes);
  const leaf = d0.dirs[0]!.treeChecksum;
  // This process's repository object.
  await quarantine(repo, file.key, `${QUARANTINE_PREFIX}/test/${objectName(file)}`);
  assert.deepEqual(await missingOf(repo), [objectName(file)]);
  // Another instance over the same folder, as another process would be (cairn fsck --repair).
  const other = new Repo('t', new FsBackend(dir));
  await quarantine(other, objectKey(leaf, ObjectType.DirTree), `${QUARANTINE_PREFIX}/test/${leaf}.dirtree`);
  assert.deepEqual(await missingOf(repo), [objectName(file), `${leaf}.dirtree`].sort());
});

test('gc in this process: the memo of the store is cleared when it starts, so what it deleted is missing', async () => {
  const { repo } = await pushed();
  // No ref points at the commit yet (a push in flight) and a grace of 0: gc takes it all.
  const report = await gc(repo, { graceMs: 0 });
  assert.equal(report.deletedObjects, objects.length, JSON.stringify(report));
  assert.deepEqual(await missingOf(repo), [`${commit}.commit`]);
});

test('gc in another process: each deleting round changes the store\'s gc epoch, and the walk trusts no entry of an earlier one', async () => {
  const { repo, dir } = await pushed();
  const file = pick(ObjectType.File);
  // What another process's gc round does: a new epoch, then deletions (this process's memo is not told).
  await new FsBackend(dir).write(GC_EPOCH_KEY, Buffer.from('another-process-round\n'));
  await fsp.rm(path.join(dir, file.key));
  assert.deepEqual(await missingOf(repo), [objectName(file)]);
  assert.ok(repo.looks > 0, 'the store was asked');
});

test('uploads made before this process read the store\'s gc epoch are not trusted', async () => {
  const { repo } = await pushed({ readEpoch: false });
  assert.deepEqual(await missingOf(repo), []);
  assert.ok(repo.looks > 0, 'the store was asked');
});

test('after the TTL the walk asks the store again: an object removed behind Cairn\'s back is missing', async (t) => {
  const { repo, dir } = await pushed();
  const file = pick(ObjectType.File);
  const meta = pick(ObjectType.DirMeta);
  await fsp.rm(path.join(dir, file.key));
  await fsp.rm(path.join(dir, meta.key));
  // Within the TTL the memo answers (gc's grace is what guarantees an upload that young is still there).
  assert.deepEqual(await missingOf(repo), []);
  // One TTL later (the memo's clock is performance.now()).
  const real = performance.now.bind(performance);
  t.mock.method(performance, 'now', () => real() + PRESENCE_TTL_MS);
  assert.deepEqual(await missingOf(repo), [objectName(file), objectName(meta)].sort());
});

test('an upload that finds its object already stored does not enter it: its age is unknown', async () => {
  const dir = path.join(work, `target-${n++}`);
  const repo = await Repo.init('t', new FsBackend(dir));
  const file = pick(ObjectType.File);
  await repo.backend.write(file.key, objects.find((o) => o.key === file.key)!.bytes); // stored by someone else, long ago maybe
  for (const o of objects) await ingestObject(repo, o.checksum, o.type, Readable.from([o.bytes]), DEFAULT_INGEST_LIMITS, { wholeBytes: WHOLE_OBJECT_BYTES });
  await fsp.rm(path.join(dir, file.key));
  assert.deepEqual(await missingOf(repo), [objectName(file)]);
});

test('PresenceMemo: entries end at the TTL, per store, forgotten one by one or by store, bounded', () => {
  let now = 1000;
  const m = new PresenceMemo({ ttlMs: 100, maxEntries: 3, now: () => now });
  const a = { location: 'a' } as Backend;
  const b = { location: 'b' } as Backend;
  m.noteEpoch(a, 'e1');
  m.noteEpoch(b, 'e1');
  const at = m.mark(a);
  m.stored(a, 'objects/00/x.filez', at);
  m.stored(a, 'objects/00/y.dirtree', at, Buffer.from('tree'));
  now += 99;
  assert.deepEqual(m.get(a, 'objects/00/x.filez'), { bytes: null });
  assert.deepEqual(m.get(a, 'objects/00/y.dirtree', 'e1'), { bytes: Buffer.from('tree') });
  assert.equal(m.get(b, 'objects/00/x.filez'), undefined, 'another store does not see it');
  assert.equal(m.get(a, 'objects/00/x.filez', 'e2'), undefined, 'another gc epoch: not trusted');
  now += 1;
  assert.equal(m.get(a, 'objects/00/x.filez'), undefined, 'at the TTL: not trusted');
  assert.equal(m.holdsAny(a), true);
  assert.equal(m.get(a, 'objects/00/y.dirtree'), undefined);
  assert.equal(m.holdsAny(a), false, 'expired entries are dropped when met');

  // The epoch an entry carries is the one before its write, not one read while it was written.
  const before = m.mark(a);
  m.noteEpoch(a, 'e2');
  m.stored(a, 'written-across', before);
  assert.equal(m.get(a, 'written-across'), undefined, 'the epoch changed during the write: not trusted');

  m.stored(a, 'k1', m.mark(a));
  m.stored(b, 'k1', m.mark(b));
  m.stored(a, 'k2', m.mark(a), Buffer.alloc(MAX_KEPT_BYTES + 1));
  assert.deepEqual(m.get(a, 'k2'), { bytes: null }, 'large bytes are not kept');
  m.forget(a, 'k1');
  assert.equal(m.get(a, 'k1'), undefined);
  assert.ok(m.get(b, 'k1'));
  m.forgetStore(b);
  assert.equal(m.get(b, 'k1'), undefined);
  assert.equal(m.holdsAny(b), false);
  for (let i = 0; i < 5; i++) m.stored(a, `n${i}`, m.mark(a));
  assert.equal(m.get(a, 'n0'), undefined, 'bounded by count: the least recently used went');
  assert.ok(m.get(a, 'n4'));
});
