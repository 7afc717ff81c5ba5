// `cairn gc` killed in the middle of its sweep (SIGKILL, 25 times at seeded random moments, each
// time with a fresh orphan commit of 300 files to delete): the repository must pass the stock
// `ostree fsck` after every kill. An unreachable commit must never outlive its own tree: ostree
// fsck checks every commit object in the repository, reachable or not, and fails on a commit whose
// dirtree or files are gone ("No such metadata object …dirtree", "Repository corruption
// encountered"). The focused form of what test/harness/crash-random found at random.
//
// CAIRN_GC_KILLS=N (default 25) kills; CAIRN_GC_KILL_SEED=S replays the moments.
// Run: npx tsc -p . && node --test dist/test/harness/gc-kill.test.js

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { makeTempDir, ostree, ostreeResult, removeTempDirs } from '../helpers/ostree';
import { mulberry32 } from '../helpers/prng';
import { cli, cliOk, startCli } from './helpers';

const KILLS = Math.max(1, Number(process.env.CAIRN_GC_KILLS ?? '25') || 25);
const SEED = process.env.CAIRN_GC_KILL_SEED !== undefined ? Number(process.env.CAIRN_GC_KILL_SEED) : Math.floor(Math.random() * 2 ** 31);

after(removeTempDirs);

test(`cairn gc SIGKILLed ${KILLS} times mid-sweep: ostree fsck passes after each`, { timeout: 900_000 }, async (t) => {
  t.diagnostic(`seed ${SEED} (CAIRN_GC_KILL_SEED=${SEED} replays the kill moments)`);
  const rnd = mulberry32(SEED);
  const work = await makeTempDir('cairn-gc-kill-');
  const data = path.join(work, 'data');
  const repo = path.join(data, 'repos', 'main');
  await cliOk(['init-repo', 'main', '--data', data]);
  const failures: string[] = [];
  let interrupted = 0;
  for (let i = 1; i <= KILLS; i++) {
    const src = path.join(work, `src-${i}`);
    await fsp.mkdir(path.join(src, 'd'), { recursive: true });
    for (let j = 0; j < 300; j++) await fsp.writeFile(path.join(src, 'd', `f${j}`), `garbage ${i} ${j}\n`);
    await ostree(['commit', '--orphan', '--no-bindings', `--tree=dir=${src}`, `--subject=garbage ${i}`], { repo });
    const { child, done } = startCli(['gc', '--data', data, '--repo', 'main', '--grace', '0s']);
    const delay = 150 + Math.floor(rnd() * 500);
    const timer = setTimeout(() => child.kill('SIGKILL'), delay);
    const r = await done;
    clearTimeout(timer);
    if (r.signal === 'SIGKILL') interrupted++;
    const fsck = await ostreeResult(['fsck'], { repo });
    if (fsck.code !== 0) {
      failures.push(`kill ${i} after ${delay} ms (${r.signal ?? `exit ${r.code}`}): ${fsck.stderr.split('\n').find((l) => l.startsWith('error')) ?? fsck.stderr.trim()}`);
      // A whole gc afterwards cleans up, so the next round starts from a sound repository.
      await cli(['gc', '--data', data, '--repo', 'main', '--grace', '0s']);
    }
  }
  t.diagnostic(`${interrupted} of ${KILLS} gc runs killed mid-way`);
  assert.ok(interrupted >= Math.min(5, KILLS), `only ${interrupted} runs were killed before they finished: the kills fall too late`);
  assert.deepEqual(failures, [], `${failures.length} of ${KILLS} kills left a repository that ostree fsck refuses`);
});
