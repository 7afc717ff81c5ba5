// End to end: the real `ostree` client (libostree 2022.7) pulls from a listening Cairn that serves
// archive repositories made and filled by the `ostree` CLI in DATA/repos/NAME.
//
// Run: npx tsc -p . && node --test dist/test/e2e/pull.test.js
// (fails, never skips, when `ostree` is missing: see test/helpers/ostree.ts)

import assert from 'node:assert/strict';
import { get } from 'node:http';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { startCairn, type CairnProcess, type LoggedRequest } from '../helpers/cairn-process';
import { makeGpgKey, type GpgKey } from '../helpers/gpg';
import {
  addRemote,
  assertCheckoutEquals,
  CommandError,
  commitTree,
  deltaSuperblockPath,
  exists,
  initRepo,
  makeSourceTree,
  makeTempDir,
  ostree,
  ostreeResult,
  removeTempDirs,
  revParse,
  updateSummary,
  type RepoMode,
} from '../helpers/ostree';
import { startRecordingProxy } from '../helpers/recording-proxy';

const OS_REF = 'os/x86_64/stable';
const APP_REF = 'apps/tool-1.0_x';

let work: string;
let data: string;
let repos: string;
let cairn: CairnProcess;
/** Source folders by version. */
const src: Record<'v1' | 'v2' | 'v3' | 'app', string> = { v1: '', v2: '', v3: '', app: '' };
/** Commits of OS_REF in the `os` repo: C[0] oldest. */
const C: string[] = [];
let appCommit = '';
let clientCounter = 0;

const day = (n: number) => `2026-01-${String(n).padStart(2, '0')}T12:00:00Z`;

function repoUrl(name: string): string {
  return `${cairn.url}/repo/${name}`;
}

/** Appends the tail of Cairn's output to a failing command's error. */
async function withServerContext<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof CommandError && cairn) {
      const tail = cairn.output().split('\n').slice(-40).join('\n');
      err.message += `\n--- cairn output (tail) ---\n${tail}`;
    }
    throw err;
  }
}

/** A fresh client repo with remote `cairn` pointing at `url`. */
async function client(
  mode: RepoMode,
  url: string,
  remoteOpts: Parameters<typeof addRemote>[3] = {},
): Promise<string> {
  const repo = path.join(work, 'clients', `${mode}-${++clientCounter}`);
  await initRepo(repo, mode);
  await addRemote(repo, 'cairn', url, remoteOpts);
  return repo;
}

function pull(repo: string, args: string[]): Promise<string> {
  return withServerContext(ostree(['pull', ...args], { repo }));
}

async function hasCommit(repo: string, checksum: string): Promise<boolean> {
  return (await ostreeResult(['show', checksum], { repo })).code === 0;
}

async function fsck(repo: string): Promise<void> {
  const out = await ostree(['fsck'], { repo });
  assert.match(out, /completed successfully - no errors found/, out);
  assert.doesNotMatch(out, /corrupt/i, out);
}

before(async () => {
  work = await makeTempDir('cairn-e2e-');
  data = path.join(work, 'data');
  repos = path.join(data, 'repos');
  await fsp.mkdir(repos, { recursive: true });

  src.v1 = await makeSourceTree(path.join(work, 'src', 'v1'), { seed: 1 });
  src.v2 = await makeSourceTree(path.join(work, 'src', 'v2'), { seed: 1, extra: { 'added-in-v2.txt': 'two\n' } });
  src.v3 = await makeSourceTree(path.join(work, 'src', 'v3'), {
    seed: 1,
    extra: { 'added-in-v2.txt': 'two, changed\n', 'added-in-v3 + more.bin': Buffer.alloc(70000, 3) },
  });
  src.app = await makeSourceTree(path.join(work, 'src', 'app'), { seed: 9, bigFileBytes: 10_000 });

  // `os`: three commits on one ref (a history for REF@COMMIT and --depth), a second ref with a `+`.
  const os = await initRepo(path.join(repos, 'os'), 'archive');
  for (const [i, v] of (['v1', 'v2', 'v3'] as const).entries()) {
    C.push(await commitTree(os, { branch: OS_REF, tree: src[v], subject: `os ${v}`, timestamp: day(i + 1) }));
  }
  appCommit = await commitTree(os, { branch: APP_REF, tree: src.app, subject: 'app', timestamp: day(5) });
  await updateSummary(os);

  // CAIRN_LOG=info: the per-request log lines let the delta test see what Cairn served.
  cairn = await startCairn({ dataDir: data, env: { CAIRN_LOG: 'info' } });
  const health = await fetch(`${cairn.url}/healthz`);
  assert.equal(health.status, 200, 'GET /healthz');
});

