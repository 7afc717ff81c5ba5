// SIGTERM while a delta compiles: `cairn serve` stops the compile cooperatively and exits 0
// within a few seconds — never the native-addon abort (exit 134) that terminating a worker thread
// inside the xz encoder caused — and leaves no partial delta (no part without its superblock,
// which is written last) and no temporary file. Several rounds, SIGTERM at different moments of
// the compile (reading objects, compressing parts), to catch the race.
//
// The server run is the build this test belongs to (dist/ under `npm test`, another --outDir
// when built elsewhere): a launcher next to the data folder loads that build's cli/main.js.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { deltaDir } from '../../storage/deltas/format';
import { commitFolder } from '../../storage/import/folder';
import { RepoRegistry } from '../../storage/repo/registry';
import { issueToken, loadTokenSecret } from '../../server/auth/tokens';
import { startCairn, type CairnProcess } from '../helpers/cairn-process';
import { makeTempDir, pseudoRandomBytes, removeTempDirs } from '../helpers/ostree';

const REF = 'os/stable';
/** SIGTERM this long after the compile reported progress (0: at once), one round each. */
const DELAYS_MS = [0, 150, 600, 1200, 2500];
/** Not a timing test: only a hang detector (a clean stop takes about a second). */
const EXIT_LIMIT_MS = 30_000;

let work: string;
let data: string;
let launcher: string;
let commit: string;
let token: string;

async function start(): Promise<CairnProcess> {
  const saved = process.env.CAIRN_E2E_SERVER;
  process.env.CAIRN_E2E_SERVER = launcher;
  try {
    return await startCairn({ dataDir: data, env: { CAIRN_LOG: 'info' } });
  } finally {
    if (saved === undefined) delete process.env.CAIRN_E2E_SERVER;
    else process.env.CAIRN_E2E_SERVER = saved;
  }
}

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath ?? e.path, e.name));
}

before(async () => {
  work = await makeTempDir('cairn-e2e-sigterm-');
  data = path.join(work, 'data');
  launcher = path.join(work, 'cairn-under-test.js');
  writeFileSync(launcher, `require(${JSON.stringify(path.resolve(__dirname, '../../cli/main.js'))}).run();\n`);
  const first = await start(); // creates repository `main`
  await first.stop();
  // ~24 MB of incompressible files (each under the 4 MB fallback size: all compiled into parts).
  const src = path.join(work, 'src');
  mkdirSync(path.join(src, 'usr/lib'), { recursive: true });
  for (let i = 0; i < 12; i++) writeFileSync(path.join(src, 'usr/lib', `lib${i}.so`), pseudoRandomBytes(i + 1, 2_000_000));
  const repo = (await new RepoRegistry(data).open('main'))!;
  commit = (await commitFolder(repo, src, REF, { subject: 'big', timestamp: 1_760_000_000n })).commit;
  await repo.setRef(REF, commit);
  token = (await issueToken(await loadTokenSecret(data), { sub: 'ci', scope: ['push'], repos: ['main'], ttlSeconds: 600 })).token;
});

after(async () => {
  await removeTempDirs();
});

test('SIGTERM during a delta compile: exit 0 within seconds, no partial delta, no temporary file (several rounds)', async (t) => {
  const repoDir = path.join(data, 'repos', 'main');
  const dir = path.join(repoDir, deltaDir(null, commit));
  for (const delay of DELAYS_MS) {
    const cairn = await start();
    const round = `SIGTERM ${delay} ms into the compile`;
    const res = await fetch(`${cairn.url}/api/repos/main/deltas`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to: commit }),
    });
    assert.equal(res.status, 202, `${round}: ${await res.clone().text()}`);
    const { job } = (await res.json()) as { job: { id: string } };
    // Until the worker thread reports progress: it is compiling.
    for (let i = 0; i < 400; i++) {
      const j = (await (await fetch(`${cairn.url}/api/jobs/${job.id}`)).json()) as { state: string; progress?: { done: number } | null };
      if (j.state !== 'queued' && j.progress && j.progress.done > 0) break;
      assert.ok(j.state === 'queued' || j.state === 'running', `${round}: the job ended before the signal (${JSON.stringify(j)})`);
      await new Promise((r) => setTimeout(r, 25));
    }
    await new Promise((r) => setTimeout(r, delay));
    const t0 = Date.now();
    process.kill(cairn.pid, 'SIGTERM');
    let exit: string | undefined;
    while (!(exit = /\[cairn exited with (\S+)\]/.exec(cairn.output())?.[1]) && Date.now() - t0 < EXIT_LIMIT_MS) await new Promise((r) => setTimeout(r, 20));
    const tail = cairn.output().split('\n').slice(-15).join('\n');
    const outcome = /"msg":"delta job (done|failed)"/.exec(cairn.output())?.[1];
    t.diagnostic(`${round}: exit ${exit} after ${Date.now() - t0} ms, job ${outcome === 'failed' ? 'cancelled' : outcome}`);
    assert.equal(exit, '0', `${round}: exit status (134 is the native abort)\n${tail}`);
    assert.doesNotMatch(cairn.output(), /FATAL ERROR|Aborted|core dumped|napi/i, round);
    assert.match(cairn.output(), /"msg":"delta job failed".*"code":"CANCELLED"|"msg":"delta job done"/, `${round}: the job was stopped (or had just finished)\n${tail}`);
    const left = files(dir);
    if (left.some((f) => f.endsWith('/superblock'))) {
      // It finished before the signal landed: a whole delta. Remove it so the next round compiles again.
      rmSync(dir, { recursive: true, force: true });
    } else {
      assert.deepEqual(left, [], `${round}: no part without its superblock`);
    }
    assert.deepEqual(files(path.join(repoDir, 'tmp')), [], `${round}: no temporary file left`);
  }
});
