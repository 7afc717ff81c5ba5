// A cluster worker's traffic forwarder (server/api/traffic.ts remoteTraffic): loose objects are
// batched, but a record that begins an update (superblock, loose commit) reaches the primary at once
// with what was pending before it, so objects another worker serves next are attributed to it. The
// two "workers" here are two forwarders feeding one primary recorder through serveTrafficCalls.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { localTraffic, remoteTraffic, serveTrafficCalls } from '../../server/api/traffic';
import type { ServiceCall } from '../../server/jobs/service';

const C = 'c'.repeat(64);
const obj = (i: number, ext: string): string => {
  const hex = i.toString(16).padStart(64, '0');
  return `objects/${hex.slice(0, 2)}/${hex.slice(2)}.${ext}`;
};

function primary(): { call: ServiceCall; calls: string[][]; service: ReturnType<typeof localTraffic> } {
  const service = localTraffic();
  const serve = serveTrafficCalls(service, async () => null);
  const calls: string[][] = [];
  const call: ServiceCall = (method, args) => {
    if (method === 'traffic.record') calls.push((args[0] as unknown[][]).map((r) => String(r[1])));
    return serve(method, args);
  };
  return { call, calls, service };
}

test('a loose commit and a superblock are forwarded at once, with what was pending before them; other objects wait for the batch', async () => {
  const p = primary();
  const w = remoteTraffic(p.call);
  w.record('os', 'summary', 10, 200, 'h1');
  w.record('os', obj(1, 'dirtree'), 10, 200, 'h1');
  assert.deepEqual(p.calls, [], 'loose objects are batched');
  w.record('os', `objects/${C.slice(0, 2)}/${C.slice(2)}.commit`, 10, 200, 'h1');
  assert.deepEqual(p.calls, [['summary', obj(1, 'dirtree'), `objects/${C.slice(0, 2)}/${C.slice(2)}.commit`]], 'sent at once, in order');
  w.record('os', `deltas/${C.slice(0, 2)}/${C.slice(2)}/superblock`, 10, 200, 'h2');
  assert.equal(p.calls.length, 2);
  w.record('os', obj(2, 'filez'), 10, 200, 'h1');
  assert.equal(p.calls.length, 2);
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(p.calls.length, 3, 'the rest within the batch interval');
});

test('objects a second worker serves right after the first served the commit are counted for that update', async () => {
  const p = primary();
  const a = remoteTraffic(p.call);
  const b = remoteTraffic(p.call);
  a.record('os', `objects/${C.slice(0, 2)}/${C.slice(2)}.commit`, 100, 200, 'host');
  for (let i = 1; i <= 5; i++) b.record('os', obj(i, 'filez'), 1000, 200, 'host');
  // b's refTraffic sends b's pending records before it asks.
  const t = await b.refTraffic('os', 'os/main', [{ checksum: C, version: '1.0' }]);
  assert.deepEqual(t.objects, { count: 5, bytes: 5000 }, JSON.stringify(t));
  assert.deepEqual(t.viaObjects.map((u) => [u.to, u.updates]), [[C, 1]]);
});
