// The summary pair as the read path serves it (server/files/summary-pair.ts, docs/publishing.md),
// deterministically, against a running `cairn serve`:
// - a connection that fetched summary.sig gets, for summary, the summary that signature signs, even
//   when a publish landed in between (the stock client's two requests); a new connection gets the new
//   pair;
// - while the two files are mid-switch on disk (the journal lists both pairs, summary renamed,
//   summary.sig not yet), the pair served is the previous one, never a mix.

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { createHash } from 'node:crypto';
import { JOURNAL_KEY, type Journal } from '../../storage/repo/journal';
import { jobsSettled, startCairn, type CairnProcess } from '../helpers/cairn-process';
import { commitTree, initRepo, makeSourceTree, makeTempDir, removeTempDirs } from '../helpers/ostree';
import { cli, initData, moveRefs } from './publish-helpers';

const REF = 'os/pair';
let work: string;
let data: string;
let cairn: CairnProcess;
let token: string;
const commits: string[] = [];

before(async () => {
  work = await makeTempDir('cairn-publish-pair-');
  data = path.join(work, 'data');
  token = await initData(data);
  const local = await initRepo(path.join(work, 'local'), 'archive');
  for (let i = 0; i < 2; i++) {
    const tree = await makeSourceTree(path.join(work, `t${i}`), { seed: 60 + i, bigFileBytes: 5_000 });
    commits.push(await commitTree(local, { branch: REF, tree, subject: `v${i}`, timestamp: 1_709_251_200 + i }));
  }
  cairn = await startCairn({ dataDir: data });
  for (const c of commits) {
    const r = await cli(['push', '--url', `${cairn.url}/repo/main`, '--token', token, '--repo', local, '--to', REF, '--force', c]);
    assert.equal(r.code, 0, r.stderr);
  }
  // Each publish queues delta jobs whose end regenerates the summary (listing the delta): these tests
  // compare pairs on disk and served, so every publish below waits for its jobs before reading them.
  await jobsSettled(cairn.url);
});

after(async () => {
  await cairn?.stop();
  await removeTempDirs();
});

/** GET on `agent` (one kept-alive socket when maxSockets is 1). */
function get(agent: http.Agent, file: string): Promise<{ status: number; body: Buffer; socket: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${cairn.url}/repo/main/${file}`, { agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), socket: req.socket }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const repoFile = (rel: string) => path.join(data, 'repos', 'main', rel);

async function pair(agent: http.Agent): Promise<{ summary: string; sig: string }> {
  const sig = await get(agent, 'summary.sig');
  const summary = await get(agent, 'summary');
  return { summary: sha(summary.body), sig: sha(sig.body) };
}

async function diskPair(): Promise<{ summary: string; sig: string }> {
  return { summary: sha(await fsp.readFile(repoFile('summary'))), sig: sha(await fsp.readFile(repoFile('summary.sig'))) };
}

async function headOf(): Promise<string> {
  return (((await (await fetch(`${cairn.url}/api/repos/main/refs`)).json()) as { refs: Record<string, string> }).refs[REF])!;
}

test('summary follows the summary.sig its connection fetched, across a publish; a new connection gets the new pair', async () => {
  const one = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const other = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const before = await diskPair();
    const sig = await get(one, 'summary.sig');
    assert.equal(sha(sig.body), before.sig);
    const head = await headOf();
    const moved = await moveRefs(cairn.url, token, [{ ref: REF, commit: head === commits[0] ? commits[1]! : commits[0]!, expected: head }]);
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    await jobsSettled(cairn.url);
    const after = await diskPair();
    assert.notEqual(after.summary, before.summary, 'the publish replaced the pair');
    const summary = await get(one, 'summary');
    assert.equal(summary.socket, sig.socket, 'the same connection');
    assert.equal(sha(summary.body), before.summary, 'the summary its summary.sig signs, not the newer one');
    assert.deepEqual(await pair(other), after, 'a connection asking now gets the new pair');
    assert.deepEqual(await pair(one), after, 'and so does the first one once it asks for summary.sig again');
  } finally {
    one.destroy();
    other.destroy();
  }
});

test('a pair mid-switch on disk (journal written, summary renamed, summary.sig not yet) is never served mixed', async () => {
  const agent = new http.Agent({ keepAlive: false });
  const current = await diskPair();
  assert.deepEqual(await pair(agent), current);
  const [summary, sig] = [await fsp.readFile(repoFile('summary')), await fsp.readFile(repoFile('summary.sig'))];
  // Publish once more, and keep the pair it replaced as the "next" pair of a hand-made switch back.
  const head = await headOf();
  assert.equal((await moveRefs(cairn.url, token, [{ ref: REF, commit: head === commits[0] ? commits[1]! : commits[0]!, expected: head }])).status, 200);
  await jobsSettled(cairn.url);
  const published = await diskPair();
  assert.deepEqual(await pair(agent), published);
  const j: Journal = { version: 1, id: 'test', time: new Date().toISOString(), changes: [], next: current, prev: published };
  await fsp.writeFile(repoFile(JOURNAL_KEY), JSON.stringify(j));
  const swap = async (file: string, bytes: Buffer) => {
    await fsp.writeFile(repoFile(`tmp/${file}.swap`), bytes);
    await fsp.rename(repoFile(`tmp/${file}.swap`), repoFile(file));
  };
  await swap('summary', summary);
  for (let i = 0; i < 3; i++) {
    const s = await get(agent, 'summary');
    const g = await get(agent, 'summary.sig');
    assert.deepEqual({ summary: sha(s.body), sig: sha(g.body) }, published, 'the previous pair while the switch is half done');
  }
  await swap('summary.sig', sig);
  assert.deepEqual(await pair(agent), current, 'the new pair once both files switched');
  await fsp.rm(repoFile(JOURNAL_KEY));
  assert.deepEqual(await pair(agent), current);
  // Put the repository back as the refs say (the next test run or recovery would otherwise find a stale summary).
  const fixed = await moveRefs(cairn.url, token, [{ ref: REF, commit: (await headOf())!, expected: await headOf() }]);
  assert.equal(fixed.status, 200);
});
