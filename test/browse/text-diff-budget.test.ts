// Text diffs of a commit diff are bounded in time per request, not only per
// file: jsdiff runs synchronously, and two 5,000-line files with no line in
// common take it to its time limit. A diff asking for text diffs of many such
// files (anyone may ask, on a public repository: GET /api/repos/R/diff?text=1
// &texts=100) must neither take the sum of the per-file limits nor hold the
// event loop for long at a time.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { Repo } from '../../storage/repo/repo';
import { diffCommits, TEXT_DIFF_BUDGET_MS } from '../../storage/browse/diff';
import { commitTree, initRepo, makeTempDir, removeTempDirs } from '../helpers/ostree';

const FILES = 8;
const LINES = 5000;
let repo: Repo;
let v1: string;
let v2: string;

const lines = (prefix: string) => Array.from({ length: LINES }, (_, i) => `${prefix}${i}`).join('\n') + '\n';

before(async () => {
  const work = await makeTempDir('cairn-text-diff-budget-');
  const src = path.join(work, 'src');
  const dir = await initRepo(path.join(work, 'repo'), 'archive');
  await fsp.mkdir(src, { recursive: true });
  for (let i = 0; i < FILES; i++) await fsp.writeFile(path.join(src, `f${i}.txt`), lines(`old ${i} `));
  v1 = await commitTree(dir, { branch: 'main', tree: src, subject: 'v1' });
  for (let i = 0; i < FILES; i++) await fsp.writeFile(path.join(src, `f${i}.txt`), lines(`new ${i} `));
  v2 = await commitTree(dir, { branch: 'main', tree: src, subject: 'v2' });
  repo = new Repo('t', new FsBackend(dir));
});

after(removeTempDirs);

test('text diffs of dissimilar files share one time budget per diff and let the event loop run between them', async () => {
  let longestStall = 0;
  let last = performance.now();
  const ticker = setInterval(() => {
    const now = performance.now();
    longestStall = Math.max(longestStall, now - last);
    last = now;
  }, 5);
  const t0 = performance.now();
  let d;
  try {
    d = await diffCommits(repo, v1, v2, { textDiffs: FILES });
  } finally {
    clearInterval(ticker);
  }
  const elapsed = performance.now() - t0;
  assert.equal(d.modified.length, FILES);
  for (const m of d.modified) assert.equal(m.text?.status, 'too-complex', m.path);
  // Before the bound: FILES × 1 s, one second at a time on the event loop.
  assert.ok(elapsed < TEXT_DIFF_BUDGET_MS + 4000, `the diff took ${Math.round(elapsed)} ms`);
  assert.ok(longestStall < 800, `the event loop was held for ${Math.round(longestStall)} ms`);
});
