// Crash at every write of a flatpak publish: a child process publishes a new app commit into a
// flatpak repository Cairn owns (signed) and kills itself (SIGKILL, storage/repo/faults.ts) at the
// n-th write step, for n = 1, 2, … until one goes through. After each kill, as a client could see
// it at that moment: summary.idx names only subsummaries (summaries/*.gz) and index signatures that
// are on disk, and the history it lists has its deltas; then recovery (as at the next start) leaves
// no journal, and the index's subsummary lists exactly the refs on disk.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { parse, type VarDict } from '../../storage/gvariant';
import { OBJECT_GVARIANT_TYPE } from '../../storage/objects/types';
import { parseIndex } from '../../storage/flatpak/index';
import { sha256Hex } from '../../storage/objects/checksum';
import { writeRemoteConfig } from '../../storage/flatpak/config';
import { RepoRegistry } from '../../storage/repo/registry';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-flatpak-crash-'));
const data = path.join(work, 'data');
const repoDir = path.join(data, 'repos', 'fp');
const REF = 'app/org.cairn.Crash/x86_64/stable';
const MAX_STEPS = 60;

after(() => fs.rmSync(work, { recursive: true, force: true }));

/** A new orphan commit of a tiny app tree, made by the ostree CLI (as build-export would, with xa.metadata). */
function newCommit(n: number): string {
  const src = path.join(work, `src-${n}`);
  fs.mkdirSync(path.join(src, 'files', 'bin'), { recursive: true });
  fs.writeFileSync(path.join(src, 'files', 'bin', 'app'), `#!/bin/sh\necho ${n}\n`, { mode: 0o755 });
  fs.writeFileSync(path.join(src, 'metadata'), '[Application]\nname=org.cairn.Crash\nruntime=org.cairn.Platform/x86_64/stable\n');
  const out = execFileSync('ostree', ['commit', `--repo=${repoDir}`, '--orphan', '--no-bindings', `--tree=dir=${src}`, `--subject=v${n}`, '--add-metadata-string=xa.metadata=[Application]\nname=org.cairn.Crash\n'], { encoding: 'utf8' });
  return out.trim();
}

const DIST = path.join(__dirname, '..', '..');
const script = (body: string) => `
const { RepoRegistry } = require(${JSON.stringify(path.join(DIST, 'storage/repo/registry.js'))});
const { ensureRepoKeys } = require(${JSON.stringify(path.join(DIST, 'storage/signing/keys.js'))});
const { createRepoSigner } = require(${JSON.stringify(path.join(DIST, 'storage/signing/signer.js'))});
const { updateRefs } = require(${JSON.stringify(path.join(DIST, 'storage/repo/publish.js'))});
const { recoverRepo } = require(${JSON.stringify(path.join(DIST, 'storage/repo/recovery.js'))});
(async () => {
  const repo = await new RepoRegistry(${JSON.stringify(data)}).open('fp');
  const signer = createRepoSigner(await ensureRepoKeys(${JSON.stringify(data)}, 'fp'));
  ${body}
})().then(() => process.exit(0), (e) => { console.error(e); process.exit(3); });
`;

function run(body: string, env: NodeJS.ProcessEnv = {}): { code: number | null; signal: NodeJS.Signals | null; err: string } {
  const r = spawnSync(process.execPath, ['-e', script(body)], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  return { code: r.status, signal: r.signal, err: r.stderr };
}

/** What a client fetching summary.idx now would find. */
function assertIndexSound(when: string): void {
  const idxFile = path.join(repoDir, 'summary.idx');
  if (!fs.existsSync(idxFile)) return;
  const bytes = fs.readFileSync(idxFile);
  const idx = parseIndex(bytes);
  assert.ok(idx, `${when}: summary.idx parses`);
  assert.ok(fs.existsSync(path.join(repoDir, 'summaries', `${sha256Hex(bytes)}.idx.sig`)), `${when}: the index's signature is there`);
  for (const [name, e] of idx.subsummaries) {
    const gz = path.join(repoDir, 'summaries', `${e.digest}.gz`);
    assert.ok(fs.existsSync(gz), `${when}: subsummary ${name} (${e.digest}) is there`);
    assert.equal(sha256Hex(gunzipSync(fs.readFileSync(gz))), e.digest, `${when}: subsummary ${name} is whole`);
    for (const h of e.history) assert.ok(fs.existsSync(path.join(repoDir, 'summaries', `${h}-${e.digest}.delta`)), `${when}: delta from ${h} is there`);
  }
}

function indexRefs(): string[] {
  const idx = parseIndex(fs.readFileSync(path.join(repoDir, 'summary.idx')))!;
  const e = idx.subsummaries.get('x86_64')!;
  const [refs] = parse(OBJECT_GVARIANT_TYPE.summary, gunzipSync(fs.readFileSync(path.join(repoDir, 'summaries', `${e.digest}.gz`)))) as [Array<[string, [bigint, Buffer, VarDict]]>];
  return refs.map(([r, [, c]]) => `${r} ${c.toString('hex')}`);
}

function diskRefs(): string[] {
  return execFileSync('ostree', ['refs', `--repo=${repoDir}`], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .filter(Boolean)
    .sort()
    .map((r) => `${r} ${execFileSync('ostree', ['rev-parse', `--repo=${repoDir}`, r], { encoding: 'utf8' }).trim()}`);
}

test('a flatpak publish killed at every write step never leaves an index naming a file that is not there', async () => {
  const repo = await new RepoRegistry(data).create('fp');
  await writeRemoteConfig(repo, { title: 'Crash' });
  // v1 published without a fault: there is an index (with history to come) before the crashes.
  const first = run(`await updateRefs(repo, [{ ref: ${JSON.stringify(REF)}, commit: ${JSON.stringify(newCommit(0))} }], { actor: 't', signer });`);
  assert.equal(first.code, 0, first.err);
  assertIndexSound('after v1');
  let n = 1;
  let kills = 0;
  for (; n <= MAX_STEPS; n++) {
    const commit = newCommit(n);
    const r = run(`await updateRefs(repo, [{ ref: ${JSON.stringify(REF)}, commit: ${JSON.stringify(commit)} }], { actor: 't', signer });`, { CAIRN_FAULT_AT: String(n) });
    if (r.code === 0) break;
    assert.equal(r.signal, 'SIGKILL', `step ${n}: ${r.err}`);
    kills++;
    assertIndexSound(`killed at step ${n}`);
    const rec = run('const r = await recoverRepo(repo, { signer: signer.signSummary }); if (r.problems.length) throw new Error(r.problems.join("; "));');
    assert.equal(rec.code, 0, rec.err);
    assertIndexSound(`recovered after step ${n}`);
    assert.ok(!fs.existsSync(path.join(repoDir, 'state', 'cairn', 'publish.journal')), 'no journal left');
    assert.deepEqual(indexRefs(), diskRefs(), `step ${n}: the index lists the refs on disk`);
  }
  assert.ok(n <= MAX_STEPS, 'a publish went through');
  assert.ok(kills >= 8, `the publish has its write steps (${kills} kills)`);
  assertIndexSound('at the end');
  assert.deepEqual(indexRefs(), diskRefs());
});
