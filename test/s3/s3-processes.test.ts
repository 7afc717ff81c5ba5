import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { S3Backend } from '../../storage/backends/s3';
import { emptyPrefix, freshPrefix, s3TestStore, type S3TestStore } from './ceph';

/**
 * Several processes on one bucket prefix, as replicas will be: the lock
 * excludes across processes, compare-and-swap has one winner across
 * processes, and a holder killed with SIGKILL has its lease taken over.
 */
let store: S3TestStore;
const prefixes: string[] = [];
before(async () => {
  store = await s3TestStore();
});
after(async () => {
  for (const p of prefixes) await emptyPrefix(store, p);
});

const CHILD = `
const [s3Js, settingsJson, bucket, prefix, mode, arg, startAt] = process.argv.slice(1);
const { S3Backend, makeS3Client } = require(s3Js);
const b = new S3Backend(makeS3Client(JSON.parse(settingsJson)), bucket, prefix, { lockLeaseMs: 1000 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  while (Date.now() < Number(startAt)) await sleep(1);
  if (mode === 'count') {
    const holds = [];
    for (let i = 0; i < 4; i++) {
      const release = await b.lock('refs');
      const t0 = Date.now();
      const cur = await b.read('counter');
      await sleep(20);
      await b.write('counter', Buffer.from(String(Number(cur ? cur.data.toString() : '0') + 1)));
      holds.push([t0, Date.now()]);
      await release();
    }
    process.stdout.write(JSON.stringify(holds));
  } else if (mode === 'cas') {
    const v = await b.compareAndSwap('refs/heads/main', Buffer.from('p' + process.pid + '\\n'), arg);
    process.stdout.write(v === null ? 'LOST' : 'WON');
  } else if (mode === 'hold') {
    await b.lock('summary');
    process.stdout.write('HELD');
    await sleep(600000);
  }
})().catch((e) => { process.stdout.write('ERROR ' + e.stack); process.exitCode = 1; });
`;

function child(prefix: string, mode: string, arg: string, startAt: number): { done: Promise<string>; kill: () => void; output: () => string } {
  const s3Js = path.join(__dirname, '..', '..', 'storage', 'backends', 's3.js');
  const p = spawn(process.execPath, ['-e', CHILD, s3Js, JSON.stringify(store.settings), store.bucket, prefix, mode, arg, String(startAt)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  return { done: new Promise((resolve) => p.on('close', () => resolve(out))), kill: () => p.kill('SIGKILL'), output: () => out };
}

function fresh(what: string): S3Backend {
  const prefix = freshPrefix(what);
  prefixes.push(prefix);
  return new S3Backend(store.client, store.bucket, prefix, { lockLeaseMs: 1000 });
}

test('three processes taking one lock: holds never overlap and no increment is lost', async () => {
  const b = fresh('xproc-lock');
  const startAt = Date.now() + 1500;
  const outs = await Promise.all([0, 1, 2].map(() => child(b.prefix, 'count', '', startAt).done));
  const holds = outs.flatMap((o) => {
    assert.doesNotMatch(o, /ERROR/, o);
    return JSON.parse(o) as Array<[number, number]>;
  });
  assert.equal(holds.length, 12);
  holds.sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < holds.length; i++) assert.ok(holds[i]![0] >= holds[i - 1]![1], `hold ${i} began before the previous ended: ${JSON.stringify(holds)}`);
  assert.equal((await b.read('counter'))?.data.toString(), '12');
});

test('three processes compare-and-swap from one version: exactly one wins', async () => {
  const b = fresh('xproc-cas');
  for (let round = 0; round < 3; round++) {
    await b.write('refs/heads/main', Buffer.from(`base ${round}\n`));
    const base = (await b.stat('refs/heads/main'))!.version;
    const startAt = Date.now() + 1200;
    const outs = await Promise.all([0, 1, 2].map(() => child(b.prefix, 'cas', base, startAt).done));
    assert.deepEqual([...outs].sort(), ['LOST', 'LOST', 'WON'], `round ${round}: ${JSON.stringify(outs)}`);
    assert.match((await b.read('refs/heads/main'))!.data.toString(), /^p\d+\n$/);
  }
});

test('a lock holder killed with SIGKILL: its lease is taken over after one lease (1 s)', async () => {
  const b = fresh('xproc-kill');
  const holder = child(b.prefix, 'hold', '', 0);
  for (let i = 0; i < 200 && !holder.output().includes('HELD'); i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(holder.output(), 'HELD');
  // held and renewed: not taken within two leases
  const impatient = new S3Backend(store.client, store.bucket, b.prefix, { lockLeaseMs: 1000, lockTimeoutMs: 2000 });
  await assert.rejects(impatient.lock('summary'));
  holder.kill();
  await holder.done;
  const t0 = Date.now();
  const release = await b.lock('summary');
  const waited = Date.now() - t0;
  assert.ok(waited >= 900 && waited < 5000, `taken over after ${waited} ms`);
  await release();
});
