// Ownership with the real `ostree` CLI (security review: an anonymous GET of a missing from→to
// superblock made Cairn compile the delta into a repository made by `ostree`, and write a new
// summary and summary.sig into it, signed with a key made on the spot; the owner's next
// `ostree commit` then went unseen by clients). A repository made by `ostree init` + `ostree
// commit`, symlinked into DATA/repos under a running Cairn, must stay byte for byte as it is —
// whatever hosts ask for and whatever publishers push — until `cairn adopt`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { jobsSettled, projectRoot, startCairn, type CairnProcess } from '../helpers/cairn-process';
import {
  addRemote,
  assertCheckoutEquals,
  commitTree,
  deltaSuperblockPath,
  initRepo,
  makeSourceTree,
  makeTempDir,
  ostree,
  removeTempDirs,
  revParse,
  runCommand,
  type RunResult,
} from '../helpers/ostree';

const REF = 'os/stable';
const CLI = path.join(projectRoot(), 'bin', 'cairn.js');

let work: string;
let data: string;
let theirs: string; // the repository the `ostree` CLI made, outside the data folder
let flat: string; // one whose publisher also ran `ostree summary -u` with its own metadata (as flatpak does)
let cairn: CairnProcess;
const C: string[] = [];
let flatHead = '';
const src: string[] = [];

function cli(args: string[]): Promise<RunResult> {
  return runCommand(process.execPath, [CLI, ...args], { env: { ...process.env, CAIRN_TOKEN: '' }, timeoutMs: 300_000 });
}

