// The background scrub and scheduled maintenance.
//  - storage: a scrub verifies every object at its rate, stops and resumes at its saved position
//    (no object verified twice in a pass, none skipped), and quarantines a corrupt object;
//  - end to end (`cairn serve`, also --workers 2: the scrub runs in the primary): maintenance.scrub
//    set through PATCH settings; a flipped .filez byte is found, quarantined (the read path answers
//    404 from then on), logged at error, told to a webhook (scrub.corrupt, signed), counted in
//    /metrics and shown by GET /api/repos/NAME/scrub;
//  - scheduled gc as a `maintenance` job visible in GET /api/jobs; validation of the settings; a
//    restart does not run it again before `every`.
//
// Run: npx tsc -p . && node --test dist/test/maintenance/scrub.test.js

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { FsBackend } from '../../storage/backends/fs';
import { QUARANTINE_PREFIX } from '../../storage/maintenance/fsck';
import { readScrubStatus, scrub } from '../../storage/maintenance/scrub';
import { decodeDirTree } from '../../storage/objects/dirtree';
import { ObjectType, objectKey } from '../../storage/objects/types';
import { Repo } from '../../storage/repo/repo';
import { startCairn } from '../helpers/cairn-process';
import { ostree, ostreeResult, pseudoRandomBytes, removeTempDirs } from '../helpers/ostree';
import { startReceiver } from '../webhooks/receiver';
import { cairnOk, commitVersion, objectNames, ownedData } from './helpers';

after(removeTempDirs);

/** The checksum of file `name` in the root of `commit`. */
async function rootFile(dir: string, commit: string, name: string): Promise<string> {
  const r = new Repo('x', new FsBackend(dir));
  const root = decodeDirTree((await r.readMetadata((await r.readCommit(commit))!.rootTree, ObjectType.DirTree))!);
  return root.files.find((f) => f.name === name)!.checksum;
}

async function flip(dir: string, checksum: string): Promise<void> {
  const file = path.join(dir, objectKey(checksum, ObjectType.File));
  const data = await fsp.readFile(file);
  data[data.length - 10] ^= 0x55;
  await fsp.writeFile(file, data);
}

test('scrub: at its rate, resumes at its position (every object once a pass), quarantines what is corrupt', async () => {
  const { work, repo: dir } = await ownedData('cairn-scrub-unit-');
  const c1 = await commitVersion(work, dir, 'os/a', 1);
  await commitVersion(work, dir, 'os/a', 2, { parent: c1 });
  const bad = await rootFile(dir, c1, 'v1.bin');
  await flip(dir, bad);
  const all = await objectNames(dir);
  const repo = new Repo('main', new FsBackend(dir));

  // First run: stopped after 5 objects.
  const ctl = new AbortController();
  let seen = 0;
  const rate = { objectsPerSecond: 50 };
  const t0 = performance.now();
  await scrub(repo, { rate: () => rate, maxFileSize: 1 << 30, signal: ctl.signal, onObject: () => ++seen === 5 && ctl.abort() });
  const took = performance.now() - t0;
  assert.ok(took >= 4 * 20 - 5, `5 objects at 50/s take at least ~80 ms, took ${took.toFixed(0)}`);
  let status = await readScrubStatus(repo);
  assert.equal(status.passObjects, 5);
  const sorted = all.map((n) => `objects/${n}`).sort();
  assert.equal(status.position, sorted[4], 'the position is the fifth key in order');
  assert.equal(status.lastPass, null);

  // Second run: resumes there and finishes the pass (stopped right after its last object).
  const ctl2 = new AbortController();
  const found: Array<{ object: string; quarantinedTo: string }> = [];
  let more = 0;
  await scrub(repo, {
    rate: () => ({ objectsPerSecond: 2000 }),
    maxFileSize: 1 << 30,
    signal: ctl2.signal,
    onObject: () => ++more === all.length - 5 && ctl2.abort(),
    onCorrupt: (f) => found.push(f),
  });
  status = await readScrubStatus(repo);
  assert.equal(more, all.length - 5, 'no object verified twice');
  assert.ok(status.lastPass, JSON.stringify(status));
  assert.equal(status.lastPass!.objects, all.length, 'every object once in the pass');
  assert.equal(status.lastPass!.corrupt, 1);
  assert.equal(status.passes, 1);
  assert.equal(status.position, null);
  assert.deepEqual(found.map((f) => f.object), [`${bad}.filez`]);
  assert.deepEqual(status.findings.map((f) => f.object), [`${bad}.filez`]);
  assert.ok(found[0]!.quarantinedTo.startsWith(`${QUARANTINE_PREFIX}/`));
  assert.ok(await fsp.stat(path.join(dir, found[0]!.quarantinedTo)), 'in the quarantine');
  await assert.rejects(fsp.stat(path.join(dir, objectKey(bad, ObjectType.File))), 'gone from objects/');
  // No more rate: the scrub stops at once.
  await scrub(repo, { rate: () => null, maxFileSize: 1 << 30, signal: new AbortController().signal });
});

