// The summary pair as the read path serves it (server/files/summary-pair.ts, docs/publishing.md), one
// scenario for every store: test/e2e/publish-pair runs it on a data folder, test/s3/publish-pair-s3 on
// `cairn serve --storage s3://…` against a real Ceph RGW. Registers its tests when called (importing it
// does nothing):
// - a connection that fetched summary.sig gets, for summary, the summary that signature signs, even
//   when a publish landed in between (the stock client's two requests); a new connection gets the new
//   pair;
// - while the two files are mid-switch in the store (the journal lists both pairs, summary replaced,
//   summary.sig not yet), the pair served is the previous one, never a mix; a process whose pair is
//   older than the one the switch replaces waits for the switch to end (replicas: test/s3/replicas);
// - optionally, verifying pulls by the stock client (gpg-verify-summary) while the ref moves back and
//   forth: not one "BAD signature".

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { Backend } from '../../storage/backends/backend';
import { JOURNAL_KEY, type Journal } from '../../storage/repo/journal';
import { jobsSettled, type CairnProcess } from '../helpers/cairn-process';
import { commitTree, initRepo, makeSourceTree, makeTempDir, ostreeResult, removeTempDirs } from '../helpers/ostree';
import { cli, moveRefs, saveGpgKey, verifyingClient } from './publish-helpers';

export const PAIR_REF = 'os/pair';

/** A running Cairn on the store under test, with an admin token for repository `main`. */
export interface PairSetup {
  cairn: CairnProcess;
  token: string;
  /** The repository `main` in the store, as the test reads and writes it behind Cairn's back. */
  repo: Backend;
  /** Called after the tests (the server is stopped before). */
  cleanup?(): Promise<void>;
}

