// Static delta benchmark: Cairn's delta compiler (storage/deltas/compile.ts) against
// `ostree static-delta generate` (libostree 2022.7) on the same commit pairs of one archive repo.
//
//   npm run bench:delta                      (builds first; see package.json)
//   npm run bench:delta -- --quick           (1 run per shape, one large run, no from-scratch delta,
//                                             no stock-client check: under 2 minutes once cached)
//   node dist/bench/delta.js [options]
//
// Options (all optional):
//   --runs N          generation runs per tool for the small shapes (default 3; median reported)
//   --large-runs N    runs per tool for the real root filesystem update (default 2)
//   --scratch-runs N  runs per tool for its from-scratch delta (default 1: about a minute each)
//   --no-scratch      skip the from-scratch delta of the root filesystem v2
//   --no-verify       skip the stock-client check (ostree pull --require-static-deltas through
//                     `cairn serve`; done once, after and outside the timed runs)
//   --only a,b        only these shapes (names as in the table)
//   --no-serve        skip the serving half (bench/delta-serve.ts): time to delta after `cairn push`
//                     and the bytes the stock client downloads (delta path vs object path)
//   --no-race         skip the rootfs-update push made while v1's from-scratch delta runs
//   --quick           --runs 1 --large-runs 1 --no-scratch --no-verify --no-race
// Env: CAIRN_BENCH_DIR (work folder; default bench/.work/delta: the debootstrapped root filesystems
//      and the archive repo are cached there), CAIRN_BENCH_MIRROR and CAIRN_BENCH_SECURITY_MIRROR
//      (Debian mirrors; by default the machine's apt sources — /etc/apt/sources.list and
//      sources.list.d/*.list and *.sources (deb822) — as debootstrap users pick them, and
//      deb.debian.org only when none fits; bench/delta-mirror.ts; the run says which it used).
//
// What is compared, per shape (a pair of commits v1 → v2 in the repo, both made by `ostree commit`):
//   - delta bytes: superblock + part files; fallback objects (loose .filez the client fetches
//     beside the delta) are counted separately;
//   - generation time: wall clock, median of the runs; ostree as a child process (its start-up,
//     a few ms, included), Cairn in process; one untimed warm-up of each on the first shape;
//   - what a host at v1 downloads: without a delta, the archive objects of v2's closure that are not
//     in v1's; with a delta, superblock + parts + fallbacks. For the from-scratch row, "v1" is nothing.
// Targets (issue 4): delta size ≤ 1.0× ostree's on every shape; generation time ≤ 2× ostree's.
//
// Serving half (issue 9; bench/delta-serve.ts), on a fresh `cairn serve` with the default policy,
// for every pair with a from-commit:
//   - time to delta: `cairn push` of v1, its delta jobs settled, `cairn push` of v2; from the
//     acknowledged push (the process exited 0, the ref moved) until the v1→v2 superblock answers
//     200 (polled every 10 ms), against `ostree static-delta generate` of the same pair run right
//     after the delta appeared, so that both see the same load (target ≤ 1.0×); and, for rootfs-update, on another fresh server, v2 pushed as soon as
//     v1 is acknowledged, while v1's from-scratch delta runs (reported on its own row);
//   - bytes a host downloads, by the real client: a stock bare-user repo at v1 (pulled from that
//     Cairn) pulls v2 with --require-static-deltas and, from a copy of the same state, with
//     --disable-static-deltas; Cairn's request log gives the bytes sent, split into superblock +
//     parts, fallbacks and other loose objects (target ≤ 0.5×, never > 1.0×; see docs/delta-bytes.md
//     for why 2022.7 fetches loose objects beside the parts). Request logs of the delta pulls are
//     kept in WORK/request-logs.
//
// Needs root (debootstrap, chroot, file ownership), debootstrap, attr (setfattr), the ostree client
// and a reachable Debian mirror the first time; afterwards everything comes from the cache.
// A benchmark, never a test: it reports figures and ratios against the targets, it does not fail.
// Writes bench/results/delta-latest.json.

import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FsBackend } from '../storage/backends/fs';
import { compileDelta, type CompileResult } from '../storage/deltas/compile';
import { superblockKey } from '../storage/deltas/format';
import { backendDeltaSource, describeDelta, dirDeltaSource, type DeltaDescription } from '../storage/deltas/read';
import { decodeCommit } from '../storage/objects/commit';
import { decodeDirTree } from '../storage/objects/dirtree';
import { objectKey, ObjectType } from '../storage/objects/types';
import { Repo } from '../storage/repo/repo';
import { updateSummary } from '../storage/repo/summary';
import { projectRoot, startCairn, type CairnProcess } from '../test/helpers/cairn-process';
import { addRemote, initRepo, ostree, ostreeResult, revParse, run, runCommand } from '../test/helpers/ostree';
import { mulberry32 } from '../test/helpers/prng';
import { argv, flag, machineInfo, numberOption } from './common';
import { DEFAULT_MIRROR, DEFAULT_SECURITY_MIRROR, debianMirrors, type MirrorChoice } from './delta-mirror';
import { measureRacing, measureServing, POLL_MS, type ServeResult } from './delta-serve';

// ------------------------------------------------------------------------------------------------
// options

const quick = flag('quick');
const num = (name: string, dflt: number) => numberOption(name, dflt, { integer: true });
const listOpt = (name: string): string[] | null => {
  const i = argv.indexOf(`--${name}`);
  return i < 0 ? null : (argv[i + 1] ?? '').split(',').filter(Boolean);
};
const opts = {
  runs: num('runs', quick ? 1 : 3),
  largeRuns: num('large-runs', quick ? 1 : 2),
  scratchRuns: num('scratch-runs', 1),
  scratch: !quick && !flag('no-scratch'),
  verify: !quick && !flag('no-verify'),
  only: listOpt('only'),
  serve: !flag('no-serve'),
  race: !quick && !flag('no-race') && !flag('no-serve'),
};

