// The compiler reads, diffs and compresses several objects and parts at once; its output must
// not depend on which finishes first. A delta that takes every path of the layout — plain files
// in parts of their own compressed while the bsdiffs run, a large payload split in two parts,
// patches and files whose patch lost in a late part, a nearly-all-zero anchored patch (xz fast
// mode) — is compiled twice, once through a backend that answers reads after random delays, and
// must come out byte for byte the same; then Cairn's applier rebuilds the commit from it (the
// real `ostree fsck` and a checkout compared with the source tree judge the result).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { ByteRange } from '../../storage/backends/backend';
import { FsBackend } from '../../storage/backends/fs';
import { compileDelta } from '../../storage/deltas/compile';
import { deltaDir } from '../../storage/deltas/format';
import { backendDeltaSource } from '../../storage/deltas/read';
import { commitFolder } from '../../storage/import/folder';
import { Repo } from '../../storage/repo/repo';
import { makeTempDir, pseudoRandomBytes, removeTempDirs } from '../helpers/ostree';
import { mulberry32 } from '../helpers/prng';
import { applyAndJudge, freshRepo } from './helpers';

/** An FsBackend whose reads answer after 0–8 ms, in an order set by `seed`. */
class JitteryBackend extends FsBackend {
  private readonly rnd: () => number;
  constructor(root: string, seed: number) {
    super(root);
    this.rnd = mulberry32(seed);
  }
  private wait(): Promise<void> {
    return new Promise((r) => setTimeout(r, Math.floor(this.rnd() * 8)));
  }
  override async openReader(key: string) {
    await this.wait();
    return super.openReader(key);
  }
  override async openRead(key: string, range?: ByteRange) {
    await this.wait();
    return super.openRead(key, range);
  }
}

/** The LZMA2 dictionary size a part file's first xz block declares (preset 8: 32 MiB; the fast preset 1: 1 MiB). */
function partDictSize(part: Buffer): number {
  let at = 1 + 12; // compression byte, xz stream header
  const flags = part[at + 1]!;
  at += 2;
  const vli = () => {
    let v = 0;
    for (let i = 0; ; i++) {
      const b = part[at++]!;
      v += (b & 0x7f) * 2 ** (7 * i);
      if (!(b & 0x80)) return v;
    }
  };
  if (flags & 0x40) vli(); // compressed size
  if (flags & 0x80) vli(); // uncompressed size
  assert.equal(vli(), 0x21, 'LZMA2 filter');
  assert.equal(vli(), 1, 'one property byte');
  const code = part[at]!;
  return code % 2 === 0 ? 2 ** (code / 2 + 12) : 3 * 2 ** ((code - 1) / 2 + 11);
}

let work: string;
let repoDir: string;
let v1Dir: string;
let v2Dir: string;
let c1: string;
let c2: string;

const text = (seed: number, n: number) => Buffer.from(Array.from({ length: n }, (_, i) => `line ${i} of file ${seed}: ${'abcdefgh'.repeat((i * seed) % 7)}\n`).join(''));

