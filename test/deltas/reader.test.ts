// The delta reader on ostree's own deltas: the reference vectors (scratch→S2, S1→S2 with bsdiff
// ops, an inline scratch→S1), then deltas freshly made by `ostree static-delta generate` in several
// shapes. Every apply is judged by the real ostree: fsck passes and the checkout equals the source.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { decodeSuperblock, encodeSuperblock, inlinePart } from '../../storage/deltas/format';
import { describeDelta, dirDeltaSource, memoryDeltaSource } from '../../storage/deltas/read';
import { sha256Hex } from '../../storage/objects/checksum';
import { extraPath, readExtraFile, readRepoFile, repoPath, S1, S1_MB64, S2, S2_MB64 } from '../helpers/fixtures';
import { commitTree, initRepo, makeSourceTree, makeTempDir, ostree, pseudoRandomBytes, removeTempDirs } from '../helpers/ostree';
import { applyAndJudge, freshRepo } from './helpers';

const SCRATCH_S2 = `deltas/LW/823s3wgjLN27gsBJOtHPmeXIyPPOh9KIZFcBJ0EZ8`;
const S1_S2 = `deltas/P9/BAaSnoORD8EAu46h2nV5lUm+Tl0s8_+9KSBU2pNqM-LW823s3wgjLN27gsBJOtHPmeXIyPPOh9KIZFcBJ0EZ8`;

let scratch: string;
let trees: string;

before(async () => {
  scratch = await makeTempDir('cairn-delta-reader-');
  trees = path.join(scratch, 'trees');
  await fsp.mkdir(trees);
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-xf', extraPath('src-trees.tar'), '-C', trees]);
});
after(removeTempDirs);

test('fixture superblocks decode to the documented facts and re-encode byte for byte', async () => {
  const scratchSb = readRepoFile(`${SCRATCH_S2}/superblock`);
  assert.equal(sha256Hex(scratchSb), 'f4320b50e938e828a8e871057715e1bcabde7cd4ec7089b54a5bdc30b2a1be81');
  const a = decodeSuperblock(scratchSb);
  assert.equal(a.from, null);
  assert.equal(a.to, S2);
  assert.equal(sha256Hex(a.commit), S2);
  assert.equal(a.parts.length, 1);
  assert.equal(a.parts[0]!.objects.length, 11);
  assert.equal(a.parts[0]!.size, 4745);
  assert.equal(a.parts[0]!.checksum, '8b8e3e4fb5a5e7834289cab3c915186ca7f79ad9fdbc06997aab3fb8f2d98cb0');
  assert.deepEqual(a.fallbacks, []);
  assert.ok(encodeSuperblock(a).equals(scratchSb), 'scratch superblock re-encodes identically');

  const fromSb = readRepoFile(`${S1_S2}/superblock`);
  const b = decodeSuperblock(fromSb);
  assert.equal(b.from, S1);
  assert.equal(b.to, S2);
  assert.equal(b.parts[0]!.checksum, '050d0a50d75b5c7f0f6311d79b6daa5c34d074f3580f3a74320d69aff8c24bff');
  assert.ok(encodeSuperblock(b).equals(fromSb), 'from→to superblock re-encodes identically');

  const desc = await describeDelta(dirDeltaSource(repoPath(S1_S2)));
  assert.deepEqual(desc.parts[0]!.ops, { S: 4, r: 2, o: 2, B: 2, c: 2, R: 2 });
  assert.equal(desc.endianness, 'l');
  assert.equal(desc.totalSize, 564 + 733);
  const descScratch = await describeDelta(dirDeltaSource(repoPath(SCRATCH_S2)), { expectedDigest: 'f4320b50e938e828a8e871057715e1bcabde7cd4ec7089b54a5bdc30b2a1be81' });
  assert.deepEqual(descScratch.parts[0]!.ops, { S: 11 });
  assert.equal(descScratch.parts[0]!.compression, 'xz');

  const inline = readExtraFile('inline-scratch-to-S1.superblock');
  const c = decodeSuperblock(inline);
  assert.equal(c.to, S1);
  const part = inlinePart(c, 0);
  assert.ok(part, 'inline part present');
  assert.equal(sha256Hex(part), 'b6e03f81ed99db2ae4c1ef6862c6c51cc0ea6fd60eb4d09164e2bd0d81096583');
  assert.ok(c.metadata.some(([k]) => k === `deltas/P9/${S1_MB64.slice(2)}/0`));
  assert.ok(encodeSuperblock(c).equals(inline));
  assert.ok(S2_MB64.startsWith('LW'));
});

test('vectors applied: scratch→S2, and inline scratch→S1 then S1→S2 (bsdiff ops); fsck and checkout', async () => {
  const one = await freshRepo(scratch);
  const r = await applyAndJudge(one.repo, one.dir, dirDeltaSource(repoPath(SCRATCH_S2)), path.join(trees, 'small2'));
  assert.equal(r.commit, S2);
  assert.equal(r.objects, 11);

  const two = await freshRepo(scratch);
  const inline = memoryDeltaSource(readExtraFile('inline-scratch-to-S1.superblock'), [], 'inline');
  await applyAndJudge(two.repo, two.dir, inline, path.join(trees, 'small1'));
  const r2 = await applyAndJudge(two.repo, two.dir, dirDeltaSource(repoPath(S1_S2)), path.join(trees, 'small2'));
  assert.equal(r2.commit, S2);
  // The commit's objects are byte-identical to ostree's own.
  for (const rel of ['objects/2d/6f36decdf08232cddbb82c0493ad1cf99e5c8c8f3ce87d288645701274119f.commit', 'objects/cc/2d26236c5a8f2de1fc3a00471077cf10930dd911a76190f5e676abc02c752c.dirtree']) {
    assert.ok((await fsp.readFile(path.join(two.dir, rel))).equals(readRepoFile(rel)), rel);
  }
});

