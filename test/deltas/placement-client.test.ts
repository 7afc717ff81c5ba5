// The stock ostree client pulls through deltas whose parts the compiler placed itself
// (storage/deltas/placement.ts): all parts inline in the superblock (the default for an update
// that fits the client's 10 MiB superblock), and, under a smaller budget, metadata and the
// best-saving parts inline with the other parts' objects as fallbacks. Each pull is judged by
// `ostree fsck` and a checkout compared with the source tree; the server's request log shows that
// no part file was asked for, and that every fallback object was fetched loose. A delta patching a
// large binary (fewer than three parts) carries the patch's part three times, so that the client's
// queue stays closed until the patched file is written: the binary is never fetched loose beside
// its 2 kB patch.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { compileDelta } from '../../storage/deltas/compile';
import { decodeSuperblock, deltaDir, superblockKey } from '../../storage/deltas/format';
import { commitFolder } from '../../storage/import/folder';
import { objectKey, ObjectType } from '../../storage/objects/types';
import { Repo } from '../../storage/repo/repo';
import { updateSummary } from '../../storage/repo/summary';
import { startCairn, type CairnProcess } from '../helpers/cairn-process';
import { addRemote, assertCheckoutEquals, initRepo, makeTempDir, ostree, pseudoRandomBytes, removeTempDirs, revParse } from '../helpers/ostree';

let work: string;
let data: string;
let v1Dir: string;
let v2Dir: string;
let c1: string;
let c2: string;
let cairn: CairnProcess | undefined;
const REF = 'os/main';

/** Text that compresses like source code: varied lines, repeated words. */
const text = (seed: number, n: number) => Buffer.from(Array.from({ length: n }, (_, i) => `line ${i} of file ${seed}: ${'lorem ipsum '.repeat((i * seed) % 9)}${(i * 7919 + seed) % 104729}\n`).join(''));

async function repoWithPair(name: string, v1 = () => v1Dir, v2 = () => v2Dir): Promise<Repo> {
  const dir = path.join(data, 'repos', name);
  await initRepo(dir, 'archive');
  const repo = new Repo(name, new FsBackend(dir));
  const a = await commitFolder(repo, v1(), REF, { subject: 'v1', timestamp: 1_760_000_000n });
  const b = await commitFolder(repo, v2(), REF, { parent: a.commit, subject: 'v2', timestamp: 1_760_003_600n });
  c1 = a.commit;
  c2 = b.commit;
  await repo.setRef(REF, c2);
  return repo;
}

before(async () => {
  work = await makeTempDir('cairn-delta-placement-');
  data = path.join(work, 'data');
  v1Dir = path.join(work, 'v1');
  await fsp.mkdir(path.join(v1Dir, 'usr/lib'), { recursive: true });
  await fsp.mkdir(path.join(v1Dir, 'etc'), { recursive: true });
  for (let i = 0; i < 12; i++) await fsp.writeFile(path.join(v1Dir, 'usr/lib', `lib${i}.so`), text(i + 1, 3000));
  await fsp.writeFile(path.join(v1Dir, 'etc/os-release'), 'VERSION=1\n');
  v2Dir = path.join(work, 'v2');
  execFileSync('cp', ['-a', v1Dir, v2Dir]);
  // The update: a few libraries changed, many new files in new folders (~6 MB to splice).
  for (let i = 0; i < 3; i++) await fsp.appendFile(path.join(v2Dir, 'usr/lib', `lib${i}.so`), text(100 + i, 50));
  for (let d = 0; d < 6; d++) {
    await fsp.mkdir(path.join(v2Dir, `usr/share/pkg${d}`), { recursive: true });
    for (let i = 0; i < 5; i++) await fsp.writeFile(path.join(v2Dir, `usr/share/pkg${d}`, `data${i}.txt`), text(1000 + d * 10 + i, 2500));
  }
  await fsp.writeFile(path.join(v2Dir, 'etc/os-release'), 'VERSION=2\n');
});

after(async () => {
  await cairn?.stop();
  await removeTempDirs();
});

async function pullThroughDelta(repoName: string, source = v2Dir): Promise<{ client: string; paths: string[] }> {
  const client = path.join(work, `client-${repoName}`);
  await initRepo(client, 'bare-user');
  await addRemote(client, 'cairn', `${cairn!.url}/repo/${repoName}`);
  await ostree(['pull', 'cairn', `${REF}@${c1}`], { repo: client });
  const seen = cairn!.requests().length;
  await ostree(['pull', '--require-static-deltas', 'cairn', REF], { repo: client });
  assert.equal(await revParse(client, `cairn:${REF}`), c2);
  const sb = `/repo/${repoName}/${superblockKey(c1, c2)}`;
  assert.ok(await cairn!.waitForRequest((r) => r.path === sb && r.status === 200), `the client fetched the superblock ${sb}`);
  const fsck = await ostree(['fsck'], { repo: client });
  assert.match(fsck, /no errors found/);
  await assertCheckoutEquals(client, `cairn:${REF}`, source, work);
  return { client, paths: cairn!.requests().slice(seen).map((r) => r.path) };
}