const ROOT = projectRoot();
const WORK = path.resolve(process.env.CAIRN_BENCH_DIR || path.join(ROOT, 'bench', '.work', 'delta'));
const ROOTFS = path.join(WORK, 'rootfs');
const DATA = path.join(WORK, 'data');
const REPO_NAME = 'bench';
const REPO = path.join(DATA, 'repos', REPO_NAME);
const OSTREE_OUT = path.join(WORK, 'ostree-deltas');
const RESULTS = path.join(ROOT, 'bench', 'results', 'delta-latest.json');
const SUITE = 'bookworm';
/** Set in main() from the machine's apt sources (bench/delta-mirror.ts) before anything is downloaded. */
let mirrors: { mirror: MirrorChoice; security: MirrorChoice } = {
  mirror: { url: DEFAULT_MIRROR, source: 'default' },
  security: { url: DEFAULT_SECURITY_MIRROR, source: 'default' },
};
/** Installed into v2 of the root filesystem, on top of a dist-upgrade from -updates and -security. */
const V2_PACKAGES = ['ca-certificates', 'curl', 'less', 'iproute2', 'procps', 'vim-tiny'];
/** Bumped whenever the trees or commits below change, so the cached repo is rebuilt. */
const BUILD_VERSION = 1;
const log = (s: string) => process.stderr.write(`${s}\n`);

// ------------------------------------------------------------------------------------------------
// the real root filesystems: debootstrap --variant=minbase, then v2 = v1 + dist-upgrade + packages

const chrootEnv = {
  ...process.env,
  DEBIAN_FRONTEND: 'noninteractive',
  LC_ALL: 'C',
  LANG: 'C',
  PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
};

async function exists(p: string): Promise<boolean> {
  return fsp.lstat(p).then(
    () => true,
    () => false,
  );
}

/** An OS image carries no device nodes (ostree commit refuses them); the rest stays as installed. */
async function tidyRootfs(dir: string): Promise<void> {
  await fsp.rm(path.join(dir, 'dev'), { recursive: true, force: true });
  await fsp.mkdir(path.join(dir, 'dev'), { mode: 0o755 });
  for (const sub of ['proc', 'sys', 'run', 'tmp']) {
    const p = path.join(dir, sub);
    if (!(await exists(p))) continue;
    for (const e of await fsp.readdir(p)) await fsp.rm(path.join(p, e), { recursive: true, force: true });
  }
  // Package lists and apt's binary caches are download caches, not part of an image.
  for (const sub of ['var/lib/apt/lists', 'var/cache/apt']) {
    const p = path.join(dir, sub);
    if (!(await exists(p))) continue;
    for (const e of await fsp.readdir(p)) {
      if (e === 'partial' || e === 'archives') continue;
      await fsp.rm(path.join(p, e), { recursive: true, force: true });
    }
  }
  await fsp.rm(path.join(dir, 'var/cache/apt/archives'), { recursive: true, force: true });
  await fsp.mkdir(path.join(dir, 'var/cache/apt/archives/partial'), { recursive: true });
}

async function buildRootfsV1(): Promise<string> {
  const dir = path.join(ROOTFS, 'v1');
  if (await exists(path.join(ROOTFS, 'v1.done'))) return dir;
  const tmp = path.join(ROOTFS, 'v1.tmp');
  await fsp.rm(tmp, { recursive: true, force: true });
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(ROOTFS, { recursive: true });
  log(`debootstrap --variant=minbase ${SUITE} (once; cached in ${ROOTFS}) …`);
  const t0 = performance.now();
  log(`  mirror ${mirrors.mirror.url} (from ${mirrors.mirror.source})`);
  await run('debootstrap', ['--variant=minbase', SUITE, tmp, mirrors.mirror.url], { timeoutMs: 30 * 60_000, env: chrootEnv });
  await tidyRootfs(tmp);
  await fsp.rename(tmp, dir);
  await fsp.writeFile(path.join(ROOTFS, 'v1.done'), `${new Date().toISOString()}\n`);
  log(`  done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  return dir;
}

async function buildRootfsV2(v1: string): Promise<string> {
  const dir = path.join(ROOTFS, 'v2');
  if (await exists(path.join(ROOTFS, 'v2.done'))) return dir;
  const tmp = path.join(ROOTFS, 'v2.tmp');
  await fsp.rm(tmp, { recursive: true, force: true });
  await fsp.rm(dir, { recursive: true, force: true });
  log(`v2: copy of v1, apt-get dist-upgrade (${SUITE}-updates, ${SUITE}-security) and install ${V2_PACKAGES.join(' ')} in a chroot …`);
  const t0 = performance.now();
  await run('cp', ['-a', v1, tmp]);
  await fsp.writeFile(
    path.join(tmp, 'etc/apt/sources.list'),
    `deb ${mirrors.mirror.url} ${SUITE} main\ndeb ${mirrors.mirror.url} ${SUITE}-updates main\ndeb ${mirrors.security.url} ${SUITE}-security main\n`,
  );
  const resolv = path.join(tmp, 'etc/resolv.conf');
  const hadResolv = await fsp.readFile(resolv).catch(() => null);
  await fsp.rm(resolv, { force: true });
  await fsp.copyFile('/etc/resolv.conf', resolv).catch(() => undefined);
  const policy = path.join(tmp, 'usr/sbin/policy-rc.d');
  await fsp.writeFile(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  const chroot = (args: string[]) => run('chroot', [tmp, ...args], { timeoutMs: 30 * 60_000, env: chrootEnv });
  const dpkgOpts = ['-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold'];
  // tidyRootfs emptied /dev; maintainer scripts and apt-key need the usual character devices.
  for (const [name, major, minor] of [['null', 1, 3], ['zero', 1, 5], ['full', 1, 7], ['random', 1, 8], ['urandom', 1, 9]] as const) {
    await run('mknod', ['-m', '666', path.join(tmp, 'dev', name), 'c', String(major), String(minor)]);
  }
  await chroot(['apt-get', 'update']);
  const upgraded = await chroot(['apt-get', '-y', ...dpkgOpts, 'dist-upgrade']);
  await chroot(['apt-get', '-y', '--no-install-recommends', ...dpkgOpts, 'install', ...V2_PACKAGES]);
  await chroot(['apt-get', 'clean']);
  await fsp.rm(policy, { force: true });
  await fsp.rm(resolv, { force: true });
  if (hadResolv) await fsp.writeFile(resolv, hadResolv);
  await tidyRootfs(tmp);
  await fsp.writeFile(path.join(ROOTFS, 'v2-upgrade.log'), upgraded);
  await fsp.rename(tmp, dir);
  await fsp.writeFile(path.join(ROOTFS, 'v2.done'), `${new Date().toISOString()}\n`);
  log(`  done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  return dir;
}

// ------------------------------------------------------------------------------------------------
// the update shapes, each applied to a copy of the real root filesystem v1

interface ShapeDef {
  name: string;
  /** Bumped when the definition changes (its cached commits are then made again). */
  rev: number;
  what: string;
  /** Changes v1 (a copy of the root filesystem) before it is committed. */
  v1?: (dir: string) => Promise<void>;
  /** Turns a copy of v1 into v2. */
  v2: (dir: string) => Promise<void>;
}

const rng = mulberry32;

async function walkFiles(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  const entries = (await fsp.readdir(path.join(root, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const e of entries) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await walkFiles(root, r)));
    else if (e.isFile()) out.push(r);
  }
  return out;
}

