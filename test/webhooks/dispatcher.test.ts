// Webhook deliveries against real local HTTP receivers: the HMAC-SHA256 signature header verifies
// with the secret, a receiver failing twice gets the delivery on the third attempt after growing
// backoffs, a receiver that never answers is given up on at each attempt's deadline (failed after
// the bounded attempts, no response code), a full queue drops (and logs) what does not fit, and
// events a webhook did not ask for are not sent.
//
// Run: npx tsc -p . && node --test dist/test/webhooks/dispatcher.test.js

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import { after, test } from 'node:test';
import { WebhookStore } from '../../storage/webhooks/config';
import { WebhookDispatcher } from '../../storage/webhooks/dispatcher';
import { makeTempDir, removeTempDirs } from '../helpers/ostree';
import { startReceiver } from './receiver';

after(removeTempDirs);

const SECRET = 'a-secret-of-enough-length';

async function store(hooks: Array<{ id: string; url: string; events?: any[] }>, secret = SECRET): Promise<WebhookStore> {
  const s = new WebhookStore(await makeTempDir('cairn-webhooks-'));
  await s.set('main', hooks.map((h) => ({ ...h, secret })));
  return s;
}

test('a delivery is signed with HMAC-SHA256 of the body and logged as delivered', async () => {
  const rx = await startReceiver(SECRET);
  const wrongRx = await startReceiver('another-secret-entirely');
  try {
    const s = await store([
      { id: 'one', url: rx.url },
      { id: 'refs-only', url: wrongRx.url, events: ['ref.updated'] },
    ]);
    const st = await fsp.stat(`${s.dataDir}/webhooks/main.json`);
    assert.equal(st.mode & 0o777, 0o600, 'the secrets file is private');
    const d = new WebhookDispatcher(s);
    await d.emit({ event: 'delta.finished', repo: 'main', data: { delta: 'x' } });
    await d.emit({ event: 'ref.updated', repo: 'main', data: { changes: [{ ref: 'os/a' }] } });
    await d.idle();
    const got = await rx.waitFor(2);
    assert.ok(got.every((r) => r.signatureOk), 'signature verifies with the secret');
    assert.deepEqual(got.map((r) => r.json.event).sort(), ['delta.finished', 'ref.updated']);
    assert.equal(got[0]!.headers['content-type'], 'application/json');
    assert.equal(got[0]!.headers['x-cairn-delivery'], got[0]!.json.id);
    assert.equal(got.find((r) => r.json.event === 'ref.updated')!.json.changes[0].ref, 'os/a');
    // The other hook wants ref.updated only, and its secret differs: its signature does not verify with another key.
    const other = await wrongRx.waitFor(1);
    assert.equal(other.length, 1);
    assert.equal(other[0]!.json.event, 'ref.updated');
    assert.equal(other[0]!.signatureOk, false, 'signed with its own secret, not the receiver\'s');
    const log = d.deliveries('main');
    assert.equal(log.length, 3);
    assert.ok(log.every((l) => l.state === 'delivered' && l.attempts === 1 && l.responseCode === 200), JSON.stringify(log));
    d.close();
  } finally {
    await rx.close();
    await wrongRx.close();
  }
});

test('retries with exponential backoff: a receiver failing twice gets it on the third attempt', async () => {
  const rx = await startReceiver(SECRET, (i) => (i < 2 ? 503 : 200));
  try {
    const d = new WebhookDispatcher(await store([{ id: 'flaky', url: rx.url }]), { backoffMs: 150, maxAttempts: 5 });
    await d.emit({ event: 'ref.updated', repo: 'main', data: {} });
    await d.idle();
    const got = await rx.waitFor(3);
    assert.equal(got.length, 3);
    assert.ok(got.every((r) => r.signatureOk));
    assert.equal(new Set(got.map((r) => r.headers['x-cairn-delivery'])).size, 1, 'one delivery id on every attempt');
    const gap1 = got[1]!.at - got[0]!.at;
    const gap2 = got[2]!.at - got[1]!.at;
    assert.ok(gap1 >= 140, `first backoff ${gap1} ms`);
    assert.ok(gap2 >= 290, `second backoff doubles: ${gap2} ms`);
    const [log] = d.deliveries('main');
    assert.equal(log!.state, 'delivered');
    assert.equal(log!.attempts, 3);
    assert.equal(log!.responseCode, 200);
    d.close();
  } finally {
    await rx.close();
  }
});