/** v1 and v2 trees whose differences exercise ostree's rollsum and bsdiff paths and fallbacks. */
async function makeVersions(root: string): Promise<{ v1: string; v2: string }> {
  const v1 = await makeSourceTree(path.join(root, 'v1'), { seed: 1, bigFileBytes: 5 * 1000 * 1000 });
  const v2 = path.join(root, 'v2');
  execFileSync('cp', ['-a', v1, v2]);
  // A modified large file (similar size, same path): bsdiff or rollsum.
  const blob = await fsp.readFile(path.join(v2, 'usr/share/data/blob.bin'));
  for (let i = 0; i < blob.length; i += 100_003) blob[i] ^= 0x5a;
  await fsp.writeFile(path.join(v2, 'usr/share/data/blob.bin'), blob);
  // A text file with a prefix kept and some edits (rollsum matches).
  const text = await fsp.readFile(path.join(v2, 'usr/share/doc/text.txt'), 'utf8');
  await fsp.writeFile(path.join(v2, 'usr/share/doc/text.txt'), text.replace(/dolor/g, 'DOLOR').slice(0, 40000) + 'appendix\n'.repeat(500));
  // Medium binaries with a few changes.
  const mid = pseudoRandomBytes(77, 300_000);
  await fsp.writeFile(path.join(v1, 'usr/lib-mid.so'), mid);
  mid[1000] ^= 1;
  mid[200_000] ^= 1;
  await fsp.writeFile(path.join(v2, 'usr/lib-mid.so'), mid);
  await fsp.writeFile(path.join(v2, 'etc/os-release'), 'ID=cairntest\nVERSION=2\n');
  await fsp.rm(path.join(v2, 'deep'), { recursive: true });
  await fsp.rm(path.join(v2, 'bin/readme-link'));
  await fsp.symlink('../usr/share/doc/text.txt', path.join(v2, 'bin/readme-link'));
  await fsp.chmod(path.join(v2, 'etc/secret.conf'), 0o640);
  for (let i = 0; i < 30; i++) await fsp.writeFile(path.join(v2, `many/new-${i}`), `new file ${i}\n`);
  // A new file over 4 MB: a fallback in ostree's deltas.
  await fsp.writeFile(path.join(v2, 'usr/share/data/new-big.bin'), pseudoRandomBytes(4242, 4_500_000));
  return { v1, v2 };
}

test('deltas made by `ostree static-delta generate` (scratch, from→to, inline, fallbacks, rollsum/bsdiff)', async () => {
  const root = path.join(scratch, 'gen');
  const { v1, v2 } = await makeVersions(root);
  const src = await initRepo(path.join(root, 'src-repo'), 'archive');
  const c1 = await commitTree(src, { branch: 'os/main', tree: v1, timestamp: 1_700_000_000 });
  const c2 = await commitTree(src, { branch: 'os/main', tree: v2, timestamp: 1_700_100_000 });
  const out = (name: string) => path.join(root, 'out', name, 'superblock');
  const gen = async (name: string, args: string[]) => {
    await fsp.mkdir(path.dirname(out(name)), { recursive: true });
    await ostree(['static-delta', 'generate', ...args, `--filename=${out(name)}`], { repo: src });
    return dirDeltaSource(path.dirname(out(name)));
  };
  const scratch1 = await gen('scratch1', ['--empty', `--to=${c1}`]);
  const scratch2Inline = await gen('scratch2-inline', ['--empty', `--to=${c2}`, '--inline']);
  const fwd = await gen('fwd', [`--from=${c1}`, `--to=${c2}`]);
  const fwdInline = await gen('fwd-inline', [`--from=${c1}`, `--to=${c2}`, '--inline', '--min-fallback-size=0']);
  const back = await gen('back', [`--from=${c2}`, `--to=${c1}`, '--disable-bsdiff']);

  const dFwd = await describeDelta(fwd);
  const allOps = dFwd.parts.reduce<Record<string, number>>((h, p) => {
    for (const [k, v] of Object.entries(p.ops)) h[k] = (h[k] ?? 0) + v;
    return h;
  }, {});
  assert.ok(dFwd.fallbacks.length >= 1, 'the new 4.5 MB file is a fallback');
  assert.ok((allOps.B ?? 0) + (allOps.w ?? 0) > 0, `ostree used bsdiff or rollsum: ${JSON.stringify(allOps)}`);

  // Scratch then from→to, with fallbacks fetched from ostree's repo.
  const a = await freshRepo(scratch);
  await applyAndJudge(a.repo, a.dir, scratch1, v1, { fallbacksFrom: src });
  await applyAndJudge(a.repo, a.dir, fwd, v2, { fallbacksFrom: src });
  await applyAndJudge(a.repo, a.dir, back, v1, { fallbacksFrom: src });

  // Inline scratch straight to v2; inline from→to without fallbacks.
  const b = await freshRepo(scratch);
  await applyAndJudge(b.repo, b.dir, scratch2Inline, v2, { fallbacksFrom: src });
  const c = await freshRepo(scratch);
  await applyAndJudge(c.repo, c.dir, scratch1, v1, { fallbacksFrom: src });
  const dInline = await describeDelta(fwdInline);
  assert.equal(dInline.fallbacks.length, 0);
  assert.ok(dInline.parts.every((p) => p.inline));
  await applyAndJudge(c.repo, c.dir, fwdInline, v2);
});