const ELF = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/**
 * A 12 MB "large binary" made of the real ELF files of the tree (executables and libraries, in path
 * order), so it compresses like real code; over the 4 MB fallback size of both compilers as a new file.
 */
async function largeBinary(dir: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for (const rel of await walkFiles(dir, 'usr')) {
    const st = await fsp.lstat(path.join(dir, rel));
    if (st.size < 64 * 1024) continue;
    const b = await fsp.readFile(path.join(dir, rel));
    if (!b.subarray(0, 4).equals(ELF)) continue;
    parts.push(b);
    n += b.length;
    if (n >= 12 * 1000 * 1000) break;
  }
  return Buffer.concat(parts).subarray(0, 12 * 1000 * 1000);
}

const BIG = 'usr/lib/x86_64-linux-gnu/cairn-bench/libbig.so';
/** Not in minbase; about 900 small files (shell completions), most of them regular files. */
const ADDED_DEB = 'bash-completion';

/** `apt-get download` of one package by the host's apt (verified, cached in WORK/debs) → its path. */
async function downloadDeb(pkg: string): Promise<string> {
  const debs = path.join(WORK, 'debs');
  await fsp.mkdir(debs, { recursive: true });
  const find = async () => (await fsp.readdir(debs)).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  let deb = await find();
  if (!deb) {
    await run('apt-get', ['download', pkg], { cwd: debs, timeoutMs: 10 * 60_000 });
    deb = await find();
    if (!deb) throw new Error(`apt-get download ${pkg} left no .deb in ${debs}`);
  }
  return path.join(debs, deb);
}

/** A package's files unpacked into a tree (dpkg-deb -x), as installing it would leave them. */
async function extractDeb(pkg: string, into: string): Promise<void> {
  await run('dpkg-deb', ['-x', await downloadDeb(pkg), into]);
}

const setfattr = async (file: string, name: string, value: string): Promise<void> => {
  await run('setfattr', ['-h', '-n', name, '-v', value, file]);
};

