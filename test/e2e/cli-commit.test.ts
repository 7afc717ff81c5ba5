import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { startCairn, projectRoot } from '../helpers/cairn-process';
import { addRemote, assertCheckoutEquals, initRepo, makeSourceTree, makeTempDir, ostree, removeTempDirs } from '../helpers/ostree';

const run = promisify(execFile);
const cairn = (args: string[]) => run(process.execPath, [path.join(projectRoot(), 'bin', 'cairn.js'), ...args]);

after(removeTempDirs);

/**
 * `cairn commit` publishes a folder with Cairn's own writer; the stock client,
 * verifying GPG signatures of commits and summary with the key the server
 * serves, pulls it, and a second commit arrives through the re-signed summary.
 */
test('cairn commit → stock client pulls with GPG verification of commit and summary', async () => {
  const work = await makeTempDir('cairn-cli-commit-');
  const data = path.join(work, 'data');
  const src1 = await makeSourceTree(path.join(work, 'v1'), { seed: 11, bigFileBytes: 300_000 });
  const src2 = await makeSourceTree(path.join(work, 'v2'), { seed: 12, bigFileBytes: 300_000, extra: { 'added.txt': 'v2\n' } });

  await cairn(['init-repo', 'os', '--data', data]);
  const c1 = (await cairn(['commit', '--data', data, '--repo', 'os', '-b', 'os/stable', '--tree', src1, '-s', 'v1', '--version', '1'])).stdout.trim();
  assert.match(c1, /^[0-9a-f]{64}$/);

  const server = await startCairn({ dataDir: data });
  try {
    const keyFile = path.join(work, 'gpg.asc');
    const res = await fetch(`${server.url}/repo/os/keys/gpg.asc`);
    assert.equal(res.status, 200);
    await fsp.writeFile(keyFile, Buffer.from(await res.arrayBuffer()));

    const client = await initRepo(path.join(work, 'client'), 'bare-user');
    await addRemote(client, 'cairn', `${server.url}/repo/os`, { gpgImport: keyFile, set: { 'gpg-verify-summary': 'true' } });
    await ostree(['pull', 'cairn', 'os/stable'], { repo: client });
    assert.match(await ostree(['fsck'], { repo: client }), /no errors found/);
    await assertCheckoutEquals(client, 'cairn:os/stable', src1, work);
    assert.match(await ostree(['show', '--gpg-verify-remote=cairn', 'cairn:os/stable'], { repo: client }), /Good signature/);

    const c2 = (await cairn(['commit', '--data', data, '--repo', 'os', '-b', 'os/stable', '--tree', src2, '-s', 'v2', '--version', '2'])).stdout.trim();
    await ostree(['pull', 'cairn', 'os/stable'], { repo: client });
    assert.equal((await ostree(['rev-parse', 'cairn:os/stable'], { repo: client })).trim(), c2);
    await assertCheckoutEquals(client, 'cairn:os/stable', src2, work);
    const log = await ostree(['log', 'cairn:os/stable'], { repo: client });
    assert.match(log, new RegExp(c1), 'v2 names v1 as its parent');
  } finally {
    await server.stop();
  }
});
