// The update-traffic aggregator (storage/browse/traffic.ts): requests are
// classified into delta updates by pair, plain-object updates and loose
// objects (attributed to the update the same client began), per ref over a
// window of one-minute buckets, with bounded keys, repositories and clients.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { superblockKey, partKey } from '../../storage/deltas/format';
import { objectKey, ObjectType } from '../../storage/objects/types';
import { OTHER, TrafficRecorder } from '../../storage/browse/traffic';

const c = (n: number) => n.toString(16).padStart(2, '0').repeat(32);
const V1 = c(1);
const V2 = c(2);
const V3 = c(3);
const commits = [
  { checksum: V3, version: '3' },
  { checksum: V2, version: '2' },
  { checksum: V1, version: '1' },
];

function clock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

test('delta superblocks and parts count as updates through that delta, by from-version; 404 superblocks as missed', () => {
  const k = clock();
  const t = new TrafficRecorder({ now: k.now });
  t.record('main', superblockKey(V2, V3), 1000, 200, 'host-a');
  t.record('main', partKey(V2, V3, 0), 5000, 200, 'host-a');
  t.record('main', superblockKey(V2, V3), 1000, 200, 'host-b');
  t.record('main', superblockKey(V1, V3), 2000, 200, 'host-c');
  t.record('main', superblockKey(null, V3), 9000, 200, 'host-d');
  t.record('main', superblockKey(V1, V2), 0, 404, 'host-e');
  const r = t.refTraffic('main', 'os/main', commits);
  assert.deepEqual(
    r.viaDelta.map((d) => [d.from, d.fromVersion, d.to, d.toVersion, d.updates, d.bytes, d.missed]),
    [
      [V2, '2', V3, '3', 2, 7000, 0],
      [null, null, V3, '3', 1, 9000, 0],
      [V1, '1', V3, '3', 1, 2000, 0],
      [V1, '1', V2, '2', 0, 0, 1],
    ],
  );
  assert.equal(r.totals.deltaUpdates, 4);
  assert.equal(r.totals.deltaBytes, 18000);
  // Another ref's commits see none of it.
  assert.deepEqual(t.refTraffic('main', 'os/other', [{ checksum: c(9) }]).viaDelta, []);
  // Another repository neither.
  assert.deepEqual(t.refTraffic('other', 'os/main', commits).viaDelta, []);
});

test('a loose commit is an update through plain objects; the objects that follow count towards it for the same client', () => {
  const k = clock();
  const t = new TrafficRecorder({ now: k.now });
  t.record('main', 'summary', 700, 200, 'host-a');
  t.record('main', objectKey(V3, ObjectType.CommitMeta), 100, 200, 'host-a');
  t.record('main', objectKey(V3, ObjectType.Commit), 300, 200, 'host-a');
  t.record('main', objectKey(c(0xaa), ObjectType.DirTree), 400, 200, 'host-a');
  t.record('main', objectKey(c(0xbb), ObjectType.File), 4000, 200, 'host-a');
  t.record('main', objectKey(c(0xcc), ObjectType.File), 999, 200, 'unknown-host'); // no update begun: repository only
  t.record('main', objectKey(c(0xdd), ObjectType.File), 50, 200); // no client at all
  t.record('main', objectKey(c(0xee), ObjectType.File), 0, 404, 'host-a'); // not served
  const r = t.refTraffic('main', 'os/main', commits);
  assert.deepEqual(r.viaObjects.map((p) => [p.to, p.toVersion, p.updates, p.bytes]), [[V3, '3', 1, 300]]);
  assert.deepEqual(r.objects, { count: 2, bytes: 4400 });
  const repo = t.repoTraffic('main');
  assert.deepEqual(repo.objects, { count: 6, bytes: 300 + 100 + 400 + 4000 + 999 + 50 });
  assert.deepEqual(repo.other, { count: 1, bytes: 700 });
  assert.equal(repo.errors, 1);
  // A delta's fallback objects count towards the delta's target.
  t.record('main', superblockKey(V2, V3), 1000, 200, 'host-f');
  t.record('main', objectKey(c(0xff), ObjectType.File), 123, 200, 'host-f');
  assert.deepEqual(t.refTraffic('main', 'os/main', commits).objects, { count: 3, bytes: 4523 });
});

test('the window: buckets older than it drop out; a shorter window can be asked for', () => {
  const k = clock();
  const t = new TrafficRecorder({ now: k.now, windowMinutes: 10 });
  t.record('main', superblockKey(V2, V3), 1, 200);
  k.advance(5 * 60_000);
  t.record('main', superblockKey(V2, V3), 1, 200);
  assert.equal(t.refTraffic('main', 'r', commits).totals.deltaUpdates, 2);
  assert.equal(t.refTraffic('main', 'r', commits, 3).totals.deltaUpdates, 1);
  k.advance(6 * 60_000);
  assert.equal(t.refTraffic('main', 'r', commits).totals.deltaUpdates, 1, 'the first minute left the window');
  k.advance(60 * 60_000);
  assert.equal(t.refTraffic('main', 'r', commits).totals.deltaUpdates, 0);
  // Ring slots are reused without mixing minutes.
  t.record('main', superblockKey(V2, V3), 1, 200);
  assert.equal(t.refTraffic('main', 'r', commits).totals.deltaUpdates, 1);
  assert.ok(t.size().buckets <= 10);
});

test('memory stays bounded: distinct pairs, repositories and clients over the limits go to OTHER or are forgotten', () => {
  const k = clock();
  const t = new TrafficRecorder({ now: k.now, windowMinutes: 2, maxKeys: 4, maxRepos: 2, maxClients: 3 });
  for (let i = 0; i < 1000; i++) t.record('main', superblockKey(c(i % 200), V3), 1, 200, `client-${i}`);
  for (let i = 0; i < 50; i++) t.record(`repo-${i}`, 'summary', 1, 200);
  const s = t.size();
  assert.ok(s.keys <= 5 * 3, `keys: ${s.keys}`);
  assert.equal(s.clients, 3);
  const all = t.repoTraffic('main');
  assert.equal(all.deltas.reduce((n, d) => n + d.updates, 0), 1000, 'nothing is lost, only lumped');
  assert.ok(all.deltas.some((d) => d.from === OTHER));
  assert.equal(t.repoTraffic(OTHER).other.count, 49, 'repositories over the limit are lumped under OTHER');
  // Many minutes of traffic: still at most windowMinutes buckets.
  for (let m = 0; m < 100; m++) {
    k.advance(60_000);
    t.record('main', 'summary', 1, 200);
  }
  assert.ok(t.size().buckets <= 2);
});

test('a client forgotten after CLIENT_TTL_MS no longer gets objects attributed', () => {
  const k = clock();
  const t = new TrafficRecorder({ now: k.now });
  t.record('main', objectKey(V3, ObjectType.Commit), 1, 200, 'h');
  k.advance(11 * 60_000);
  t.record('main', objectKey(c(0x42), ObjectType.File), 10, 200, 'h');
  assert.deepEqual(t.refTraffic('main', 'r', commits).objects, { count: 0, bytes: 0 });
});