const SHAPES: ShapeDef[] = [
  {
    name: 'config',
    rev: 1,
    what: 'one changed config file (etc/login.defs: UMASK, PASS_MAX_DAYS)',
    v2: async (d) => {
      const p = path.join(d, 'etc/login.defs');
      const s = await fsp.readFile(p, 'utf8');
      const t = s.replace(/^UMASK\s+\d+$/m, 'UMASK\t\t027').replace(/^PASS_MAX_DAYS\s+\d+$/m, 'PASS_MAX_DAYS\t90');
      if (t === s) throw new Error('etc/login.defs: nothing to change');
      await fsp.writeFile(p, t);
    },
  },
  {
    name: 'large-binary',
    rev: 1,
    what: '12 MB binary (real ELF bytes): 6 patched spots, 4 KiB replaced, 512 B inserted',
    v1: async (d) => {
      await fsp.mkdir(path.dirname(path.join(d, BIG)), { recursive: true });
      await fsp.writeFile(path.join(d, BIG), await largeBinary(d), { mode: 0o644 });
    },
    v2: async (d) => {
      const p = path.join(d, BIG);
      const b = await fsp.readFile(p);
      const r = rng(4242);
      for (const at of [40_000, 1_900_000, 3_300_000, 6_100_000, 8_800_000, 11_500_000]) for (let i = 0; i < 16; i++) b[at + i * 4] = Math.floor(r() * 256);
      const rep = Buffer.alloc(4096);
      for (let i = 0; i < rep.length; i++) rep[i] = Math.floor(r() * 256);
      rep.copy(b, 5_000_000);
      const ins = Buffer.from('cairn-bench v2 '.repeat(35).slice(0, 512));
      await fsp.writeFile(p, Buffer.concat([b.subarray(0, 7_000_000), ins, b.subarray(7_000_000)]));
    },
  },
  {
    name: 'added-files',
    rev: 2,
    what: `hundreds of added files (the ${ADDED_DEB} package unpacked into the tree)`,
    v2: (d) => extractDeb(ADDED_DEB, d),
  },
  {
    name: 'deleted-folder',
    rev: 1,
    what: 'a deleted folder (usr/share/doc)',
    v2: (d) => fsp.rm(path.join(d, 'usr/share/doc'), { recursive: true }),
  },
  {
    name: 'symlink',
    rev: 1,
    what: 'a retargeted symlink (etc/alternatives/awk)',
    v2: async (d) => {
      const p = path.join(d, 'etc/alternatives/awk');
      await fsp.readlink(p); // must exist
      await fsp.rm(p);
      await fsp.symlink('/usr/bin/original-awk', p);
    },
  },
  {
    name: 'modes',
    rev: 1,
    what: 'mode changes (4 executables 0755→0750, etc/login.defs 0644→0600, var/log 0755→0750)',
    v2: async (d) => {
      for (const f of ['usr/bin/apt-get', 'usr/bin/dpkg', 'usr/bin/tar', 'usr/bin/perl']) await fsp.chmod(path.join(d, f), 0o750);
      await fsp.chmod(path.join(d, 'etc/login.defs'), 0o600);
      await fsp.chmod(path.join(d, 'var/log'), 0o750);
    },
  },
  {
    name: 'xattrs',
    rev: 1,
    what: 'xattr changes (one label changed, 20 files of usr/bin and a folder labelled)',
    v1: (d) => setfattr(path.join(d, 'etc/login.defs'), 'user.cairn.label', 'etc_t'),
    v2: async (d) => {
      await setfattr(path.join(d, 'etc/login.defs'), 'user.cairn.label', 'shadow_t');
      const bins = (await fsp.readdir(path.join(d, 'usr/bin'), { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name).sort();
      for (const b of bins.slice(0, 20)) await setfattr(path.join(d, 'usr/bin', b), 'user.cairn.label', 'bin_t');
      await setfattr(path.join(d, 'etc/apt'), 'user.cairn.label', 'apt_conf_t');
    },
  },
];

// ------------------------------------------------------------------------------------------------
// the archive repo with every pair

interface Pair {
  name: string;
  what: string;
  ref: string;
  from: string | null;
  to: string;
  kind: 'shape' | 'large' | 'scratch';
}

interface Built {
  version: number;
  base: string;
  rootfsV2: string;
  shapes: Record<string, { rev: number; from: string; to: string }>;
  rootfs: { v1Files: number; v1Bytes: number; v2Files: number; v2Bytes: number; upgraded: string[] };
}

const T0 = Date.parse('2026-11-01T00:00:00Z') / 1000;
async function commit(ref: string, tree: string, subject: string, hour: number): Promise<string> {
  const args = ['commit', `--branch=${ref}`, `--tree=${tree}`, `--subject=${subject}`, `--timestamp=${new Date((T0 + hour * 3600) * 1000).toISOString()}`];
  const out = (await ostree(args, { repo: REPO, timeoutMs: 30 * 60_000 })).trim();
  if (!/^[0-9a-f]{64}$/.test(out)) throw new Error(`unexpected ostree commit output: ${out}`);
  return out;
}

async function treeStats(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const rel of await walkFiles(dir)) {
    files++;
    bytes += (await fsp.lstat(path.join(dir, rel))).size;
  }
  return { files, bytes };
}

/** The repo with every pair; what is cached (root filesystems, commits of unchanged shapes) is reused. */
async function buildRepo(): Promise<Built> {
  const marker = path.join(WORK, 'built.json');
  const cached = await fsp
    .readFile(marker, 'utf8')
    .then((t) => JSON.parse(t) as Built)
    .catch(() => null);
  const refIs = async (ref: string, want: string) => (await ostreeResult(['rev-parse', ref], { repo: REPO })).stdout.trim() === want;
  const v1 = await buildRootfsV1();
  const v2 = await buildRootfsV2(v1);
  let m: Built;
  if (cached && cached.version === BUILD_VERSION && (await refIs('bench/rootfs', cached.rootfsV2))) {
    m = cached;
  } else {
    log(`committing both root filesystems with ostree commit (archive) into ${REPO} …`);
    await fsp.rm(DATA, { recursive: true, force: true });
    await initRepo(REPO, 'archive');
    const base = await commit('bench/rootfs', `dir=${v1}`, `${SUITE} minbase`, 1);
    const rootfsV2 = await commit('bench/rootfs', `dir=${v2}`, `${SUITE} minbase + upgrade + ${V2_PACKAGES.join(' ')}`, 2);
    const [s1, s2] = [await treeStats(v1), await treeStats(v2)];
    const upgradeLog = await fsp.readFile(path.join(ROOTFS, 'v2-upgrade.log'), 'utf8').catch(() => '');
    // "Unpacking libc6:amd64 (2.36-9+deb12u10) over (2.36-9+deb12u9) ..."
    const upgraded = [...upgradeLog.matchAll(/^Unpacking (\S+) \(([^)]+)\) over \(([^)]+)\)/gm)].map((x) => `${x[1]} ${x[3]} → ${x[2]}`);
    m = {
      version: BUILD_VERSION,
      base,
      rootfsV2,
      shapes: {},
      rootfs: { v1Files: s1.files, v1Bytes: s1.bytes, v2Files: s2.files, v2Bytes: s2.bytes, upgraded },
    };
  }
  const scratch = path.join(WORK, 'shape-tree');
  for (const [i, s] of SHAPES.entries()) {
    const ref = `bench/shape/${s.name}`;
    const have = m.shapes[s.name];
    if (have && have.rev === s.rev && (await refIs(ref, have.to))) continue;
    log(`committing shape ${s.name} (a copy of the root filesystem, changed) …`);
    await fsp.rm(scratch, { recursive: true, force: true });
    await run('cp', ['-a', v1, scratch]);
    let from: string;
    if (s.v1) {
      await s.v1(scratch);
      from = await commit(ref, `dir=${scratch}`, `${s.name} v1`, 10 + 2 * i);
    } else {
      from = await commit(ref, `ref=${m.base}`, `${s.name} v1`, 10 + 2 * i);
    }
    await s.v2(scratch);
    const to = await commit(ref, `dir=${scratch}`, `${s.name} v2`, 11 + 2 * i);
    m.shapes[s.name] = { rev: s.rev, from, to };
    log(`  ${s.name}: ${from.slice(0, 10)} → ${to.slice(0, 10)}`);
    await fsp.writeFile(marker, JSON.stringify(m, null, 2));
  }
  await fsp.rm(scratch, { recursive: true, force: true });
  await fsp.writeFile(marker, JSON.stringify(m, null, 2));
  return m;
}

