import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { listDeltas } from '../../storage/deltas/inventory';
import { dictGet, parse, type VarDict } from '../../storage/gvariant';
import { commitFolder } from '../../storage/import/folder';
import { OBJECT_GVARIANT_TYPE } from '../../storage/objects/types';
import { RepoRegistry } from '../../storage/repo/registry';
import type { Repo } from '../../storage/repo/repo';
import { ensureRepoKeys } from '../../storage/signing/keys';
import { PROJECT_ROOT } from '../helpers/fixtures';

/**
 * `cairn delta generate|list|show|prune` as an operator runs them: compiled in
 * process, summary (signed when the repository has keys) and indexes updated,
 * immutability, usage errors.
 */

const BIN = path.join(PROJECT_ROOT, 'bin', 'cairn.js');
let dataDir: string;
let repo: Repo;
const C: string[] = [];

const cairn = (...args: string[]) => spawnSync(process.execPath, [BIN, 'delta', ...args, '--data', dataDir], { encoding: 'utf8' });

before(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'cairn-cli-delta-'));
  const registry = new RepoRegistry(dataDir);
  repo = await registry.create('os');
  for (let v = 1; v <= 3; v++) {
    const dir = path.join(dataDir, 'src', `v${v}`);
    mkdirSync(path.join(dir, 'etc'), { recursive: true });
    writeFileSync(path.join(dir, 'etc/version'), `v${v}\n`);
    writeFileSync(path.join(dir, 'etc/big'), Buffer.alloc(50_000, v));
    const { commit } = await commitFolder(repo, dir, 'os/main', { parent: C[C.length - 1] ?? null, timestamp: BigInt(1_760_000_000 + v) });
    C.push(commit);
  }
  await repo.setRef('os/main', C[2]!);
  await ensureRepoKeys(dataDir, 'os'); // the repository signs: generate must sign the summary too
});

after(() => rmSync(dataDir, { recursive: true, force: true }));

async function summaryDeltaNames(): Promise<string[]> {
  const got = await repo.backend.read('summary');
  assert.ok(got, 'a summary was written');
  const [, extra] = parse(OBJECT_GVARIANT_TYPE.summary, got.data) as [unknown, VarDict];
  return ((dictGet(extra, 'ostree.static-deltas')?.value ?? []) as VarDict).map(([k]) => k).sort();
}

test('generate: from the parent by default, from a ref, from scratch; the summary is signed and lists them', async () => {
  let r = cairn('generate', '--repo', 'os', '--to', 'os/main');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), `${C[1]}-${C[2]}`);
  assert.match(r.stderr, /compiling/);
  assert.match(r.stderr, /delta .* bytes in \d+ parts/);

  r = cairn('generate', '--repo', 'os', '--from', C[0]!, '--to', C[2]!);
  assert.equal(r.status, 0, r.stderr);
  r = cairn('generate', '--repo', 'os', '--empty', '--to', 'os/main');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), C[2]);

  const expected = [`${C[1]}-${C[2]}`, `${C[0]}-${C[2]}`, C[2]!].sort();
  assert.deepEqual((await listDeltas(repo)).map((d) => d.name), expected);
  assert.deepEqual(await summaryDeltaNames(), expected);
  assert.ok(existsSync(path.join(repo.backend.location, 'summary.sig')), 'summary signed with the repository keys');

  // Immutable: asking again changes nothing and succeeds.
  const before = (await listDeltas(repo)).find((d) => d.name === C[2])!.digest;
  r = cairn('generate', '--repo', 'os', '--empty', '--to', C[2]!);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /already exists/);
  assert.equal((await listDeltas(repo)).find((d) => d.name === C[2])!.digest, before);
});

test('list and show', () => {
  let r = cairn('list', '--repo', 'os');
  assert.equal(r.status, 0, r.stderr);
  const rows = r.stdout.trim().split('\n').map((l) => l.split('\t'));
  assert.equal(rows.length, 3);
  for (const [, size, parts] of rows) assert.ok(Number(size) > 0 && Number(parts) >= 1);

  r = cairn('list', '--repo', 'os', '--json');
  const json = JSON.parse(r.stdout) as { deltas: Array<{ name: string; digest: string }> };
  assert.equal(json.deltas.length, 3);

  r = cairn('show', '--repo', 'os', `${C[1]}-${C[2]}`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`From: +${C[1]}`));
  assert.match(r.stdout, new RegExp(`To: +${C[2]}`));
  assert.match(r.stdout, /Parts: +\d+/);
  assert.match(r.stdout, new RegExp(`Digest: +${json.deltas.find((d) => d.name === `${C[1]}-${C[2]}`)!.digest}`));

  r = cairn('show', '--repo', 'os', '--json', C[2]!);
  assert.equal(r.status, 0, r.stderr);
  const d = JSON.parse(r.stdout) as { from: null; to: string; parts: unknown[] };
  assert.equal(d.from, null);
  assert.equal(d.to, C[2]);

  r = cairn('show', '--repo', 'os', `${C[0]}-${C[1]}`);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no static delta/);
});

test('prune removes deltas of commits that are gone', async () => {
  rmSync(path.join(repo.backend.location, 'objects', C[0]!.slice(0, 2), `${C[0]!.slice(2)}.commit`));
  const r = cairn('prune', '--repo', 'os');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), `removed ${C[0]}-${C[2]}`);
  assert.deepEqual(await summaryDeltaNames(), [`${C[1]}-${C[2]}`, C[2]!].sort());
});

test('usage errors exit 2; unknown commits and repositories exit 1', () => {
  for (const args of [[], ['frobnicate'], ['generate', '--repo', 'os'], ['generate', '--to', 'x', '--from', 'y', '--empty'], ['list', '--to', 'x'], ['show', '--repo', 'os'], ['show', '--repo', 'os', 'not-hex']]) {
    const r = cairn(...args);
    assert.equal(r.status, args.includes('not-hex') ? 1 : 2, `${args.join(' ')}: ${r.stderr}`);
  }
  let r = cairn('generate', '--repo', 'os', '--to', 'no/such/ref');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no ref no\/such\/ref/);
  r = cairn('list', '--repo', 'nope');
  assert.equal(r.status, 1);
  r = cairn('generate', '--repo', 'os', '--to', C[0]!); // pruned above
  assert.equal(r.status, 1);
});
