// Webhooks end to end with a listening `cairn serve` (also with --workers 2: the primary delivers,
// workers send it their events and ask it for the log): PUT/GET /api/repos/NAME/webhooks (admin
// only, validated, secrets never answered), then a ref update, the delta job it queues and an fsck
// that finds damage each reach a real local receiver as a signed POST, and the delivery log shows
// them delivered.
//
// Run: npx tsc -p . && node --test dist/test/webhooks/api.test.js

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { FsBackend } from '../../storage/backends/fs';
import { ObjectType, objectKey } from '../../storage/objects/types';
import { Repo } from '../../storage/repo/repo';
import { decodeDirTree } from '../../storage/objects/dirtree';
import { startCairn } from '../helpers/cairn-process';
import { ostree, removeTempDirs } from '../helpers/ostree';
import { cairnOk, commitVersion, ownedData } from '../maintenance/helpers';
import { startReceiver } from './receiver';

after(removeTempDirs);

const SECRET = 'webhook-secret-0123456789';

test('webhooks API and events: ref.updated, delta.finished, fsck.damage delivered signed; the delivery log', async () => {
  const { work, data, repo } = await ownedData('cairn-webhooks-api-');
  const first = await commitVersion(work, repo, 'os/a', 1);
  const next = await commitVersion(work, repo, 'os/a', 2, { parent: first });
  await ostree(['reset', 'os/a', first], { repo }); // the ref moves to `next` through the API
  const token = async (scope: string) => (await cairnOk(['token', '--data', data, '--scope', scope, '--repo', 'main', '--ttl', '1h'])).stdout.trim();
  const admin = await token('admin');
  const push = await token('push');
  const rx = await startReceiver(SECRET);
  const server = await startCairn({ dataDir: data });
  try {
    const call = async (method: string, p: string, tok: string | undefined, body?: unknown) => {
      const res = await fetch(`${server.url}${p}`, {
        method,
        headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(tok ? { authorization: `Bearer ${tok}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as Record<string, any> };
    };
    const hooks = { hooks: [{ id: 'ci', url: rx.url, secret: SECRET }] };
    assert.equal((await call('PUT', '/api/repos/main/webhooks', undefined, hooks)).status, 401);
    assert.equal((await call('PUT', '/api/repos/main/webhooks', push, hooks)).status, 403);
    assert.equal((await call('GET', '/api/repos/main/webhooks/deliveries', push)).status, 403);
    for (const bad of [
      { hooks: [{ id: 'x', url: 'ftp://example.org/', secret: SECRET }] },
      { hooks: [{ id: 'x', url: rx.url, secret: 'short' }] },
      { hooks: [{ id: 'x', url: rx.url, secret: SECRET, events: ['nope'] }] },
      { hooks: [{ id: 'x', url: 'http://user:pw@127.0.0.1/', secret: SECRET }] },
      { hooks: [{ id: 'x', url: rx.url, secret: SECRET }, { id: 'x', url: rx.url, secret: SECRET }] },
    ]) {
      const r = await call('PUT', '/api/repos/main/webhooks', admin, bad);
      assert.equal(r.status, 400, JSON.stringify(bad));
      assert.equal(r.body.error.code, 'INVALID_ARGUMENT');
    }
    assert.deepEqual((await call('GET', '/api/repos/main/webhooks', admin)).body, { hooks: [] }, 'refused bodies changed nothing');
    const put = await call('PUT', '/api/repos/main/webhooks', admin, hooks);
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const got = await call('GET', '/api/repos/main/webhooks', admin);
    assert.equal(got.body.hooks[0].url, rx.url);
    assert.ok(!JSON.stringify(got.body).includes(SECRET), 'the secret is never answered');

    // A ref update (the commit is in the repository): ref.updated, then its delta job's delta.finished.
    const moved = await call('POST', '/api/repos/main/refs', push, { updates: [{ ref: 'os/a', commit: next, expected: first }] });
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    const [refEvent] = await rx.waitFor(1, 30_000, (r) => r.json.event === 'ref.updated');
    assert.ok(refEvent!.signatureOk);
    assert.equal(refEvent!.headers['x-cairn-event'], 'ref.updated');
    assert.equal(refEvent!.json.repo, 'main');
    assert.deepEqual(refEvent!.json.changes.map((c: any) => [c.ref, c.old, c.new]), [['os/a', first, next]]);
    const [deltaEvent] = await rx.waitFor(1, 60_000, (r) => r.json.event === 'delta.finished');
    assert.ok(deltaEvent!.signatureOk);
    assert.equal(deltaEvent!.json.to, next);
    assert.equal(deltaEvent!.json.state, 'done');

    // fsck finds a flipped byte: fsck.damage names the object.
    const r = new Repo('main', new FsBackend(repo));
    const root = decodeDirTree((await r.readMetadata((await r.readCommit(next))!.rootTree, ObjectType.DirTree))!);
    const victim = root.files.find((f) => f.name === 'v2.bin')!.checksum;
    const file = path.join(repo, objectKey(victim, ObjectType.File));
    const bytes = await fsp.readFile(file);
    bytes[bytes.length - 10] ^= 0x55;
    await fsp.writeFile(file, bytes);
    const fsck = await call('POST', '/api/repos/main/fsck', admin, {});
    assert.equal(fsck.body.ok, false);
    const [damage] = await rx.waitFor(1, 30_000, (x) => x.json.event === 'fsck.damage');
    assert.ok(damage!.signatureOk);
    assert.deepEqual(damage!.json.corrupt.map((c: any) => c.object), [`${victim}.filez`]);

    const log = await call('GET', '/api/repos/main/webhooks/deliveries?limit=10', admin);
    assert.equal(log.status, 200);
    const events = log.body.deliveries.map((d: any) => d.event);
    for (const e of ['ref.updated', 'delta.finished', 'fsck.damage']) assert.ok(events.includes(e), `${e} in ${events}`);
    for (const d of log.body.deliveries) {
      if (d.state === 'pending') continue; // a later delta's, still on its way
      assert.equal(d.state, 'delivered', JSON.stringify(d));
      assert.equal(d.responseCode, 200);
      assert.equal(d.webhook, 'ci');
    }
  } finally {
    await server.stop();
    await rx.close();
  }
});