test('an update that fits the superblock: every part inline, no part file, the stock client applies it', async () => {
  const repo = await repoWithPair('inline');
  const r = await compileDelta(repo, c1, c2);
  assert.ok(r.stats.inlineParts >= 3, `several parts inline (${r.stats.inlineParts})`);
  assert.deepEqual(r.partSizes, []);
  assert.equal(r.stats.fallbacks, 0);
  assert.equal(r.totalSize, r.superblockSize);
  assert.deepEqual(
    (await fsp.readdir(path.join(data, 'repos', 'inline', deltaDir(c1, c2)))).filter((f) => f !== 'superblock'),
    [],
    'nothing but the superblock on disk',
  );
  // Deterministic: the same compile again gives the same superblock.
  const again = await compileDelta(repo, c1, c2, { replace: true, timestamp: new Date(1_760_010_000_000) });
  const third = await compileDelta(repo, c1, c2, { replace: true, timestamp: new Date(1_760_010_000_000) });
  assert.equal(again.digest, third.digest);
  await updateSummary(repo);

  cairn = await startCairn({ dataDir: data, env: { CAIRN_LOG: 'info' } });
  const { paths } = await pullThroughDelta('inline');
  const partPrefix = `/repo/inline/${deltaDir(c1, c2)}/`;
  assert.deepEqual(paths.filter((p) => p.startsWith(partPrefix) && !p.endsWith('/superblock')), [], 'no part file requested');
});

test('over a (small) budget: metadata and the best parts inline, the rest as fallbacks fetched loose', async () => {
  const repo = await repoWithPair('budget');
  const full = await compileDelta(repo, c1, c2, { replace: true });
  const budget = Math.floor(full.superblockSize / 2);
  const r = await compileDelta(repo, c1, c2, { replace: true, inlineBudget: budget });
  assert.ok(r.stats.inlineParts >= 1, `some parts inline (${r.stats.inlineParts})`);
  assert.ok(r.stats.fallbacks > 0, 'the other parts became fallbacks');
  assert.ok(r.superblockSize <= budget + 64 * 1024, `superblock ${r.superblockSize} B near the budget ${budget} B`);
  assert.deepEqual(r.partSizes, []);
  const sb = decodeSuperblock((await repo.backend.read(superblockKey(c1, c2)))!.data);
  assert.ok(sb.parts.some((p) => p.objects.some((o) => o.type === ObjectType.DirTree)), 'the metadata stayed inline');
  assert.ok(sb.fallbacks.every((f) => f.type === ObjectType.File));
  // Every object of v2 that v1 lacks is in an inline part or a fallback, exactly once.
  const inParts = sb.parts.flatMap((p) => p.objects.filter((o) => o.type === ObjectType.File).map((o) => o.checksum));
  const asFallbacks = sb.fallbacks.map((f) => f.checksum);
  assert.equal(new Set([...inParts, ...asFallbacks]).size, inParts.length + asFallbacks.length, 'no object both inline and a fallback');
  await updateSummary(repo);

  await cairn?.stop();
  cairn = await startCairn({ dataDir: data, env: { CAIRN_LOG: 'info' } });
  const { paths } = await pullThroughDelta('budget');
  for (const f of sb.fallbacks) {
    const p = `/repo/budget/${objectKey(f.checksum, ObjectType.File)}`;
    assert.ok(paths.includes(p), `fallback ${f.checksum.slice(0, 12)} fetched loose`);
  }
});

test('a small patch of a large binary: its part carried three times; the binary is never fetched loose', async () => {
  const b1 = path.join(work, 'bin-v1');
  const b2 = path.join(work, 'bin-v2');
  await fsp.mkdir(path.join(b1, 'usr/bin'), { recursive: true });
  const binary = pseudoRandomBytes(77, 3_000_000);
  await fsp.writeFile(path.join(b1, 'usr/bin/tool'), binary);
  execFileSync('cp', ['-a', b1, b2]);
  const patched = Buffer.from(binary);
  for (const at of [1000, 1_500_000, 2_999_000]) patched[at] = patched[at]! ^ 0xff;
  await fsp.writeFile(path.join(b2, 'usr/bin/tool'), patched);
  const repo = await repoWithPair('patch', () => b1, () => b2);
  const r = await compileDelta(repo, c1, c2);
  assert.equal(r.stats.bsdiffFiles, 1);
  assert.ok(r.stats.inlineParts >= 3, `at least three part entries in the superblock (${r.stats.inlineParts})`);
  assert.ok(r.totalSize < 50_000, `a small delta (${r.totalSize} B)`);
  const sb = decodeSuperblock((await repo.backend.read(superblockKey(c1, c2)))!.data);
  const times = new Map<string, number>();
  for (const p of sb.parts) times.set(p.checksum, (times.get(p.checksum) ?? 0) + 1);
  assert.ok([...times.values()].includes(3), `the patch's part carried three times (${[...times.values()]})`);
  await updateSummary(repo);

  await cairn?.stop();
  cairn = await startCairn({ dataDir: data, env: { CAIRN_LOG: 'info' } });
  const { paths } = await pullThroughDelta('patch', b2);
  const loose = paths.filter((p) => p.endsWith('.filez'));
  assert.deepEqual(loose, [], 'no content object fetched loose');
});