// ------------------------------------------------------------------------------------------------
// closures: what a client without a delta downloads

async function closure(repo: Repo, commit: string): Promise<Map<string, number>> {
  const keys = new Map<string, number>();
  const size = async (checksum: string, type: ObjectType) => {
    const k = objectKey(checksum, type);
    if (keys.has(k)) return false;
    keys.set(k, (await fsp.stat(path.join(REPO, k))).size);
    return true;
  };
  await size(commit, ObjectType.Commit);
  const cm = objectKey(commit, ObjectType.CommitMeta);
  const cmStat = await fsp.stat(path.join(REPO, cm)).catch(() => null);
  if (cmStat) keys.set(cm, cmStat.size);
  const c = decodeCommit((await repo.readMetadata(commit, ObjectType.Commit))!);
  const visit = async (tree: string, meta: string): Promise<void> => {
    await size(meta, ObjectType.DirMeta);
    if (!(await size(tree, ObjectType.DirTree))) return;
    const dt = decodeDirTree((await repo.readMetadata(tree, ObjectType.DirTree))!);
    for (const f of dt.files) await size(f.checksum, ObjectType.File);
    for (const d of dt.dirs) await visit(d.treeChecksum, d.metaChecksum);
  };
  await visit(c.rootTree, c.rootMeta);
  return keys;
}

async function objectDownload(repo: Repo, from: string | null, to: string): Promise<{ objects: number; bytes: number }> {
  const have = from ? await closure(repo, from) : new Map<string, number>();
  let objects = 0;
  let bytes = 0;
  for (const [k, n] of await closure(repo, to)) {
    if (have.has(k)) continue;
    objects++;
    bytes += n;
  }
  return { objects, bytes };
}

// ------------------------------------------------------------------------------------------------
// the two generators

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

interface DeltaFigures {
  /** Superblock plus part files. */
  bytes: number;
  superblock: number;
  parts: number[];
  fallbacks: number;
  fallbackBytes: number;
  usize: number;
  objects: Record<string, number>;
  ops: Record<string, number>;
}

function figures(d: DeltaDescription): DeltaFigures {
  const objects: Record<string, number> = {};
  const ops: Record<string, number> = {};
  for (const p of d.parts) {
    for (const [k, v] of Object.entries(p.objects)) objects[k] = (objects[k] ?? 0) + v;
    for (const [k, v] of Object.entries(p.ops)) ops[k] = (ops[k] ?? 0) + v;
  }
  return {
    bytes: d.totalSize,
    superblock: d.superblockSize,
    parts: d.parts.map((p) => p.size),
    fallbacks: d.fallbacks.length,
    fallbackBytes: d.fallbackSize,
    usize: d.totalUsize,
    objects,
    ops,
  };
}

async function ostreeGenerate(p: Pair): Promise<{ ms: number; out: string; stdout: string }> {
  const out = path.join(OSTREE_OUT, p.name);
  await fsp.rm(out, { recursive: true, force: true });
  await fsp.mkdir(out, { recursive: true });
  const args = ['static-delta', 'generate', p.from ? `--from=${p.from}` : '--empty', `--to=${p.to}`, `--filename=${out}/superblock`];
  let t0 = performance.now();
  let r = await ostreeResult(args, { repo: REPO, timeoutMs: 30 * 60_000 });
  if (r.code !== 0) {
    // once seen on the shared machine: "open(O_TMPFILE): Operation not permitted"; a second try is timed
    log(`  ostree static-delta generate failed (${r.stderr.trim().split('\n').at(-1)}); trying once more`);
    await fsp.mkdir(out, { recursive: true });
    t0 = performance.now();
    r = await ostreeResult(args, { repo: REPO, timeoutMs: 30 * 60_000 });
  }
  const ms = performance.now() - t0;
  if (r.code !== 0) throw new Error(`ostree ${args.join(' ')} exited with ${r.code}: ${r.stderr.trim().slice(-800)}`);
  // its figures (modified, rollsum, bsdiff, fallbacks) go partly to stderr
  return { ms, out, stdout: `${r.stdout}\n${r.stderr}` };
}

async function cairnGenerate(repo: Repo, p: Pair): Promise<{ ms: number; result: CompileResult }> {
  const t0 = performance.now();
  // ostree's layout (part files), so that sizes and times compare like for like; where the parts
  // go by default (storage/deltas/placement.ts) shows in the serving half, as bytes hosts download.
  const result = await compileDelta(repo, p.from, p.to, { replace: true, inline: false });
  return { ms: performance.now() - t0, result };
}

/** The figures ostree prints: rollsum/bsdiff counts and fallbacks. */
function ostreeStats(stdout: string): Record<string, number> {
  const n = (re: RegExp) => Number(re.exec(stdout)?.[1] ?? NaN);
  return {
    modified: n(/^modified: (\d+)/m),
    rollsumObjects: n(/^rollsum=(\d+) objects/m),
    bsdiffObjects: n(/^bsdiff=(\d+) objects/m),
    fallbacks: (stdout.match(/^fallback for /gm) ?? []).length,
  };
}

