import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

/**
 * Paths to the OSTree reference vectors (test/fixtures/ostree, copied from the
 * real ostree 2022.7; see test/fixtures/README.md and docs/ostree/TESTDATA.md)
 * and a table of the facts about them that tests assert.
 *
 * The project root is found by walking up from this file to the package.json
 * named "cairn", so this works from test/helpers/ (ts sources) as well as from
 * dist/test/helpers/ (compiled output).
 */
function findProjectRoot(): string {
  let dir = __dirname;
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if (JSON.parse(readFileSync(pkg, 'utf8')).name === 'cairn') return dir;
      } catch {
        /* not ours; keep walking */
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the cairn project root above ${__dirname}`);
    dir = up;
  }
}

export const PROJECT_ROOT = findProjectRoot();
export const FIXTURES_DIR = path.join(PROJECT_ROOT, 'test', 'fixtures');
export const OSTREE_FIXTURES = path.join(FIXTURES_DIR, 'ostree');
/** The archive-mode repository written by ostree 2022.7. */
export const FIXTURE_REPO = path.join(OSTREE_FIXTURES, 'repo');
export const FIXTURE_EXTRA = path.join(OSTREE_FIXTURES, 'extra');

export function repoPath(rel: string): string {
  return path.join(FIXTURE_REPO, rel);
}
export function extraPath(rel: string): string {
  return path.join(FIXTURE_EXTRA, rel);
}
export function readRepoFile(rel: string): Buffer {
  return readFileSync(repoPath(rel));
}
export function readExtraFile(rel: string): Buffer {
  return readFileSync(extraPath(rel));
}

export const S1 = '3fd0406929e83910fc100bb8ea1da75799549be4e5d2cf3ffbd292054da936a3';
export const S2 = '2d6f36decdf08232cddbb82c0493ad1cf99e5c8c8f3ce87d288645701274119f';
export const S1_MB64 = 'P9BAaSnoORD8EAu46h2nV5lUm+Tl0s8_+9KSBU2pNqM';
export const S2_MB64 = 'LW823s3wgjLN27gsBJOtHPmeXIyPPOh9KIZFcBJ0EZ8';
export const EMPTY_DIRTREE = '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d';
export const ROOT_DIRMETA = '446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488';
export const S1_ROOT_DIRTREE = 'f675038f07aa32dce199f48a0db89ca7bc0ee8bffda83f1471ef9cfbc6df1ae5';
export const S2_ROOT_DIRTREE = 'cc2d26236c5a8f2de1fc3a00471077cf10930dd911a76190f5e676abc02c752c';
export const REF_NAME = 'sample/main';

export type ObjectExt = 'commit' | 'dirtree' | 'dirmeta' | 'commitmeta' | 'filez';

export interface ObjectVector {
  checksum: string;
  ext: ObjectExt;
  /** File size in bytes (TESTDATA.md). */
  size: number;
  what: string;
  /** sha256 of the file bytes when it is not the object name (.filez, .commitmeta); full hex. */
  fileSha256?: string;
}

export function objectPath(v: Pick<ObjectVector, 'checksum' | 'ext'>): string {
  return repoPath(`objects/${v.checksum.slice(0, 2)}/${v.checksum.slice(2)}.${v.ext}`);
}

/** Every object under repo/objects, from TESTDATA.md. */
export const OBJECTS: readonly ObjectVector[] = [
  { checksum: S1, ext: 'commit', size: 150, what: 'commit S1' },
  { checksum: S2, ext: 'commit', size: 182, what: 'commit S2' },
  { checksum: S1_ROOT_DIRTREE, ext: 'dirtree', size: 297, what: 'S1 root dirtree' },
  { checksum: S2_ROOT_DIRTREE, ext: 'dirtree', size: 297, what: 'S2 root dirtree' },
  { checksum: 'b7042529d4fc751916275ff33ab60405e5d64a4f377e5f953d52dfde06251893', ext: 'dirtree', size: 40, what: 'S1 /bin' },
  { checksum: '83dac3adc59af50c7beeec42537867d375997d09e600fd73e5bd45a13a63c749', ext: 'dirtree', size: 40, what: 'S2 /bin' },
  { checksum: 'ba6739d8a9087c7239a0c6b94750bbc983d5df44c56dc1b1804cbfe719c1271c', ext: 'dirtree', size: 80, what: 'S1 /etc' },
  { checksum: '83302cb035b1fb5468c17e1387e4d458ed34b4896dd9e6570146ad1136c60d57', ext: 'dirtree', size: 118, what: 'S2 /etc' },
  { checksum: EMPTY_DIRTREE, ext: 'dirtree', size: 1, what: 'empty dirtree' },
  { checksum: ROOT_DIRMETA, ext: 'dirmeta', size: 12, what: 'dirmeta 0:0 040755' },
  { checksum: S1, ext: 'commitmeta', size: 183, what: 'S1 detached metadata (gpg + dummy)', fileSha256: '561b35fd0a1d7ffe14516b6ec4dcf33e31661214fdb5a3c4bbad544f5ab15934' },
  { checksum: '3174e78680e10ca2281638bbb921b0f2271f6bcb1cf4f890a1dd2b547f2153af', ext: 'filez', size: 57, what: 'S1 README', fileSha256: '9844196264cf95f74ea3129786c9eb817f4825130ecfe95f93557fe951fa74ad' },
  { checksum: '940d9ec6a8bdedabdccf1e6fe95d4e0dc644abdc49753c144c99d92e6a386b75', ext: 'filez', size: 60, what: 'S2 README', fileSha256: '27f66bf442d5506dbdafd324b2a54e67ac9db5eb97646e827ad0d761141edf1b' },
  { checksum: '08f79095017675d25e57de8a1f37f4a5fb9a1f62c74d00fd00c741aa71575082', ext: 'filez', size: 40, what: 'symlink link -> README', fileSha256: '0124966043b33c580a05b9074bf241d5a59de443a3b6d805dd6c24364abf4f6d' },
  { checksum: '90f67e685f3f33bd4eb68b0624ee21e792075b8cbd31737f7811c5d206dcf18e', ext: 'filez', size: 60, what: 'etc/conf with user.note=hi', fileSha256: '6be13c43b284a1bdb6e74e865f624cb74722f096a986c7271ecd874a6f05e82d' },
  { checksum: 'cc700d46f407c6c5ab2d5dde474366a928b7398277e61162e7f8ec06f469f07e', ext: 'filez', size: 36, what: 'etc/empty (0 bytes)', fileSha256: '0c35044f38487112618b62951f563a7b8a4d5656174d61f524c570995de819d7' },
  { checksum: 'ade302966d6b52df9363c72c72a4079e589d89fdde5397e9da2dacb46c3b720b', ext: 'filez', size: 45, what: 'S2 etc/new', fileSha256: '5a627233080e5f4f6f21f6072bf0a7ca2a18c1eb502a8332898a8cfde23e6d96' },
  { checksum: '06f7adc6cc523e6aea87db1308e444f8146b42e28f0115051aea39df52176edc', ext: 'filez', size: 4135, what: 'S1 bin/tool', fileSha256: '06811eea14247d86df13ffc5d298c8b15a3c889f19406092465782c5e48254a4' },
  { checksum: '719cddf0cfba314df96009e41554f0ba4649052b0bbc192fc20c229b3be53ede', ext: 'filez', size: 4135, what: 'S2 bin/tool', fileSha256: '1e361409995eee03df4bd6a824be547c7c312a74c0a2cc8aace622711aefd185' },
];

export const SCRATCH_DELTA_DIR = `deltas/${S2_MB64.slice(0, 2)}/${S2_MB64.slice(2)}`;
export const S1_S2_DELTA_DIR = `deltas/${S1_MB64.slice(0, 2)}/${S1_MB64.slice(2)}-${S2_MB64}`;
export const DELTA_INDEX = `delta-indexes/${S2_MB64.slice(0, 2)}/${S2_MB64.slice(2)}.index`;

export interface FileVector {
  /** Relative to repo/ (or extra/ when `extra`). */
  rel: string;
  extra?: boolean;
  size?: number;
  sha256?: string;
  /** GVariant type when the file is one GVariant. */
  gvType?: string;
  what: string;
}

export const SUPERBLOCK_TYPE = '(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))';

/** Repo-level and extra files, from TESTDATA.md. */
export const FILES = {
  config: { rel: 'config', size: 58, sha256: '5c6ae1c7293f918a373e72b4a9a90bb4e6dca04cc02b584419afb5b4696bf4d8', what: 'config' },
  ref: { rel: 'refs/heads/sample/main', size: 65, what: 'ref sample/main -> S2' },
  summary: { rel: 'summary', size: 632, sha256: '6744659e44757b2df6c71b8fa95a7ab9204a19e7c7f32f256aabc850ac551207', gvType: '(a(s(taya{sv}))a{sv})', what: 'summary' },
  summarySig: { rel: 'summary.sig', size: 183, sha256: '4b37e1d28b870d0d1843eb2e14287d71cff111fc4b9921553533a706b39b3a0d', gvType: 'a{sv}', what: 'summary.sig (gpg + dummy)' },
  deltaIndex: { rel: DELTA_INDEX, size: 322, sha256: 'cc73cbd3ab4d31601009cb043f9642dd7cc9b623203ea1d291b394c45a2277e0', gvType: 'a{sv}', what: 'delta index for S2' },
  scratchSuperblock: { rel: `${SCRATCH_DELTA_DIR}/superblock`, size: 692, sha256: 'f4320b50e938e828a8e871057715e1bcabde7cd4ec7089b54a5bdc30b2a1be81', gvType: SUPERBLOCK_TYPE, what: 'scratch->S2 superblock' },
  scratchPart0: { rel: `${SCRATCH_DELTA_DIR}/0`, size: 4745, sha256: '8b8e3e4fb5a5e7834289cab3c915186ca7f79ad9fdbc06997aab3fb8f2d98cb0', what: 'scratch->S2 part 0 (xz)' },
  fromToSuperblock: { rel: `${S1_S2_DELTA_DIR}/superblock`, size: 564, sha256: '3bed50164d11577a640c99c8d3358ea6c9b308dd86b5566c45a66fb266cdf8fb', gvType: SUPERBLOCK_TYPE, what: 'S1->S2 superblock' },
  fromToPart0: { rel: `${S1_S2_DELTA_DIR}/0`, size: 733, sha256: '050d0a50d75b5c7f0f6311d79b6daa5c34d074f3580f3a74320d69aff8c24bff', what: 'S1->S2 part 0 (xz)' },
  inlineSuperblock: { rel: 'inline-scratch-to-S1.superblock', extra: true, size: 5388, sha256: '62594509fb082ec74ab6c44c12344da77f4d001e140e379546b9c9db62c587a7', gvType: SUPERBLOCK_TYPE, what: 'inline scratch->S1 superblock' },
  tombstone: { rel: 'example.tombstone-commit', extra: true, size: 78, sha256: 'd45fb2bc818c1b06c0b022643912c2babd38b09fbd9bcf02308e5332fb95e306', gvType: 'a{sv}', what: 'tombstone-commit' },
  s1CommitmetaEd25519: { rel: 'S1.commitmeta.ed25519', extra: true, size: 95, sha256: '609cb640c85b0bf7efcc75a4a27f98bd4fa82bdc538d1171b1b88f7075577038', gvType: 'a{sv}', what: 'S1 commitmeta, ed25519' },
  summarySigEd25519: { rel: 'summary.sig.ed25519', extra: true, size: 95, sha256: 'f34b643ed555d429786d1d4bdadfaf5afd8234ae24e18da31f000f15d2367f2e', gvType: 'a{sv}', what: 'summary.sig, ed25519' },
} as const satisfies Record<string, FileVector>;

export function readFileVector(f: FileVector): Buffer {
  return f.extra ? readExtraFile(f.rel) : readRepoFile(f.rel);
}

/** The inline part's checksum inside inline-scratch-to-S1.superblock (TESTDATA.md). */
export const INLINE_PART_SHA256 = 'b6e03f81ed99db2ae4c1ef6862c6c51cc0ea6fd60eb4d09164e2bd0d81096583';
export const ED25519_PUBLIC_B64 = 'A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=';

export interface TarEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  data: Buffer;
  linkname: string;
}

/**
 * A minimal ustar reader for extra/src-trees.tar (the source folders of S1 and
 * S2: `small1/…`, `small2/…`). PAX extended headers (xattrs) are skipped;
 * directory paths have no trailing slash.
 */
export function readSourceTrees(): Map<string, TarEntry> {
  const tar = readExtraFile('src-trees.tar');
  const out = new Map<string, TarEntry>();
  const str = (b: Buffer) => {
    const z = b.indexOf(0);
    return b.toString('utf8', 0, z < 0 ? b.length : z);
  };
  for (let off = 0; off + 512 <= tar.length; ) {
    const h = tar.subarray(off, off + 512);
    if (h.every((x) => x === 0)) break;
    const size = parseInt(str(h.subarray(124, 136)).trim() || '0', 8);
    const flag = String.fromCharCode(h[156]!);
    const prefix = str(h.subarray(345, 500));
    const name = (prefix ? `${prefix}/` : '') + str(h.subarray(0, 100));
    const data = tar.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
    if (flag === 'x' || flag === 'g') continue;
    const type = flag === '0' || flag === '\0' ? 'file' : flag === '5' ? 'dir' : flag === '2' ? 'symlink' : 'other';
    out.set(name.replace(/\/$/, ''), { path: name.replace(/\/$/, ''), type, mode: parseInt(str(h.subarray(100, 108)).trim(), 8), data, linkname: str(h.subarray(157, 257)) });
  }
  return out;
}
