// GET /api/repos/NAME/recovery: what the start-up recovery of a repository repaired and what it
// found wrong (storage/repo/recovery.ts), for admin tokens of the repository.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { startCairn } from '../helpers/cairn-process';
import { removeTempDirs } from '../helpers/ostree';
import { cairnOk, commitVersion, ownedData } from './helpers';

after(removeTempDirs);

test('the last start-up recovery report: a summary that disagreed with the refs was regenerated, and said so', async () => {
  const { work, data, repo } = await ownedData('cairn-recovery-api-');
  // A commit made behind Cairn's back: the ref moved, the summary did not.
  const c = await commitVersion(work, repo, 'os/a', 1);
  const token = async (scope: string) => (await cairnOk(['token', '--data', data, '--scope', scope, '--repo', 'main', '--ttl', '1h'])).stdout.trim();
  const admin = await token('admin');
  const push = await token('push');
  const server = await startCairn({ dataDir: data });
  try {
    const get = async (tok?: string) => {
      const res = await fetch(`${server.url}/api/repos/main/recovery`, { headers: tok ? { authorization: `Bearer ${tok}` } : {} });
      return { status: res.status, body: (await res.json()) as { report: { repo: string; repaired: string[]; problems: string[] } | null; error?: { code: string } } };
    };
    assert.equal((await get()).status, 401);
    const byPush = await get(push);
    assert.equal(byPush.status, 403);
    assert.equal(byPush.body.error?.code, 'FORBIDDEN');
    const r = await get(admin);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.report?.repo, 'main');
    assert.ok(r.body.report!.repaired.some((line) => /summary/i.test(line)), `the regenerated summary is reported: ${JSON.stringify(r.body.report)}`);
    assert.deepEqual(r.body.report!.problems, []);
    // And the summary now names the commit.
    const summary = Buffer.from(await (await fetch(`${server.url}/repo/main/summary`)).arrayBuffer());
    assert.ok(summary.includes(Buffer.from(c, 'hex')), 'the regenerated summary lists the ref commit');
  } finally {
    await server.stop();
  }
});