interface PairResult {
  name: string;
  what: string;
  from: string | null;
  to: string;
  runs: number;
  cairn: DeltaFigures & { ms: number[]; medianMs: number; stats: CompileResult['stats'] };
  ostree: DeltaFigures & { ms: number[]; medianMs: number; stats: Record<string, number> };
  sizeRatio: number;
  timeRatio: number;
  download: { objectsOnly: number; objectCount: number; withCairnDelta: number; withOstreeDelta: number; downloadRatio: number };
  met: { size: boolean; time: boolean };
}

async function measure(repo: Repo, p: Pair, runs: number): Promise<PairResult> {
  const cms: number[] = [];
  const oms: number[] = [];
  let last: CompileResult | undefined;
  let ostreeOut = '';
  let ostreeStdout = '';
  for (let i = 0; i < runs; i++) {
    // alternate who goes first (page cache, CPU frequency, neighbours' load)
    const order = i % 2 ? ['cairn', 'ostree'] : ['ostree', 'cairn'];
    for (const who of order) {
      if (who === 'ostree') {
        const o = await ostreeGenerate(p);
        oms.push(o.ms);
        ostreeOut = o.out;
        ostreeStdout = o.stdout;
      } else {
        const c = await cairnGenerate(repo, p);
        cms.push(c.ms);
        last = c.result;
      }
    }
    log(`  ${p.name.padEnd(16)} run ${i + 1}/${runs}: cairn ${(cms.at(-1)! / 1000).toFixed(2)} s  ostree ${(oms.at(-1)! / 1000).toFixed(2)} s`);
  }
  const cd = figures(await describeDelta(backendDeltaSource(repo.backend, p.from, p.to), { expectedDigest: last!.digest }));
  const od = figures(await describeDelta(dirDeltaSource(ostreeOut)));
  if (cd.bytes !== last!.totalSize) throw new Error(`${p.name}: compileDelta says ${last!.totalSize} bytes, the files add up to ${cd.bytes}`);
  const dl = await objectDownload(repo, p.from, p.to);
  const cMed = median(cms);
  const oMed = median(oms);
  const withCairn = cd.bytes + cd.fallbackBytes;
  const withOstree = od.bytes + od.fallbackBytes;
  return {
    name: p.name,
    what: p.what,
    from: p.from,
    to: p.to,
    runs,
    cairn: { ...cd, ms: cms, medianMs: cMed, stats: last!.stats },
    ostree: { ...od, ms: oms, medianMs: oMed, stats: ostreeStats(ostreeStdout) },
    sizeRatio: cd.bytes / od.bytes,
    timeRatio: cMed / oMed,
    download: { objectsOnly: dl.bytes, objectCount: dl.objects, withCairnDelta: withCairn, withOstreeDelta: withOstree, downloadRatio: withCairn / withOstree },
    met: { size: cd.bytes <= od.bytes, time: cMed <= 2 * oMed },
  };
}

// ------------------------------------------------------------------------------------------------
// the stock client, once, outside the timed loop

interface Verdict {
  name: string;
  ok: boolean;
  detail: string;
}

async function verifyWithStockClient(repo: Repo, pairs: Pair[]): Promise<Verdict[]> {
  await updateSummary(repo);
  const clients = path.join(WORK, 'clients');
  await fsp.rm(clients, { recursive: true, force: true });
  let server: CairnProcess | undefined;
  const verdicts: Verdict[] = [];
  try {
    server = await startCairn({ dataDir: DATA, env: { CAIRN_LOG: 'info' }, extraArgs: ['--workers', 'auto'] });
    for (const p of pairs) {
      const c = path.join(clients, p.name);
      const t0 = performance.now();
      try {
        await initRepo(c, 'bare-user');
        await addRemote(c, 'cairn', `${server.url}/repo/${REPO_NAME}`);
        if (p.from) await ostree(['pull', 'cairn', `${p.ref}@${p.from}`], { repo: c, timeoutMs: 20 * 60_000 });
        const r = await ostreeResult(['pull', '--require-static-deltas', 'cairn', p.ref], { repo: c, timeoutMs: 20 * 60_000 });
        if (r.code !== 0) throw new Error(`pull --require-static-deltas failed (${r.code}): ${(r.stderr || r.stdout).trim().slice(-800)}`);
        const got = await revParse(c, `cairn:${p.ref}`);
        if (got !== p.to) throw new Error(`client is at ${got}, expected ${p.to}`);
        const sb = `/repo/${REPO_NAME}/${superblockKey(p.from, p.to)}`;
        const seen = await server.waitForRequest((q) => q.path === sb && q.status === 200, 5000);
        if (!seen) throw new Error(`the client never fetched Cairn's superblock ${sb}`);
        const fsck = await ostreeResult(['fsck'], { repo: c, timeoutMs: 20 * 60_000 });
        if (fsck.code !== 0) throw new Error(`ostree fsck failed: ${(fsck.stderr || fsck.stdout).trim().slice(-800)}`);
        verdicts.push({ name: p.name, ok: true, detail: `pulled through Cairn's delta, fsck clean (${((performance.now() - t0) / 1000).toFixed(1)} s)` });
      } catch (e) {
        verdicts.push({ name: p.name, ok: false, detail: (e as Error).message.split('\n').slice(0, 8).join(' | ') });
      }
      log(`  stock client ${p.name.padEnd(16)} ${verdicts.at(-1)!.ok ? 'ok' : 'FAILED'}: ${verdicts.at(-1)!.detail}`);
      await fsp.rm(c, { recursive: true, force: true });
    }
  } finally {
    await server?.stop();
    await fsp.rm(clients, { recursive: true, force: true });
  }
  return verdicts;
}

