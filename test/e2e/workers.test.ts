import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { startCairn, projectRoot } from '../helpers/cairn-process';
import { addRemote, assertCheckoutEquals, commitTree, initRepo, makeSourceTree, makeTempDir, ostree, removeTempDirs } from '../helpers/ostree';

const run = promisify(execFile);

after(removeTempDirs);

/**
 * `cairn serve --workers 2`: cluster workers answer repository files, the
 * primary everything else. The stock client must not notice, the API must
 * work through a worker, the listening line must appear once, and /metrics
 * must add up all processes.
 */
test('--workers 2: a stock pull, the API and metrics through the cluster', async () => {
  const work = await makeTempDir('cairn-workers-');
  const data = path.join(work, 'data');
  const repo = await initRepo(path.join(data, 'repos', 'main'), 'archive');
  const src = await makeSourceTree(path.join(work, 'src'), { seed: 21, bigFileBytes: 400_000 });
  const commit = await commitTree(repo, { branch: 'os/stable', tree: src, timestamp: 1709251200 });
  await ostree(['summary', '-u'], { repo });
  // Made by `ostree`: adopted, so the push API below answers for it (NOT_OWNED otherwise).
  await run(process.execPath, [path.join(projectRoot(), 'bin', 'cairn.js'), 'adopt', 'main', '--data', data]);

  const server = await startCairn({ dataDir: data, extraArgs: ['--workers', '2'] });
  try {
    const client = await initRepo(path.join(work, 'client'), 'bare-user');
    await addRemote(client, 'cairn', `${server.url}/repo/main`);
    await ostree(['pull', 'cairn', 'os/stable'], { repo: client });
    assert.match(await ostree(['fsck'], { repo: client }), /no errors found/);
    assert.equal((await ostree(['rev-parse', 'cairn:os/stable'], { repo: client })).trim(), commit);
    await assertCheckoutEquals(client, 'cairn:os/stable', src, work);

    const listening = server.output().split('\n').filter((l) => l.includes('"msg":"listening"'));
    assert.equal(listening.length, 1, 'one listening line, from the primary');
    assert.equal(JSON.parse(listening[0]!).workers, 2);

    const token = (await run(process.execPath, [path.join(projectRoot(), 'bin', 'cairn.js'), 'token', '--data', data, '--scope', 'push', '--repo', 'main'])).stdout.trim();
    for (let i = 0; i < 4; i++) {
      // Several requests, so that round-robin hands some to each worker.
      const res = await fetch(`${server.url}/api/repos/main/objects/missing`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ objects: [`${commit}.commit`, `${'ab'.repeat(32)}.dirtree`] }),
      });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { missing: [`${'ab'.repeat(32)}.dirtree`] });
    }

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const served = metrics
      .split('\n')
      .filter((l) => l.startsWith('cairn_http_requests_total{') && l.includes('status="200"') && l.includes('route="repo_'))
      .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    assert.ok(served >= 20, `the pull's repository requests are counted across processes (got ${served})`);
  } finally {
    await server.stop();
  }
});