/** Every file and folder under `dir`: relative path → type, mode, size and sha256 of the bytes. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string) => {
    for (const e of await fsp.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const p = path.join(dir, r);
      const st = await fsp.lstat(p);
      if (e.isDirectory()) {
        out.set(`${r}/`, `dir ${st.mode.toString(8)}`);
        await walk(r);
      } else if (e.isSymbolicLink()) {
        out.set(r, `link ${await fsp.readlink(p)}`);
      } else {
        out.set(r, `file ${st.mode.toString(8)} ${st.size} ${createHash('sha256').update(await fsp.readFile(p)).digest('hex')}`);
      }
    }
  };
  await walk('');
  return out;
}

function diff(a: Map<string, string>, b: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of a) if (b.get(k) !== v) out.push(`${b.has(k) ? 'changed' : 'removed'} ${k}`);
  for (const k of b.keys()) if (!a.has(k)) out.push(`added ${k}`);
  return out;
}

before(async () => {
  work = await makeTempDir('cairn-e2e-ownership-');
  data = path.join(work, 'data');
  await fsp.mkdir(path.join(data, 'repos'), { recursive: true });
  const src1 = await makeSourceTree(path.join(work, 'src', 'v1'), { seed: 4 });
  const src2 = await makeSourceTree(path.join(work, 'src', 'v2'), { seed: 4, extra: { 'added-in-v2.txt': 'two\n' } });
  src.push(src1, src2);

  // `ostree init` + `ostree commit`, no summary: the repository of the report.
  theirs = await initRepo(path.join(work, 'elsewhere', 'theirs'), 'archive');
  C.push(await commitTree(theirs, { branch: REF, tree: src1, subject: 'v1', timestamp: 1_709_251_200 }));
  C.push(await commitTree(theirs, { branch: REF, tree: src2, subject: 'v2', timestamp: 1_709_337_600 }));
  await fsp.symlink(theirs, path.join(data, 'repos', 'theirs'));

  // A publisher-made summary with keys of its own (flatpak's xa.* live there).
  flat = await initRepo(path.join(data, 'repos', 'flat'), 'archive');
  flatHead = await commitTree(flat, { branch: 'app/org.example.App/x86_64/stable', tree: src1, subject: 'app', timestamp: 1_709_251_200 });
  await commitTree(flat, { branch: 'app/org.example.App/x86_64/stable', tree: src2, subject: 'app 2', timestamp: 1_709_337_600 });
  await ostree(['summary', '-u', "--add-metadata=xa.title='Example'"], { repo: flat });

  cairn = await startCairn({ dataDir: data, env: { CAIRN_LOG: 'info' } });
});

after(async () => {
  await cairn?.stop();
  await removeTempDirs();
});

test('a repository made by `ostree`: anonymous requests write nothing into it, a push answers 403 NOT_OWNED until `cairn adopt`', async () => {
  assert.deepEqual((await fsp.readdir(path.join(data, 'repos'))).sort(), ['flat', 'theirs'], 'Cairn created no repository of its own');
  const before = await snapshot(theirs);
  const flatBefore = await snapshot(flat);

  // What hosts (and strangers) may ask for: a missing from→to superblock (the on-demand path), keys.
  const sb = `${cairn.url}/repo/theirs/${deltaSuperblockPath(C[0]!, C[1]!)}`;
  for (let i = 0; i < 3; i++) assert.equal((await fetch(sb)).status, 404);
  assert.equal((await fetch(`${cairn.url}/repo/flat/${deltaSuperblockPath(flatHead, (await revParse(flat, 'app/org.example.App/x86_64/stable')))}`)).status, 404);
  assert.equal((await fetch(`${cairn.url}/repo/theirs/keys/gpg.asc`)).status, 404, 'no key made (nor served) for a repository Cairn does not own');
  assert.equal((await fetch(`${cairn.url}/repo/theirs/summary`)).status, 404, 'still no summary');

  // A push with a valid token: refused before anything is stored.
  const tok = await cli(['token', '--data', data, '--scope', 'push', '--repo', 'theirs', '--repo', 'flat', '--ttl', '1h']);
  assert.equal(tok.code, 0, tok.stderr);
  const token = tok.stdout.trim();
  const local = await initRepo(path.join(work, 'local'), 'archive');
  const src3 = await makeSourceTree(path.join(work, 'src', 'v3'), { seed: 4, extra: { 'added-in-v3.txt': 'three\n' } });
  const c3 = await commitTree(local, { branch: REF, tree: src3, subject: 'v3', timestamp: 1_709_424_000 });
  const push = (repo: string) => cli(['push', '--url', `${cairn.url}/repo/${repo}`, '--token', token, '--repo', local, '--retries', '0', REF]);
  const refused = await push('theirs');
  assert.equal(refused.code, 1, refused.stdout);
  assert.match(refused.stderr, /403 NOT_OWNED: repository theirs was not created by Cairn; run `cairn adopt theirs` to let Cairn publish into it/);
  const refs = await fetch(`${cairn.url}/api/repos/theirs/refs`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ updates: [{ ref: REF, commit: C[0], expected: C[1] }] }) });
  assert.equal(refs.status, 403);
  assert.equal(((await refs.json()) as { error: { code: string } }).error.code, 'NOT_OWNED');
  const deltaApi = await fetch(`${cairn.url}/api/repos/theirs/deltas`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ from: C[0], to: C[1] }) });
  assert.equal(deltaApi.status, 403);
  assert.equal((await push('flat')).code, 1);

  await jobsSettled(cairn.url);
  assert.deepEqual(diff(before, await snapshot(theirs)), [], 'not one file of the ostree-made repository changed');
  assert.deepEqual(diff(flatBefore, await snapshot(flat)), [], 'the publisher’s summary (and everything else) is untouched');
  assert.equal(existsSync(path.join(data, 'keys', 'theirs')), false, 'no signing key generated for it');
  assert.match(await ostree(['summary', '--view'], { repo: flat }), /xa\.title/);
  // The owner keeps publishing with the ostree CLI, and Cairn serves what is on disk.
  assert.equal((await (await fetch(`${cairn.url}/repo/theirs/refs/heads/${REF}`)).text()).trim(), C[1]);

  // Adoption, while the server runs: owned, summary regenerated and signed once.
  const adopted = await cli(['adopt', 'theirs', '--data', data]);
  assert.equal(adopted.code, 0, adopted.stderr);
  assert.match(adopted.stderr, /adopted theirs/);
  assert.ok(existsSync(path.join(theirs, 'summary')) && existsSync(path.join(theirs, 'summary.sig')), 'summary and summary.sig written at adoption');
  const view = await ostree(['summary', '--view'], { repo: theirs });
  assert.ok(view.includes(REF) && view.includes(C[1]!), `the summary lists ${REF} at ${C[1]}:\n${view}`);
  const key = await fetch(`${cairn.url}/repo/theirs/keys/gpg.asc`);
  assert.equal(key.status, 200);
  const keyFile = path.join(work, 'theirs.asc');
  await fsp.writeFile(keyFile, Buffer.from(await key.arrayBuffer()));

  const pushed = await push('theirs');
  assert.equal(pushed.code, 0, pushed.stderr);
  // A host verifying Cairn's signatures gets the pushed commit (also while the push's delta jobs
  // regenerate the summary: the pair is served as one, docs/publishing.md).
  const client = await initRepo(path.join(work, 'client'), 'archive');
  await addRemote(client, 'cairn', `${cairn.url}/repo/theirs`, { gpgImport: keyFile, set: { 'gpg-verify': 'true', 'gpg-verify-summary': 'true' } });
  await ostree(['pull', 'cairn', REF], { repo: client });
  assert.equal(await revParse(client, `cairn:${REF}`), c3);
  await assertCheckoutEquals(client, `cairn:${REF}`, src3, work);

  // `flat` was never adopted: still refused, still untouched.
  assert.equal((await push('flat')).code, 1);
  await jobsSettled(cairn.url);
  assert.deepEqual(diff(flatBefore, await snapshot(flat)), []);
});

test('cairn commit and cairn delta refuse a repository Cairn does not own and leave it untouched; --adopt adopts it first', async () => {
  const other = await initRepo(path.join(data, 'repos', 'other'), 'archive');
  await commitTree(other, { branch: REF, tree: src[0]!, subject: 'o1', timestamp: 1_709_251_200 });
  const o2 = await commitTree(other, { branch: REF, tree: src[1]!, subject: 'o2', timestamp: 1_709_337_600 });
  const before = await snapshot(other);
  const notOwned = /repository other was not created by Cairn; run `cairn adopt other`/;

  const commit = ['commit', '--data', data, '--repo', 'other', '-b', REF, '--tree', src[0]!, '-s', 'o3'];
  for (const args of [commit, ['delta', 'generate', '--data', data, '--repo', 'other', '--to', REF], ['delta', 'prune', '--data', data, '--repo', 'other']]) {
    const r = await cli(args);
    assert.equal(r.code, 1, `${args.slice(0, 2).join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, notOwned);
  }
  const list = await cli(['delta', 'list', '--data', data, '--repo', 'other']);
  assert.equal(list.code, 0, 'listing deltas is a read');
  assert.deepEqual(diff(before, await snapshot(other)), [], 'refused commands wrote nothing');
  assert.equal(existsSync(path.join(data, 'keys', 'other')), false);

  const adopted = await cli([...commit, '--adopt']);
  assert.equal(adopted.code, 0, adopted.stderr);
  assert.match(adopted.stderr, /adopted other/);
  const o3 = adopted.stdout.trim();
  assert.equal(await revParse(other, REF), o3);
  assert.equal((await ostree(['log', REF], { repo: other })).includes(o2), true, 'o3 follows o2');
  const gen = await cli(['delta', 'generate', '--data', data, '--repo', 'other', '--to', REF]);
  assert.equal(gen.code, 0, gen.stderr);
  assert.equal(gen.stdout.trim(), `${o2}-${o3}`);
  assert.match(await ostree(['fsck'], { repo: other }), /no errors/i);
});
