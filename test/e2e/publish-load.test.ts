// A summary and its signature never tear, also while publishes land between a client's two requests
// (issue #11 item 0; docs/publishing.md): 100 verifying pulls by the stock client (gpg-verify and
// gpg-verify-summary), 8 at a time, half of them into fresh repositories and half into repositories
// that keep a cached summary (the 304 paths), while a publisher moves the ref between two commits
// every ~50 ms. Every pull must succeed. (Before the summary pair was served as one, about 1 pull in
// 50 failed here with "BAD signature".)

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { startCairn, type CairnProcess } from '../helpers/cairn-process';
import { commitTree, initRepo, makeSourceTree, makeTempDir, ostreeResult, removeTempDirs } from '../helpers/ostree';
import { cli, initData, moveRefs, saveGpgKey, verifyingClient } from './publish-helpers';

const REF = 'os/load';
const PULLS = 100;
const CONCURRENCY = 8;
const PUBLISH_EVERY_MS = 50;

let work: string;
let cairn: CairnProcess;
let token: string;
const commits: string[] = [];

before(async () => {
  work = await makeTempDir('cairn-publish-load-');
  const data = path.join(work, 'data');
  token = await initData(data);
  const local = await initRepo(path.join(work, 'local'), 'archive');
  for (let i = 0; i < 2; i++) {
    const tree = await makeSourceTree(path.join(work, `t${i}`), { seed: 40 + i, bigFileBytes: 20_000 });
    commits.push(await commitTree(local, { branch: REF, tree, subject: `v${i}`, timestamp: 1_709_251_200 + i }));
  }
  cairn = await startCairn({ dataDir: data });
  for (const c of commits) {
    const r = await cli(['push', '--url', `${cairn.url}/repo/main`, '--token', token, '--repo', local, '--to', REF, '--force', c]);
    assert.equal(r.code, 0, r.stderr);
  }
});

after(async () => {
  await cairn?.stop();
  await removeTempDirs();
});

test('100 verifying pulls while the ref moves every 50 ms: not one torn summary pair', { timeout: 600_000 }, async () => {
  // Both commits on the server, the ref at one of them.
  let head = (((await (await fetch(`${cairn.url}/api/repos/main/refs`)).json()) as { refs: Record<string, string> }).refs[REF])!;
  if (!commits.includes(head)) throw new Error(`ref ${REF} at ${head}, not one of ${commits.join(', ')}`);
  if (head !== commits[1]) {
    const r = await moveRefs(cairn.url, token, [{ ref: REF, commit: commits[1]!, expected: head }]);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    head = commits[1]!;
  }
  const gpgAsc = await saveGpgKey(cairn.url, path.join(work, 'gpg.asc'));

  let stop = false;
  let publishes = 0;
  const publisher = (async () => {
    while (!stop) {
      const started = Date.now();
      const next = head === commits[0] ? commits[1]! : commits[0]!;
      const r = await moveRefs(cairn.url, token, [{ ref: REF, commit: next, expected: head }]);
      assert.equal(r.status, 200, `publish ${publishes + 1}: ${JSON.stringify(r.body)}`);
      head = next;
      publishes++;
      await new Promise((res) => setTimeout(res, Math.max(0, PUBLISH_EVERY_MS - (Date.now() - started))));
    }
  })();

  const failures: string[] = [];
  const kept = await Promise.all(Array.from({ length: CONCURRENCY }, (_, k) => verifyingClient(path.join(work, `kept-${k}`), cairn.url, gpgAsc)));
  let next = 0;
  const slot = async (k: number) => {
    for (let i = next++; i < PULLS; i = next++) {
      // Even pulls: a client that keeps its cached summary and signature; odd ones: a fresh client.
      const repo = i % 2 === 0 ? kept[k]! : await verifyingClient(path.join(work, `fresh-${i}`), cairn.url, gpgAsc);
      const r = await ostreeResult(['pull', 'cairn', REF], { repo });
      if (r.code !== 0) failures.push(`pull ${i} (${i % 2 === 0 ? 'cached' : 'fresh'} client): ${r.stderr.trim()}`);
    }
  };
  try {
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, k) => slot(k)));
  } finally {
    stop = true;
    await publisher;
  }
  assert.deepEqual(failures, [], `${failures.length} of ${PULLS} pulls failed during ${publishes} publishes`);
  assert.ok(publishes >= 20, `the ref moved ${publishes} times while the pulls ran: too few to mean anything`);
});