// ------------------------------------------------------------------------------------------------

const kB = (n: number) => (n >= 10e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 10e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`);

async function main(): Promise<void> {
  const started = performance.now();
  if (process.getuid?.() !== 0) log('warning: not root; debootstrap, chroot and ownership need root');
  for (const [cmd, pkg] of [
    ['debootstrap', 'debootstrap'],
    ['setfattr', 'attr'],
  ] as const) {
    if (!(await runCommand('sh', ['-c', `command -v ${cmd}`])).stdout.trim()) throw new Error(`${cmd} is not installed: apt-get install -y ${pkg}`);
  }
  await fsp.mkdir(WORK, { recursive: true });
  mirrors = await debianMirrors(SUITE);
  log(`Debian mirror: ${mirrors.mirror.url} (${mirrors.mirror.source}); security: ${mirrors.security.url} (${mirrors.security.source})`);
  const built = await buildRepo();
  const repo = new Repo(REPO_NAME, new FsBackend(REPO));

  let pairs: Pair[] = SHAPES.map((s) => ({ name: s.name, what: s.what, ref: `bench/shape/${s.name}`, from: built.shapes[s.name]!.from, to: built.shapes[s.name]!.to, kind: 'shape' }));
  const v = built.rootfs;
  pairs.push({
    name: 'rootfs-update',
    what: `${SUITE} minbase (${v.v1Files} files, ${kB(v.v1Bytes)}) → dist-upgrade + ${V2_PACKAGES.length} packages (${v.v2Files} files, ${kB(v.v2Bytes)})`,
    ref: 'bench/rootfs',
    from: built.base,
    to: built.rootfsV2,
    kind: 'large',
  });
  if (opts.scratch) pairs.push({ name: 'rootfs-scratch', what: 'root filesystem v2 from scratch (a host with nothing)', ref: 'bench/rootfs', from: null, to: built.rootfsV2, kind: 'scratch' });
  if (opts.only) pairs = pairs.filter((p) => opts.only!.includes(p.name));

  // Earlier runs' deltas (Cairn's in the repo) are replaced run by run; stale ones of pairs that no
  // longer exist would only enlarge the summary.
  await fsp.rm(path.join(REPO, 'deltas'), { recursive: true, force: true });
  await fsp.rm(path.join(REPO, 'delta-indexes'), { recursive: true, force: true });

  const load = os.loadavg();
  log(`load average before the runs: ${load.map((x) => x.toFixed(2)).join(' ')} (${os.cpus().length} cores, shared)`);
  if (pairs.length) {
    log('warm-up (page cache, JIT), not counted …');
    await ostreeGenerate(pairs[0]!);
    await cairnGenerate(repo, pairs[0]!);
  }
  const results: PairResult[] = [];
  for (const p of pairs) results.push(await measure(repo, p, p.kind === 'shape' ? opts.runs : p.kind === 'large' ? opts.largeRuns : opts.scratchRuns));

  let verdicts: Verdict[] = [];
  if (opts.verify) {
    log('stock ostree client, bare-user, pull --require-static-deltas through `cairn serve` (once, not timed) …');
    verdicts = await verifyWithStockClient(repo, pairs);
  }
  await fsp.rm(OSTREE_OUT, { recursive: true, force: true });

  // The serving half: a real `cairn serve`, `cairn push`, the stock client (issue 9 items 2 and 5).
  let serving: ServeResult[] = [];
  let racing: (ServeResult & { jobsAtV2?: unknown }) | null = null;
  const withFrom = results.filter((r) => r.from !== null);
  if (opts.serve && withFrom.length) {
    // the root filesystem update first: its v1 client is the template the shapes' clients start from
    const ordered = [...withFrom].sort((a, b) => (a.name === 'rootfs-update' ? -1 : b.name === 'rootfs-update' ? 1 : 0));
    log(`serving: cairn serve (default policy), cairn push v1, jobs settled, cairn push v2, superblock polled every ${POLL_MS} ms; then the stock client pulls v2 both ways …`);
    // The reference generation of each pair again, right after its delta appeared: both under the same load.
    const reference = async (p: { name: string; from: string; to: string }) => (await ostreeGenerate({ name: p.name, what: '', ref: '', from: p.from, to: p.to, kind: 'shape' })).ms;
    serving = await measureServing(
      path.join(WORK, 'serve'),
      REPO_NAME,
      REPO,
      ordered.map((r) => ({ name: r.name, ref: pairs.find((p) => p.name === r.name)!.ref, from: r.from!, to: r.to })),
      { bytes: true, logs: path.join(WORK, 'request-logs'), reference },
    );
    const rf = withFrom.find((r) => r.name === 'rootfs-update');
    if (opts.race && rf) {
      log('serving: rootfs-update, v2 pushed as soon as v1 is acknowledged (v1\'s from-scratch delta running) …');
      racing = await measureRacing(path.join(WORK, 'serve-race'), REPO_NAME, REPO, { name: rf.name, ref: 'bench/rootfs', from: rf.from!, to: rf.to }, undefined, reference);
    }
    await fsp.rm(path.join(WORK, 'serve'), { recursive: true, force: true });
    await fsp.rm(path.join(WORK, 'serve-race'), { recursive: true, force: true });
  }

  // ---- report
  const rows: string[][] = [
    ['shape', 'cairn delta', 'ostree delta', 'size ×', 'cairn s', 'ostree s', 'time ×', 'no delta', 'w/ cairn', 'w/ ostree', 'fallbacks c/o', 'met'],
  ];
  for (const r of results) {
    rows.push([
      r.name,
      kB(r.cairn.bytes),
      kB(r.ostree.bytes),
      r.sizeRatio.toFixed(3),
      (r.cairn.medianMs / 1000).toFixed(2),
      (r.ostree.medianMs / 1000).toFixed(2),
      r.timeRatio.toFixed(2),
      kB(r.download.objectsOnly),
      kB(r.download.withCairnDelta),
      kB(r.download.withOstreeDelta),
      `${r.cairn.fallbacks}/${r.ostree.fallbacks}`,
      r.met.size && r.met.time ? 'yes' : [r.met.size ? '' : 'SIZE', r.met.time ? '' : 'TIME'].filter(Boolean).join('+') + ' NO',
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log('');
  console.log(`delta: superblock + parts; fallbacks (loose .filez) are in "w/ …" only. no delta / w/ …: bytes a host at v1 downloads.`);
  console.log(
    `times: median of ${opts.runs} run(s) per small shape, ${opts.largeRuns} for rootfs-update` +
      (opts.scratch ? `, ${opts.scratchRuns} for rootfs-scratch. ` : '. ') +
      `Targets: size × ≤ 1.0, time × ≤ 2.0.`,
  );
  console.log('');
  console.log(line(rows[0]!));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows.slice(1)) console.log(line(r));
  if (serving.length) {
    const srows: string[][] = [
      ['shape', 'push→delta s', 'ostree gen s', 'ttd ×', 'delta path', 'object path', 'bytes ×', 'sb+parts', 'fallbacks', 'loose (n)', 'met'],
    ];
    const secs = (ms: number | null) => (ms === null ? 'never' : (ms / 1000).toFixed(2));
    const row = (s: ServeResult, ostreeMs: number | undefined) => {
      const ttd = s.timeToDeltaMs !== null && ostreeMs ? s.timeToDeltaMs / ostreeMs : NaN;
      const b = s.bytesRatio;
      const met = [Number.isFinite(ttd) && ttd <= 1 ? '' : 'TIME', b === undefined ? '' : b <= 0.5 ? '' : b <= 1 ? '≤1.0' : 'BYTES'].filter(Boolean).join('+');
      return [
        s.name,
        secs(s.timeToDeltaMs),
        ostreeMs ? (ostreeMs / 1000).toFixed(2) : '-',
        Number.isFinite(ttd) ? ttd.toFixed(2) : '-',
        s.deltaPath ? kB(s.deltaPath.total) : s.error ? 'FAILED' : '-',
        s.objectPath ? kB(s.objectPath.total) : '-',
        b === undefined ? '-' : b.toFixed(2),
        s.deltaPath ? kB(s.deltaPath.delta) : '-',
        s.deltaPath ? kB(s.deltaPath.fallbacks) : '-',
        s.deltaPath ? `${kB(s.deltaPath.loose)} (${s.deltaPath.looseRequests})` : '-',
        s.error ? 'ERROR' : met || 'yes',
      ];
    };
    for (const s of serving) srows.push(row(s, s.referenceMs ?? results.find((r) => r.name === s.name)?.ostree.medianMs));
    if (racing) srows.push(row(racing, racing.referenceMs ?? results.find((r) => r.name === 'rootfs-update')?.ostree.medianMs));
    const sw = srows[0]!.map((_, i) => Math.max(...srows.map((r) => r[i]!.length)));
    const sline = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(sw[i]!) : c.padStart(sw[i]!))).join('  ');
    console.log('');
    console.log(
      `serving (cairn serve, default policy): push→delta = from the acknowledged \`cairn push\` of v2 to the v1→v2 superblock answering 200 ` +
        `(polled every ${POLL_MS} ms), against ostree static-delta generate of the same pair run right after it (same load); target ≤ 1.0×.`,
    );
    console.log(
      `bytes: what Cairn sent to a stock ostree ${machineInfo().ostree} bare-user client at v1 pulling v2 with --require-static-deltas (delta path) ` +
        `and with --disable-static-deltas (object path); target ≤ 0.5×, never > 1.0×. sb+parts, fallbacks and loose objects split the delta path.`,
    );
    console.log('');
    console.log(sline(srows[0]!));
    console.log(sw.map((w) => '-'.repeat(w)).join('  '));
    for (const r of srows.slice(1)) console.log(sline(r));
  }
  if (verdicts.length) {
    console.log('');
    console.log('stock ostree 2022.7 client (bare-user, pull --require-static-deltas through cairn serve, then fsck):');
    for (const vd of verdicts) console.log(`  ${vd.name.padEnd(16)} ${vd.ok ? 'ok    ' : 'FAILED'} ${vd.detail}`);
  }

  const result = {
    date: new Date().toISOString(),
    command: `npm run bench:delta -- ${argv.join(' ')}`.trim(),
    machine: {
      ...machineInfo(),
      loadAverageBefore: load,
      loadAverageAfter: os.loadavg(),
    },
    options: opts,
    rootfs: { suite: SUITE, mirror: mirrors.mirror, securityMirror: mirrors.security, v2Packages: V2_PACKAGES, ...built.rootfs },
    shapes: Object.fromEntries(SHAPES.map((s) => [s.name, s.what])),
    results,
    stockClient: verdicts,
    serving,
    racing,
    targets: {
      sizeRatioMax: 1.0,
      timeRatioMax: 2.0,
      met: Object.fromEntries(results.map((r) => [r.name, r.met])),
      allMet: results.every((r) => r.met.size && r.met.time),
    },
    elapsedSeconds: (performance.now() - started) / 1000,
  };
  await fsp.mkdir(path.dirname(RESULTS), { recursive: true });
  await fsp.writeFile(RESULTS, JSON.stringify(result, (_k, val) => (typeof val === 'bigint' ? Number(val) : val), 2) + '\n');
  console.log(`\nJSON summary: ${path.relative(process.cwd(), RESULTS)}  (whole run ${(result.elapsedSeconds / 60).toFixed(1)} min)`);
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