test('a receiver that never answers: each attempt ends at its deadline, failed after the bounded attempts', async () => {
  const rx = await startReceiver(SECRET, () => 'hang');
  try {
    const d = new WebhookDispatcher(await store([{ id: 'hangs', url: rx.url }]), { timeoutMs: 300, backoffMs: 50, maxAttempts: 3 });
    const t0 = Date.now();
    await d.emit({ event: 'scrub.corrupt', repo: 'main', data: { object: 'x' } });
    await d.idle();
    const took = Date.now() - t0;
    assert.ok(took >= 3 * 300 && took < 10_000, `three deadlines: ${took} ms`);
    assert.equal(rx.received.length, 3);
    const [log] = d.deliveries('main');
    assert.equal(log!.state, 'failed');
    assert.equal(log!.attempts, 3);
    assert.equal(log!.responseCode, undefined);
    assert.match(log!.error!, /no answer within 300 ms/);
    d.close();
  } finally {
    await rx.close();
  }
});

test('bounded: deliveries beyond maxPending are dropped and logged, a failing status is logged with its code', async () => {
  const hang = await startReceiver(SECRET, () => 'hang');
  const refuse = await startReceiver(SECRET, () => 404);
  try {
    const d = new WebhookDispatcher(await store([{ id: 'h', url: hang.url }]), { timeoutMs: 5000, maxPending: 2, maxAttempts: 1 });
    for (let i = 0; i < 3; i++) await d.emit({ event: 'ref.updated', repo: 'main', data: { i } });
    const states = d.deliveries('main').map((l) => l.state);
    assert.deepEqual(states, ['dropped', 'pending', 'pending'], 'newest first: the third did not fit');
    d.close();

    const d2 = new WebhookDispatcher(await store([{ id: 'r', url: refuse.url }]), { backoffMs: 10, maxAttempts: 2 });
    await d2.emit({ event: 'ref.updated', repo: 'main', data: {} });
    await d2.idle();
    const [log] = d2.deliveries('main');
    assert.equal(log!.state, 'failed');
    assert.equal(log!.responseCode, 404);
    assert.equal(log!.attempts, 2);
    d2.close();
  } finally {
    await hang.close();
    await refuse.close();
  }
});

test('pending deliveries are bounded in bytes too: large bodies past the bound are dropped, not queued', async () => {
  // Port 1 refuses at once: every delivery fails its attempt and waits its backoff, still pending.
  const d = new WebhookDispatcher(await store([{ id: 'refused', url: 'http://127.0.0.1:1/' }]), { backoffMs: 60_000 });
  try {
    const changes = Array.from({ length: 4096 }, (_, i) => ({ ref: `os/${'x'.repeat(200)}/${i}`, old: null, new: 'a'.repeat(64) }));
    for (let i = 0; i < 100; i++) await d.emit({ event: 'ref.updated', repo: 'main', data: { changes } }); // ~1.2 MB each
    const log = d.deliveries('main', 100);
    const dropped = log.filter((x) => x.state === 'dropped').length;
    // Before the bound: all 100 (~120 MB of bodies) were kept pending, the count bound (1,000) being far.
    assert.ok(dropped >= 40, `${dropped} of 100 dropped`);
    assert.ok(log.filter((x) => x.state === 'pending').length <= 64);
  } finally {
    d.close();
  }
});