test('background scrub in cairn serve: corrupt object quarantined, 404 on the read path, logged, webhook, metrics, status API', async () => {
  const { work, data, repo: dir } = await ownedData('cairn-scrub-e2e-');
  const c1 = await commitVersion(work, dir, 'os/a', 1, { size: 20_000 });
  const bad = await rootFile(dir, c1, 'v1.bin');
  const key = objectKey(bad, ObjectType.File);
  const admin = (await cairnOk(['token', '--data', data, '--scope', 'admin', '--repo', 'main', '--ttl', '1h'])).stdout.trim();
  const secret = 'scrub-webhook-secret-42';
  const rx = await startReceiver(secret);
  const server = await startCairn({ dataDir: data, env: { CAIRN_MAINTENANCE_TICK_MS: '100' } });
  try {
    const call = async (method: string, p: string, body?: unknown) => {
      const res = await fetch(`${server.url}${p}`, { method, headers: { authorization: `Bearer ${admin}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
      return { status: res.status, body: (await res.json()) as Record<string, any> };
    };
    assert.equal((await fetch(`${server.url}/repo/main/${key}`)).status, 200, 'served while sound');
    const off = await call('GET', '/api/repos/main/scrub');
    assert.equal(off.status, 200);
    assert.equal(off.body.enabled, false, 'off by default');
    assert.equal((await call('PUT', '/api/repos/main/webhooks', { hooks: [{ id: 'ops', url: rx.url, secret, events: ['scrub.corrupt'] }] })).status, 200);
    await flip(dir, bad);
    const set = await call('PATCH', '/api/repos/main/settings', { maintenance: { scrub: { objectsPerSecond: 500 } } });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    assert.deepEqual(set.body.maintenance, { scrub: { objectsPerSecond: 500 } });

    const [hook] = await rx.waitFor(1, 30_000);
    assert.ok(hook!.signatureOk);
    assert.equal(hook!.json.event, 'scrub.corrupt');
    assert.equal(hook!.json.object, `${bad}.filez`);
    assert.equal((await fetch(`${server.url}/repo/main/${key}`)).status, 404, 'never served again');
    let status: Record<string, any> = {};
    for (let i = 0; i < 200; i++) {
      status = (await call('GET', '/api/repos/main/scrub')).body;
      if (status.lastPass) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(status.enabled, true);
    assert.equal(status.lastPass.corrupt, 1, JSON.stringify(status));
    assert.equal(status.findings[0].object, `${bad}.filez`);
    assert.ok(status.totalObjects >= status.lastPass.objects);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /^cairn_scrub_corrupt_total 1$/m);
    assert.match(metrics, /^cairn_scrub_objects_total [1-9]/m);
    assert.match(server.output(), /scrub found a corrupt object/);
    assert.match(server.output(), /"level":"?(error|50)/);

    // Off again: the scrub stops (its status stays).
    assert.equal((await call('PATCH', '/api/repos/main/settings', { maintenance: { scrub: null } })).body.maintenance.scrub, undefined);
    await new Promise((r) => setTimeout(r, 500));
    const a = (await call('GET', '/api/repos/main/scrub')).body;
    await new Promise((r) => setTimeout(r, 500));
    const b = (await call('GET', '/api/repos/main/scrub')).body;
    assert.equal(a.enabled, false);
    assert.equal(a.totalObjects, b.totalObjects, 'stopped');
  } finally {
    await server.stop();
    await rx.close();
  }
});

test('scheduled gc runs as a maintenance job (GET /api/jobs), settings validated, not re-run early after a restart', async () => {
  const { work, data, repo: dir } = await ownedData('cairn-sched-');
  await commitVersion(work, dir, 'os/a', 1);
  const junkDir = path.join(work, 'junk');
  await fsp.mkdir(junkDir, { recursive: true });
  await fsp.writeFile(path.join(junkDir, 'junk.bin'), pseudoRandomBytes(77, 5000));
  await ostree(['commit', '--orphan', '--no-bindings', `--tree=dir=${junkDir}`, '--subject=junk'], { repo: dir });
  const before = (await objectNames(dir)).length;
  const admin = (await cairnOk(['token', '--data', data, '--scope', 'admin', '--repo', 'main', '--ttl', '1h'])).stdout.trim();
  const foreign = path.join(data, 'repos', 'foreign');
  await fsp.mkdir(foreign, { recursive: true });
  await ostree(['init', '--mode=archive'], { repo: foreign });
  const adminForeign = (await cairnOk(['token', '--data', data, '--scope', 'admin', '--repo', 'foreign', '--ttl', '1h'])).stdout.trim();
  const env = { CAIRN_MAINTENANCE_TICK_MS: '100' };
  let server = await startCairn({ dataDir: data, env });
  const patch = async (repo: string, tok: string, maintenance: unknown) => {
    const res = await fetch(`${server.url}/api/repos/${repo}/settings`, { method: 'PATCH', headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, body: JSON.stringify({ maintenance }) });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };
  const maintenanceJobs = async () => ((await (await fetch(`${server.url}/api/jobs?repo=main`)).json()) as { jobs: any[] }).jobs.filter((j) => j.kind === 'maintenance');
  try {
    for (const bad of [{ gc: { every: '10s' } }, { gc: { every: 'often' } }, { prune: { every: '1h' } }, { scrub: { objectsPerSecond: 0 } }, { fsck: { every: '1h' } }, { gc: { every: '1h', extra: 1 } }]) {
      const r = await patch('main', admin, bad);
      assert.equal(r.status, 400, JSON.stringify(bad) + JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'INVALID_ARGUMENT');
    }
    assert.equal((await patch('foreign', adminForeign, { gc: { every: '1h' } })).body.error?.code, 'NOT_OWNED');
    const ok = await patch('main', admin, { gc: { grace: '0s', every: '1h' } });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    let jobs: any[] = [];
    for (let i = 0; i < 300 && !jobs.some((j) => j.state === 'done' || j.state === 'failed'); i++) {
      await new Promise((r) => setTimeout(r, 50));
      jobs = await maintenanceJobs();
    }
    assert.equal(jobs.length, 1, JSON.stringify(jobs));
    assert.equal(jobs[0].state, 'done', JSON.stringify(jobs[0]));
    assert.deepEqual(jobs[0].params, { repo: 'main', task: 'gc' });
    assert.equal(jobs[0].source, 'schedule');
    assert.ok(jobs[0].result.deletedObjects >= 3, JSON.stringify(jobs[0].result));
    assert.equal((await objectNames(dir)).length, before - jobs[0].result.deletedObjects);
    assert.equal((await ostreeResult(['fsck'], { repo: dir })).code, 0);
  } finally {
    await server.stop();
  }
  // Restarted: it ran less than `every` ago, so it does not run again.
  server = await startCairn({ dataDir: data, env });
  try {
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(await maintenanceJobs(), []);
  } finally {
    await server.stop();
  }
});
