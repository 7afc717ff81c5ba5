// Update traffic end to end: a listening `cairn serve` (CAIRN_E2E_WORKERS processes: with 2, every
// worker forwards what it serves to the primary's one recorder) serves a repository made by the
// ostree CLI; a stock bare-user client pulls v1 (no delta exists: plain objects), then v2 through
// the v1→v2 static delta `ostree static-delta generate` made. GET /api/repos/NAME/traffic then
// counts one update through objects (to v1) and one through the delta (from v1, with its
// version), with the bytes served, and shows the delta's coverage of the ref's history.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { e2eWorkers, startCairn, type CairnProcess } from '../helpers/cairn-process';
import { addRemote, commitTree, deltaSuperblockPath, initRepo, makeSourceTree, makeTempDir, ostree, removeTempDirs, updateSummary } from '../helpers/ostree';
import type { TrafficAnswer } from '../../server/api/schema';

let work: string;
let repo: string;
let cairn: CairnProcess | undefined;
const src = { v1: '', v2: '' };

before(async () => {
  work = await makeTempDir('cairn-api-traffic-');
  const data = path.join(work, 'data');
  repo = await initRepo(path.join(data, 'repos', 'os'), 'archive');
  src.v1 = await makeSourceTree(path.join(work, 'src', 'v1'), { seed: 1, bigFileBytes: 300_000 });
  src.v2 = await makeSourceTree(path.join(work, 'src', 'v2'), { seed: 1, bigFileBytes: 300_000, extra: { 'new.txt': 'two\n' } });
  cairn = await startCairn({ dataDir: data });
});

after(async () => {
  await cairn?.stop();
  await removeTempDirs();
});

async function traffic(ref: string): Promise<TrafficAnswer> {
  const res = await fetch(`${cairn!.url}/api/repos/os/traffic?ref=${encodeURIComponent(ref)}`);
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as TrafficAnswer;
}

async function deltaBytes(from: string, to: string): Promise<number> {
  const dir = path.join(repo, path.dirname(deltaSuperblockPath(from, to)));
  let n = 0;
  for (const f of await fsp.readdir(dir)) n += (await fsp.stat(path.join(dir, f))).size;
  return n;
}

test(`traffic counts an update through plain objects and one through a delta, with bytes (--workers ${e2eWorkers()})`, async () => {
  const v1 = await commitTree(repo, { branch: 'os/main', tree: src.v1, subject: 'v1', timestamp: 1700000000, metadata: { version: '1.0' } });
  await updateSummary(repo);
  const client = await initRepo(path.join(work, 'client'), 'bare-user');
  await addRemote(client, 'cairn', `${cairn!.url}/repo/os`);
  await ostree(['pull', 'cairn', 'os/main'], { repo: client });

  const v2 = await commitTree(repo, { branch: 'os/main', tree: src.v2, subject: 'v2', timestamp: 1700000100, metadata: { version: '2.0' } });
  await ostree(['static-delta', 'generate', `--from=${v1}`, `--to=${v2}`], { repo });
  await updateSummary(repo);
  await ostree(['pull', '--require-static-deltas', 'cairn', 'os/main'], { repo: client });
  assert.equal((await ostree(['rev-parse', 'cairn:os/main'], { repo: client })).trim(), v2);

  // Records reach the recorder within a moment (a worker forwards loose objects in batches every
  // 50 ms, and the traffic request flushes only its own worker's): wait for everything asserted below.
  const complete = (x: TrafficAnswer): boolean => x.updates.length >= 2 && x.objects.count > 10 && x.objects.bytes > 100_000;
  let t = await traffic('os/main');
  for (let i = 0; i < 50 && !complete(t); i++) {
    await new Promise((r) => setTimeout(r, 100));
    t = await traffic('os/main');
  }
  const msg = JSON.stringify(t, null, 1);
  assert.equal(t.head, v2);
  assert.equal(t.headVersion, '2.0');
  const viaDelta = t.updates.filter((u) => u.via === 'delta');
  const viaObjects = t.updates.filter((u) => u.via === 'objects');
  assert.equal(viaDelta.length, 1, msg);
  assert.deepEqual([viaDelta[0]!.from, viaDelta[0]!.fromVersion, viaDelta[0]!.to, viaDelta[0]!.toVersion, viaDelta[0]!.count], [v1, '1.0', v2, '2.0', 1], msg);
  assert.equal(viaDelta[0]!.bytes, await deltaBytes(v1, v2), `the delta's files, each served once: ${msg}`);
  assert.equal(viaObjects.length, 1, msg);
  assert.deepEqual([viaObjects[0]!.from, viaObjects[0]!.to, viaObjects[0]!.toVersion, viaObjects[0]!.count], [null, v1, '1.0', 1], msg);
  assert.ok(viaObjects[0]!.bytes > 0, msg);
  assert.ok(t.objects.count > 10 && t.objects.bytes > 100_000, `the loose objects of the plain update: ${msg}`);
  assert.deepEqual(t.coverage, [{ commit: v1, version: '1.0', delta: { exists: true, size: await deltaBytes(v1, v2) } }]);
  assert.deepEqual(t.scratch, { exists: false, size: null });
  assert.equal(t.window.minutes, 60);
});