export interface PairOptions {
  /** What the test names say the store is ('' for the data folder, 'on S3, ' …). */
  where: string;
  /** Starts Cairn on a fresh store (work: a temporary folder of the test). */
  setup(work: string): Promise<PairSetup>;
  /** Verifying pulls while the ref moves: at least `pulls`, and on until it moved `minPublishes` times. */
  pulls?: { pulls: number; minPublishes: number; concurrency: number };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export function summaryPairTests(o: PairOptions): void {
  let s: PairSetup;
  let work: string;
  const commits: string[] = [];

  before(async () => {
    work = await makeTempDir('cairn-summary-pair-');
    s = await o.setup(work);
    // No delta jobs: their summary regenerations would move the pair under the deterministic tests, and
    // the publishes below are what the pair must survive.
    const r = await fetch(`${s.cairn.url}/api/repos/main/settings`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${s.token}` },
      body: JSON.stringify({ deltas: { scratch: false, previousCommits: 0 } }),
    });
    assert.equal(r.status, 200, await r.text());
    const local = await initRepo(path.join(work, 'local'), 'archive');
    for (let i = 0; i < 2; i++) {
      const tree = await makeSourceTree(path.join(work, `t${i}`), { seed: 60 + i, bigFileBytes: 5_000 });
      commits.push(await commitTree(local, { branch: PAIR_REF, tree, subject: `v${i}`, timestamp: 1_709_251_200 + i }));
    }
    for (const c of commits) {
      const p = await cli(['push', '--url', `${s.cairn.url}/repo/main`, '--token', s.token, '--repo', local, '--to', PAIR_REF, '--force', c]);
      assert.equal(p.code, 0, p.stderr);
    }
    await jobsSettled(s.cairn.url);
  });

  after(async () => {
    await s?.cairn.stop();
    await s?.cleanup?.().catch(() => undefined);
    await removeTempDirs();
  });

  /** GET on `agent` (one kept-alive socket when maxSockets is 1). */
  const get = (agent: http.Agent, file: string): Promise<{ status: number; body: Buffer; socket: unknown }> =>
    new Promise((resolve, reject) => {
      const req = http.get(`${s.cairn.url}/repo/main/${file}`, { agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), socket: req.socket }));
        res.on('error', reject);
      });
      req.on('error', reject);
    });

  /** The pair served to `agent`: summary.sig, then summary. */
  const pair = async (agent: http.Agent): Promise<{ summary: string; sig: string }> => {
    const sig = await get(agent, 'summary.sig');
    const summary = await get(agent, 'summary');
    assert.equal(sig.status, 200);
    assert.equal(summary.status, 200);
    return { summary: sha(summary.body), sig: sha(sig.body) };
  };
  const read = async (file: string): Promise<Buffer> => (await s.repo.read(file))!.data;
  const storedPair = async () => ({ summary: sha(await read('summary')), sig: sha(await read('summary.sig')) });
  const headOf = async (): Promise<string> => (((await (await fetch(`${s.cairn.url}/api/repos/main/refs`)).json()) as { refs: Record<string, string> }).refs[PAIR_REF])!;
  /** Moves the ref to the other commit (a publish: a new pair). */
  const flip = async (): Promise<void> => {
    const head = await headOf();
    const moved = await moveRefs(s.cairn.url, s.token, [{ ref: PAIR_REF, commit: head === commits[0] ? commits[1]! : commits[0]!, expected: head }]);
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
  };

  test(`${o.where}summary follows the summary.sig its connection fetched, across a publish; a new connection gets the new pair`, async () => {
    const one = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const other = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const before = await storedPair();
      const sig = await get(one, 'summary.sig');
      assert.equal(sha(sig.body), before.sig);
      await flip();
      const after = await storedPair();
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

  test(`${o.where}a pair mid-switch in the store (journal written, summary replaced, summary.sig not yet) is never served mixed`, async () => {
    const agent = new http.Agent({ keepAlive: false });
    const current = await storedPair();
    assert.deepEqual(await pair(agent), current);
    const [summary, sig] = [await read('summary'), await read('summary.sig')];
    // Publish once more, and keep the pair it replaced as the "next" pair of a hand-made switch back.
    await flip();
    const published = await storedPair();
    assert.deepEqual(await pair(agent), published);
    const j: Journal = { version: 1, id: 'test', time: new Date().toISOString(), changes: [], next: current, prev: published };
    // Each write replaces the file whole (a rename on a folder, one PUT on S3), as a publish's switch does.
    await s.repo.write(JOURNAL_KEY, Buffer.from(JSON.stringify(j)));
    await s.repo.write('summary', summary);
    for (let i = 0; i < 3; i++) {
      const g = await get(agent, 'summary');
      const h = await get(agent, 'summary.sig');
      assert.deepEqual({ summary: sha(g.body), sig: sha(h.body) }, published, 'the previous pair while the switch is half done');
    }
    await s.repo.write('summary.sig', sig);
    assert.deepEqual(await pair(agent), current, 'the new pair once both files switched');
    await s.repo.remove(JOURNAL_KEY);
    assert.deepEqual(await pair(agent), current);
    // Put the repository back as the refs say (a later run or recovery would otherwise find a stale summary).
    const head = await headOf();
    assert.equal((await moveRefs(s.cairn.url, s.token, [{ ref: PAIR_REF, commit: head, expected: head }])).status, 200);
  });

  test(`${o.where}a process that holds an older pair than the one a switch replaces waits for the switch to end, and never serves that older pair`, async () => {
    const agent = new http.Agent({ keepAlive: false });
    // Every process (each worker with --workers 2) takes the current pair A.
    const a = await pair(agent);
    for (let i = 0; i < 8; i++) assert.deepEqual(await pair(agent), a);
    // Two publishes this server's read path does not see (B, then C), then a hand-made switch C → B
    // stopped half-way: summary is B's, summary.sig still C's.
    await flip();
    const [bSummary, bSig] = [await read('summary'), await read('summary.sig')];
    const b = { summary: sha(bSummary), sig: sha(bSig) };
    await flip();
    const c = await storedPair();
    assert.notDeepEqual(c, a);
    const j: Journal = { version: 1, id: 'test-stale', time: new Date().toISOString(), changes: [], next: b, prev: c };
    await s.repo.write(JOURNAL_KEY, Buffer.from(JSON.stringify(j)));
    await s.repo.write('summary', bSummary);
    // A request now must not be answered from A (older than C, the last pair published): it waits
    // for the switch, which ends 300 ms later.
    const asked = pair(agent);
    await new Promise((r) => setTimeout(r, 300));
    await s.repo.write('summary.sig', bSig);
    assert.deepEqual(await asked, b, 'the pair the switch publishes, not the older one this process held');
    await s.repo.remove(JOURNAL_KEY);
    // Put the repository back as the refs say.
    const head = await headOf();
    assert.equal((await moveRefs(s.cairn.url, s.token, [{ ref: PAIR_REF, commit: head, expected: head }])).status, 200);
    assert.deepEqual(await pair(agent), await storedPair());
  });

  const p = o.pulls;
  if (!p) return;
  test(`${o.where}verifying pulls (${p.pulls} or more) while the ref moves back and forth: not one torn summary pair`, { timeout: 600_000 }, async () => {
    const gpgAsc = await saveGpgKey(s.cairn.url, path.join(work, 'gpg.asc'));
    let stop = false;
    let publishes = 0;
    const publisher = (async () => {
      while (!stop) {
        await flip();
        publishes++;
      }
    })();
    const failures: string[] = [];
    const kept = await Promise.all(Array.from({ length: p.concurrency }, (_, k) => verifyingClient(path.join(work, `kept-${k}`), s.cairn.url, gpgAsc)));
    let next = 0;
    const slot = async (k: number) => {
      for (let i = next++; (i < p.pulls || publishes < p.minPublishes) && i < 200; i = next++) {
        // Even pulls: a client that keeps its cached summary and signature; odd ones: a fresh client.
        const repo = i % 2 === 0 ? kept[k]! : await verifyingClient(path.join(work, `fresh-${i}`), s.cairn.url, gpgAsc);
        const r = await ostreeResult(['pull', 'cairn', PAIR_REF], { repo });
        if (r.code !== 0) failures.push(`pull ${i} (${i % 2 === 0 ? 'cached' : 'fresh'} client): ${r.stderr.trim()}`);
      }
    };
    try {
      await Promise.all(Array.from({ length: p.concurrency }, (_, k) => slot(k)));
    } finally {
      stop = true;
      await publisher;
    }
    assert.ok(publishes >= p.minPublishes, `the ref moved while the pulls ran (${publishes} publishes)`);
    assert.deepEqual(failures, [], `${failures.length} of ${next} pulls failed across ${publishes} publishes`);
  });
}
