// The maintenance API of a listening `cairn serve`: POST /api/repos/NAME/{prune,gc,fsck} with admin
// tokens of the repository; push tokens are refused (403), repositories Cairn does not own are not
// written (403 NOT_OWNED; fsck without repair reads them), bodies are validated (400), and what the
// calls do shows on disk and to the real `ostree`.
//
// Run: npx tsc -p . && node --test dist/test/maintenance/api.test.js

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { startCairn } from '../helpers/cairn-process';
import { ostree, ostreeResult, removeTempDirs } from '../helpers/ostree';
import { cairnOk, commitVersion, logCommits, ownedData, snapshot } from './helpers';

after(removeTempDirs);

const DAY = 86_400;

test('POST prune, gc, fsck: admin only, owned repositories only for writes, validated, and they do what they report', async () => {
  const { work, data, repo } = await ownedData('cairn-maint-api-');
  const now = Math.floor(Date.now() / 1000);
  const a: string[] = [];
  for (let i = 1; i <= 4; i++) a.push(await commitVersion(work, repo, 'os/a', i, { timestamp: now - (10 - i) * DAY }));
  const foreign = path.join(data, 'repos', 'foreign');
  await fsp.mkdir(foreign, { recursive: true });
  await ostree(['init', '--mode=archive'], { repo: foreign });
  await commitVersion(work, foreign, 'x', 1);
  const token = async (scope: string, r: string) => (await cairnOk(['token', '--data', data, '--scope', scope, '--repo', r, '--ttl', '1h'])).stdout.trim();
  const admin = await token('admin', 'main');
  const adminForeign = await token('admin', 'foreign');
  const push = await token('push', 'main');

  const server = await startCairn({ dataDir: data });
  try {
    const call = async (r: string, op: string, body: unknown, tok?: string) => {
      const res = await fetch(`${server.url}/api/repos/${r}/${op}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(tok ? { authorization: `Bearer ${tok}` } : {}) },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as Record<string, any> };
    };

    assert.equal((await call('main', 'prune', { keep: 1 })).status, 401);
    const byPush = await call('main', 'prune', { keep: 1 }, push);
    assert.equal(byPush.status, 403);
    assert.equal(byPush.body.error.code, 'FORBIDDEN');
    const bad = await call('main', 'prune', { keep: 0 }, admin);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'INVALID_ARGUMENT');
    assert.equal((await call('main', 'prune', { keep: 1, extra: true }, admin)).status, 400);
    assert.equal((await call('main', 'prune', {}, admin)).status, 400, 'nothing to keep said');
    assert.equal((await call('main', 'prune', { keepYoungerThan: 'last week' }, admin)).status, 400);
    assert.equal((await call('main', 'gc', { graceSeconds: -1 }, admin)).status, 400);

    const before = await snapshot(repo);
    const dry = await call('main', 'prune', { keep: 2, dryRun: true }, admin);
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.deepEqual(dry.body.commits.map((c: { commit: string }) => c.commit).sort(), [a[0], a[1]].sort());
    assert.ok(dry.body.bytes > 0);
    const gcDry = await call('main', 'gc', { graceSeconds: 0, dryRun: true }, admin);
    assert.equal(gcDry.status, 200);
    assert.equal(gcDry.body.deletedObjects, 0, 'nothing is unreachable yet');
    assert.deepEqual(await snapshot(repo), before, 'dry runs change nothing');

    const pruned = await call('main', 'prune', { keepYoungerThan: '8d', refs: ['os/a'] }, admin);
    assert.equal(pruned.status, 200, JSON.stringify(pruned.body));
    assert.deepEqual(await logCommits(repo, 'os/a'), [a[3], a[2]]);
    const collected = await call('main', 'gc', { graceSeconds: 0 }, admin);
    assert.equal(collected.status, 200);
    assert.equal(collected.body.deletedObjects, pruned.body.exclusiveObjects, 'what only the pruned commits held');
    assert.ok(collected.body.deletedObjects > 0);
    const fsck = await call('main', 'fsck', {}, admin);
    assert.equal(fsck.status, 200);
    assert.equal(fsck.body.ok, true, JSON.stringify(fsck.body));
    assert.equal((await ostreeResult(['fsck'], { repo })).code, 0);

    // A repository Cairn does not own: read-only fsck is fine, writes are refused and change nothing.
    const foreignBefore = await snapshot(foreign);
    for (const [op, body] of [['prune', { keep: 1 }], ['gc', {}], ['fsck', { repair: true }]] as const) {
      const r = await call('foreign', op, body, adminForeign);
      assert.equal(r.status, 403, `${op}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'NOT_OWNED');
    }
    const readOnly = await call('foreign', 'fsck', {}, adminForeign);
    assert.equal(readOnly.status, 200);
    assert.equal(readOnly.body.ok, true);
    assert.deepEqual(await snapshot(foreign), foreignBefore);
    assert.equal((await call('foreign', 'fsck', {}, admin)).status, 403, "an admin token of another repository");
  } finally {
    await server.stop();
  }
});