after(async () => {
  await cairn?.stop();
  await removeTempDirs();
});

/** Connections the HTTP/1.1 front has given to node's server so far (server/http1/front.ts), this request's own included. */
async function handOvers(): Promise<number> {
  // A connection of its own (no agent), so the count is the same whatever a pool would reuse.
  const text = await new Promise<string>((resolve, reject) => {
    get(`${cairn.url}/metrics`, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
  const m = /^cairn_front_handovers_total (\d+)$/m.exec(text);
  assert.ok(m, 'cairn_front_handovers_total in /metrics');
  return Number(m[1]);
}

test('archive client: pull, fsck, checkout equals the source tree', async () => {
  const c = await client('archive', repoUrl('os'));
  const before = await handOvers();
  await pull(c, [`cairn`, OS_REF, APP_REF]);
  // The whole pull (summary.sig and commitmeta 404s included) was answered by the front, on node's side not one connection.
  assert.equal(await handOvers(), before + 1, 'only the /metrics request itself goes to node');
  assert.equal(await revParse(c, `cairn:${OS_REF}`), C[2]);
  assert.equal(await revParse(c, `cairn:${APP_REF}`), appCommit);
  await fsck(c);
  await assertCheckoutEquals(c, `cairn:${OS_REF}`, src.v3, work);
  await assertCheckoutEquals(c, `cairn:${APP_REF}`, src.app, work);
  // default depth 0: the parent commit is not fetched
  assert.equal(await hasCommit(c, C[1]!), false, 'parent commit should not be pulled with depth 0');
});

test('bare-user client: pull, fsck, checkout equals the source tree', async () => {
  const c = await client('bare-user', repoUrl('os'));
  await pull(c, ['cairn', OS_REF]);
  assert.equal(await revParse(c, `cairn:${OS_REF}`), C[2]);
  await fsck(c);
  await assertCheckoutEquals(c, `cairn:${OS_REF}`, src.v3, work);
});

test('REF@COMMIT pulls an older commit', async () => {
  const c = await client('bare-user', repoUrl('os'));
  await pull(c, ['cairn', `${OS_REF}@${C[0]}`]);
  assert.equal(await revParse(c, `cairn:${OS_REF}`), C[0]);
  assert.equal(await hasCommit(c, C[2]!), false, 'the newest commit must not be pulled');
  await fsck(c);
  await assertCheckoutEquals(c, `cairn:${OS_REF}`, src.v1, work);
});

test('--depth=1 fetches exactly one parent; --depth=-1 the whole history', async () => {
  const c1 = await client('archive', repoUrl('os'));
  await pull(c1, ['--depth=1', 'cairn', OS_REF]);
  assert.equal(await hasCommit(c1, C[2]!), true);
  assert.equal(await hasCommit(c1, C[1]!), true, 'parent at depth 1');
  assert.equal(await hasCommit(c1, C[0]!), false, 'grandparent beyond depth 1');
  const log1 = await ostree(['log', `cairn:${OS_REF}`], { repo: c1 });
  assert.match(log1, new RegExp(`^commit ${C[2]}$`, 'm'));
  assert.match(log1, new RegExp(`^commit ${C[1]}$`, 'm'));
  assert.doesNotMatch(log1, new RegExp(`^commit ${C[0]}$`, 'm'));
  assert.match(log1, /History beyond this commit not fetched/);
  await fsck(c1);
  await assertCheckoutEquals(c1, C[1]!, src.v2, work);

  const c2 = await client('bare-user', repoUrl('os'));
  await pull(c2, ['--depth=-1', 'cairn', OS_REF]);
  for (const c of C) assert.equal(await hasCommit(c2, c), true, `commit ${c} with --depth=-1`);
  const log2 = await ostree(['log', `cairn:${OS_REF}`], { repo: c2 });
  for (const c of C) assert.match(log2, new RegExp(`^commit ${c}$`, 'm'));
  assert.doesNotMatch(log2, /History beyond this commit not fetched/);
  await fsck(c2);
  await assertCheckoutEquals(c2, C[0]!, src.v1, work);
});

test('--commit-metadata-only fetches the commit but no tree', async () => {
  const c = await client('archive', repoUrl('os'));
  await pull(c, ['--commit-metadata-only', 'cairn', OS_REF]);
  assert.equal(await hasCommit(c, C[2]!), true);
  const show = await ostree(['show', C[2]!], { repo: c });
  assert.match(show, /os v3/);
  assert.ok(exists(path.join(c, 'state', `${C[2]}.commitpartial`)), 'commit is marked partial');
  const co = await ostreeResult(['checkout', '-U', C[2]!, path.join(work, 'never')], { repo: c });
  assert.notEqual(co.code, 0, 'checkout of a metadata-only commit must fail');
});

test('a repo changed behind Cairn’s back by the ostree CLI is served fresh at once', async () => {
  const live = await initRepo(path.join(repos, 'live'), 'archive');
  const L = [await commitTree(live, { branch: 'live/main', tree: src.v1, subject: 'live 1', timestamp: day(1) })];
  await updateSummary(live);
  const c = await client('archive', repoUrl('live'));
  const bu = await client('bare-user', repoUrl('live'));
  await pull(c, ['cairn', 'live/main']);
  assert.equal(await revParse(c, 'cairn:live/main'), L[0]);
  // warm whatever caches there are: summary, refs, config
  for (let i = 0; i < 3; i++) {
    assert.match(await ostree(['remote', 'summary', 'cairn'], { repo: c }), new RegExp(L[0]!));
    const r = await fetch(`${repoUrl('live')}/refs/heads/live/main`);
    assert.equal((await r.text()).trim(), L[0]);
  }

  for (const [i, v] of (['v2', 'v3'] as const).entries()) {
    L.push(await commitTree(live, { branch: 'live/main', tree: src[v], subject: `live ${v}`, timestamp: day(i + 2) }));
    await updateSummary(live);
    const want = L[L.length - 1]!;
    // the ref file and the summary as served, straight away
    const r = await fetch(`${repoUrl('live')}/refs/heads/live/main`);
    assert.equal((await r.text()).trim(), want, 'refs/heads/live/main is served fresh');
    assert.match(await ostree(['remote', 'summary', 'cairn'], { repo: c }), new RegExp(want), 'summary is served fresh');
    await pull(c, ['cairn', 'live/main']);
    assert.equal(await revParse(c, 'cairn:live/main'), want, `pull ${i + 1} after the change gets the new commit`);
    await pull(bu, ['cairn', 'live/main']);
    assert.equal(await revParse(bu, 'cairn:live/main'), want);
  }
  await fsck(c);
  await fsck(bu);
  await assertCheckoutEquals(c, 'cairn:live/main', src.v3, work);
  await assertCheckoutEquals(bu, 'cairn:live/main', src.v3, work);
});

test('static deltas from `ostree static-delta generate` are used by a bare-user client', async () => {
  const repo = await initRepo(path.join(repos, 'deltas'), 'archive');
  const D1 = await commitTree(repo, { branch: 'd/main', tree: src.v1, subject: 'd1', timestamp: day(1) });
  await ostree(['static-delta', 'generate', '--empty', `--to=${D1}`], { repo });
  await updateSummary(repo);

  // The client goes through a recording proxy, so the requests are counted whatever Cairn logs.
  const proxy = await startRecordingProxy(cairn.url);
  try {
    const c = await client('bare-user', `${proxy.url}/repo/deltas`);
    const got = (p: string) => (r: LoggedRequest) => r.path === `/repo/deltas/${p}` && r.status === 200;

    const scratch = deltaSuperblockPath(null, D1);
    await pull(c, ['--require-static-deltas', 'cairn', 'd/main']);
    assert.equal(await revParse(c, 'cairn:d/main'), D1);
    assert.ok(
      proxy.requests.some(got(scratch)),
      `expected GET ${scratch} → 200; requests: ${proxy.requests.map((r) => `${r.status} ${r.path}`).join(', ')}`,
    );
    const scratchPart = scratch.replace(/superblock$/, '0');
    assert.ok(proxy.requests.some(got(scratchPart)), `expected GET ${scratchPart} → 200`);
    assert.ok(cairn.logsRequests(), 'Cairn logs one JSON line per request ({method, path, status}) at CAIRN_LOG=info');
    assert.ok(await cairn.waitForRequest(got(scratch)), `Cairn's request log should show GET ${scratch} → 200`);
    await fsck(c);
    await assertCheckoutEquals(c, 'cairn:d/main', src.v1, work);

    const D2 = await commitTree(repo, { branch: 'd/main', tree: src.v3, subject: 'd2', timestamp: day(2) });
    await ostree(['static-delta', 'generate', `--from=${D1}`, `--to=${D2}`], { repo });
    await updateSummary(repo);
    const fromTo = deltaSuperblockPath(D1, D2);
    const before = proxy.requests.length;
    await pull(c, ['--require-static-deltas', 'cairn', 'd/main']);
    assert.equal(await revParse(c, 'cairn:d/main'), D2);
    const second = proxy.requests.slice(before);
    assert.ok(
      second.some(got(fromTo)),
      `expected GET ${fromTo} → 200; requests: ${second.map((r) => `${r.status} ${r.path}`).join(', ')}`,
    );
    const part0 = fromTo.replace(/superblock$/, '0');
    assert.ok(second.some(got(part0)), `expected GET ${part0} → 200`);
    assert.ok(await cairn.waitForRequest(got(fromTo)), `Cairn's request log should show GET ${fromTo} → 200`);
    await fsck(c);
    await assertCheckoutEquals(c, 'cairn:d/main', src.v3, work);
  } finally {
    await proxy.close();
  }

  // An archive client never uses deltas; it must still get the same tree from loose objects.
  // Request lines reach the log within 20 ms (server/logsink.ts): let them settle before each count.
  const deltaRequests = async () => {
    await new Promise((r) => setTimeout(r, 200));
    return cairn.requests().filter((r) => r.path.startsWith('/repo/deltas/deltas/')).length;
  };
  const seen = await deltaRequests();
  const a = await client('archive', repoUrl('deltas'));
  await pull(a, ['cairn', 'd/main']);
  await assertCheckoutEquals(a, 'cairn:d/main', src.v3, work);
  assert.equal(await deltaRequests(), seen, 'an archive client asks for no delta files');
});

test('a repo that is a symlink in DATA/repos is pullable', async () => {
  const real = await initRepo(path.join(work, 'elsewhere', 'real-repo'), 'archive');
  const S = await commitTree(real, { branch: 'linked/main', tree: src.v2, subject: 'linked', timestamp: day(3) });
  await updateSummary(real);
  await fsp.symlink(real, path.join(repos, 'linked'));
  const c = await client('bare-user', repoUrl('linked'));
  await pull(c, ['cairn', 'linked/main']);
  assert.equal(await revParse(c, 'cairn:linked/main'), S);
  await fsck(c);
  await assertCheckoutEquals(c, 'cairn:linked/main', src.v2, work);
});

test('a repo created while Cairn runs is pullable (with and without a summary)', async () => {
  const late = await initRepo(path.join(repos, 'late'), 'archive');
  const N = await commitTree(late, { branch: 'late/main', tree: src.v1, subject: 'late', timestamp: day(4) });
  // no summary yet: the client reads refs/heads/late/main
  const c = await client('archive', repoUrl('late'));
  await pull(c, ['cairn', 'late/main']);
  assert.equal(await revParse(c, 'cairn:late/main'), N);
  await assertCheckoutEquals(c, 'cairn:late/main', src.v1, work);
  await updateSummary(late);
  const bu = await client('bare-user', repoUrl('late'));
  await pull(bu, ['cairn', 'late/main']);
  assert.equal(await revParse(bu, 'cairn:late/main'), N);
  await fsck(bu);
  await assertCheckoutEquals(bu, 'cairn:late/main', src.v1, work);
});

test('GPG: signed commits and summary verify; a changed summary is picked up (no stale summary)', async () => {
  const keyDir = await makeTempDir('cairn-gpg-');
  let key: GpgKey | undefined;
  try {
    key = await makeGpgKey(keyDir);
    const gpg = { keyId: key.keyId, homedir: key.homedir };
    const repo = await initRepo(path.join(repos, 'signed'), 'archive');
    const G1 = await commitTree(repo, { branch: 'signed/main', tree: src.v1, subject: 's1', timestamp: day(1) });
    await ostree(['gpg-sign', `--gpg-homedir=${key.homedir}`, G1, key.keyId], { repo });
    await updateSummary(repo, gpg);
    assert.ok(exists(path.join(repo, 'summary.sig')));

    const verifying = { gpgImport: key.publicKeyPath, set: { 'gpg-verify-summary': 'true' } };
    const c = await client('archive', repoUrl('signed'), verifying);
    const bu = await client('bare-user', repoUrl('signed'), verifying);
    await pull(c, ['cairn', 'signed/main']);
    await pull(bu, ['cairn', 'signed/main']);
    assert.equal(await revParse(c, 'cairn:signed/main'), G1);
    const shown = await ostree(['show', G1], { repo: c });
    assert.match(shown, /Good signature/, 'the commit signature was fetched (.commitmeta) and verifies');
    assert.match(shown, new RegExp(key.keyId.slice(-8)));

    // Control: the same remote without the key must refuse, or the pull above proves nothing.
    const noKey = await client('archive', repoUrl('signed'), { set: { 'gpg-verify': 'true', 'gpg-verify-summary': 'true' } });
    const refused = await ostreeResult(['pull', 'cairn', 'signed/main'], { repo: noKey });
    assert.notEqual(refused.code, 0, 'a client without the public key must fail to verify');
    assert.match(refused.stderr, /GPG|signature|public key/i);

    // Stale-summary trap (FORMATS.md §6): the client caches summary+summary.sig; both change.
    for (const [i, v] of (['v2', 'v3'] as const).entries()) {
      const G = await commitTree(repo, { branch: 'signed/main', tree: src[v], subject: `s${i + 2}`, timestamp: day(i + 2) });
      await ostree(['gpg-sign', `--gpg-homedir=${key.homedir}`, G, key.keyId], { repo });
      await updateSummary(repo, gpg);
      await pull(c, ['cairn', 'signed/main']);
      assert.equal(await revParse(c, 'cairn:signed/main'), G, `archive client sees new commit ${i + 2}`);
      // the summary was fetched once (cached with its signature): the next change must still show
      assert.match(await ostree(['remote', 'summary', 'cairn'], { repo: bu }), new RegExp(G));
      await pull(bu, ['cairn', 'signed/main']);
      assert.equal(await revParse(bu, 'cairn:signed/main'), G, `bare-user client sees new commit ${i + 2}`);
    }
    await fsck(c);
    await fsck(bu);
    await assertCheckoutEquals(bu, 'cairn:signed/main', src.v3, work);
  } finally {
    await key?.dispose();
  }
});

test('client-side errors and listings: unknown ref, unknown repo, remote refs, remote summary', async () => {
  const c = await client('archive', repoUrl('os'));
  const missing = await ostreeResult(['pull', 'cairn', 'no/such/ref'], { repo: c });
  assert.notEqual(missing.code, 0, 'pulling an unknown ref must fail');
  assert.match(missing.stderr, /no\/such\/ref/, `error should name the ref: ${missing.stderr}`);
  assert.match(missing.stderr, /No such branch|not found|404/i);

  const refs = (await ostree(['remote', 'refs', 'cairn'], { repo: c })).trim().split('\n').sort();
  assert.deepEqual(refs, [`cairn:${APP_REF}`, `cairn:${OS_REF}`].sort());

  const summary = await ostree(['remote', 'summary', 'cairn'], { repo: c });
  assert.match(summary, new RegExp(`\\* ${OS_REF.replace(/[+]/g, '\\+')}\\n\\s+Latest Commit \\(\\d+ bytes\\):\\n\\s+${C[2]}`));
  assert.match(summary, new RegExp(appCommit));
  assert.match(summary, /Timestamp \(ostree\.commit\.timestamp\)/);

  const nowhere = await client('archive', repoUrl('no-such-repo'));
  const r = await ostreeResult(['pull', 'cairn', OS_REF], { repo: nowhere });
  assert.notEqual(r.code, 0, 'pulling from an unknown repo must fail');
  assert.match(r.stderr, /404|not found|No such/i, r.stderr);
});