before(async () => {
  work = await makeTempDir('cairn-delta-determinism-');
  repoDir = path.join(work, 'repo');
  const repo = await Repo.init('r', new FsBackend(repoDir));
  const src = path.join(work, 'src');
  for (const d of ['etc', 'usr/lib', 'usr/share/doc', 'usr/bin']) await fsp.mkdir(path.join(src, d), { recursive: true });
  for (let i = 0; i < 30; i++) await fsp.writeFile(path.join(src, 'etc', `c${i}.conf`), text(i + 1, 40 + i));
  for (let i = 0; i < 6; i++) await fsp.writeFile(path.join(src, 'usr/lib', `old${i}.so`), pseudoRandomBytes(50 + i, 300_000));
  // A 3 MB binary edited in a few spots: an anchored bsdiff, nearly all zero bytes.
  await fsp.writeFile(path.join(src, 'usr/bin/tool'), pseudoRandomBytes(77, 3_000_000));
  c1 = (await commitFolder(repo, src, 'test/main', { subject: 'v1', timestamp: 1_760_000_000n })).commit;
  v1Dir = path.join(work, 'v1');
  execFileSync('cp', ['-a', src, v1Dir]);

  // v2: edited configs (patches), a rewritten library (its patch loses: spliced), the binary
  // patched, and 6 MB of new files (plain: parts of their own, split in two).
  for (let i = 0; i < 30; i += 3) await fsp.appendFile(path.join(src, 'etc', `c${i}.conf`), `added=${i}\n`);
  await fsp.writeFile(path.join(src, 'usr/lib/old0.so'), pseudoRandomBytes(9999, 20_000));
  const tool = await fsp.readFile(path.join(src, 'usr/bin/tool'));
  for (const at of [1000, 1_500_000, 2_900_000]) tool.write('patched', at);
  await fsp.writeFile(path.join(src, 'usr/bin/tool'), tool);
  for (let i = 0; i < 12; i++) await fsp.writeFile(path.join(src, 'usr/share/doc', `new${i}.txt`), Buffer.concat([text(100 + i, 2000), pseudoRandomBytes(200 + i, 400_000)]));
  await fsp.symlink('new0.txt', path.join(src, 'usr/share/doc/latest'));
  c2 = (await commitFolder(repo, src, 'test/main', { parent: c1, subject: 'v2', timestamp: 1_760_003_600n })).commit;
  v2Dir = src;
});

after(() => removeTempDirs());

test('same inputs, same parts byte for byte, whatever order the reads and compressions finish in; the delta applies', async (t) => {
  const when = new Date('2026-02-03T04:05:06Z');
  const copies = [path.join(work, 'a'), path.join(work, 'b'), path.join(work, 'c')];
  for (const c of copies) execFileSync('cp', ['-a', repoDir, c]);
  const results = [];
  for (const [i, c] of copies.entries()) {
    const backend = i === 0 ? new FsBackend(c) : new JitteryBackend(c, 1000 + i);
    results.push(await compileDelta(new Repo('r', backend), c1, c2, { timestamp: when, inline: false }));
  }
  const [a] = results;
  t.diagnostic(`parts ${JSON.stringify(a!.partSizes)}; ${JSON.stringify(a!.stats)}`);
  // The layout took the paths this test is about.
  assert.ok(a!.partSizes.length >= 3, `early parts split in two plus a late part (${a!.partSizes.length} parts)`);
  assert.ok(a!.stats.bsdiffFiles >= 2, `patches (${a!.stats.bsdiffFiles})`);
  assert.ok(a!.stats.bsdiffRejected >= 1, `a patch that lost (${a!.stats.bsdiffRejected})`);
  for (const r of results.slice(1)) assert.equal(r.digest, a!.digest, 'same superblock');
  const dir = deltaDir(c1, c2);
  const names = await fsp.readdir(path.join(copies[0]!, dir));
  for (const c of copies.slice(1)) {
    assert.deepEqual(await fsp.readdir(path.join(c, dir)), names);
    for (const f of names) assert.ok((await fsp.readFile(path.join(copies[0]!, dir, f))).equals(await fsp.readFile(path.join(c, dir, f))), f);
  }

  // The early parts at ostree's preset 8, the late one (the patch, 99% zero bytes) in xz's fast mode.
  const dicts = await Promise.all(names.filter((n) => /^\d+$/.test(n)).sort((x, y) => Number(x) - Number(y)).map(async (n) => partDictSize(await fsp.readFile(path.join(copies[0]!, dir, n)))));
  assert.deepEqual(dicts, [32 << 20, 32 << 20, 1 << 20]);

  // Applied onto a repository that got v1 through a from-scratch delta.
  const source = new Repo('r', new FsBackend(copies[0]!));
  await compileDelta(source, null, c1, { timestamp: when });
  const { repo: target, dir: targetDir } = await freshRepo(work, 'target');
  await applyAndJudge(target, targetDir, backendDeltaSource(source.backend, null, c1), v1Dir, { ref: 'test/v1' });
  await applyAndJudge(target, targetDir, backendDeltaSource(new FsBackend(copies[0]!), c1, c2), v2Dir);
});
