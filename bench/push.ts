// Push benchmark: `cairn push` of a ~10,000-object, few-hundred-MB commit (v1) to a fresh Cairn, then of
// its next version (v2: some files modified, some added, some removed) onto that server, against the
// stock client pulling the same commits from nginx into a fresh archive repo (v1), then into that repo
// (v2: only the changed objects travel both ways). Comparable verify-and-write work on the receiving
// side; plus what verification costs on one thread.
//
//   npm run bench:push                       (builds first; see package.json)
//   node dist/bench/push.js [--rounds N] [--files N] [--jobs N] [--workers N|auto] [--cpu-prof] [--no-verify-pass]
//
//   --cpu-prof   run `cairn serve` and `cairn push` under `node --cpu-prof` (profiles in WORK/profiles/)
//
// Env: CAIRN_BENCH_DIR (work folder; default bench/.work/push; the generated repo is cached there);
// CAIRN_BENCH_CLI (the `cairn` script to measure, default bin/cairn.js: e.g. a copy of bin/cairn.js
// beside a `dist` link to another build folder). Needs the ostree client and nginx-light. A benchmark,
// never a test: it reports, it does not fail. Writes bench/results/push-latest.json.
//
// The server's repository has policy deltas off: a delta job compiling v1 in the background would
// share the CPU with the v2 push (bench:delta measures deltas).

import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { verifyFilez } from '../storage/objects/filez';
import { objectTypeFromExtension, ObjectType } from '../storage/objects/types';
import { FsBackend } from '../storage/backends/fs';
import { objectName, walkCommitTree } from '../storage/repo/closure';
import { DEFAULT_INGEST_LIMITS, WHOLE_OBJECT_BYTES } from '../storage/repo/ingest';
import { Repo } from '../storage/repo/repo';
import { verifyObject } from '../storage/repo/verify';
import { projectRoot, startCairn } from '../test/helpers/cairn-process';
import { addRemote, commitTree, initRepo, ostree, pseudoRandomBytes, updateSummary } from '../test/helpers/ostree';
import { argv, flag, machineInfo, median, numberOption, readCachedRepo, runNode, treeCpuSeconds, writeCachedRepo } from './common';
import { startNginx } from './nginx';

const num = (name: string, dflt: number) => numberOption(name, dflt, { integer: true });
const workersArg = (() => {
  const i = argv.indexOf('--workers');
  return i < 0 ? 'auto' : String(argv[i + 1]);
})();
const opts = { rounds: num('rounds', 3), files: num('files', 9000), jobs: num('jobs', 4), workers: workersArg, cpuProf: flag('cpu-prof'), verifyPass: !flag('no-verify-pass') };

const ROOT = projectRoot();
const CLI = path.resolve(process.env.CAIRN_BENCH_CLI || path.join(ROOT, 'bin', 'cairn.js'));
// The server measured is the same script's `cairn serve` (startCairn takes another script from CAIRN_E2E_SERVER).
if (process.env.CAIRN_BENCH_CLI) process.env.CAIRN_E2E_SERVER = CLI;
const WORK = path.resolve(process.env.CAIRN_BENCH_DIR || path.join(ROOT, 'bench', '.work', 'push'));
const LOCAL = path.join(WORK, 'local');
const PROFILES = path.join(WORK, 'profiles');
/** The ref of both versions (v2 is v1's child; `ostree commit` binds a commit to its branch). */
const REF = 'os/x86_64/bench';
const RESULTS = path.join(ROOT, 'bench', 'results', 'push-latest.json');
const SHAPE_VERSION = 3;
const log = (s: string) => process.stderr.write(`${s}\n`);

// ------------------------------------------------------------------------------------------------
// the commits: a deterministic tree shaped like an OS image (many small files, a few large ones,
// compressible text and incompressible data), committed by the real `ostree commit`; then the same
// tree after an update (files modified, added and removed), committed as its child

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

const WORDS = 'config service module kernel driver library system user value return error option default file path buffer stream'.split(' ');

function textBytes(r: () => number, size: number): Buffer {
  const parts: string[] = [];
  let n = 0;
  while (n < size) {
    const w = WORDS[Math.floor(r() * WORDS.length)]!;
    parts.push(w);
    n += w.length + 1;
  }
  return Buffer.from(parts.join(r() < 0.1 ? '\n' : ' ')).subarray(0, size);
}

interface Version {
  commit: string;
  files: number;
  bytes: number;
  objects: number;
  objectBytes: number;
}

interface Generated {
  shape: { version: number; files: number };
  /** The marker's commit, v2 (readCachedRepo checks that REF still points at it). */
  commit: string;
  v1: Version;
  v2: Version & { modified: number; added: number; removed: number };
  /** Objects of v2 that v1 lacks: what an incremental push or pull transfers. */
  changedObjects: number;
  changedObjectBytes: number;
}

/** File i of the tree: ~40 large files of 2–8 MB (half of the bytes), the rest log-uniform 100 B – 64 kB. */
function fileBytes(i: number, seed: number, r: () => number): Buffer {
  const size = i < 40 ? Math.floor(2e6 + r() * 6e6) : Math.floor(Math.exp(Math.log(100) + r() * (Math.log(65536) - Math.log(100))));
  return r() < 0.5 ? textBytes(rng(seed), size) : pseudoRandomBytes(seed, size);
}

async function buildLocalRepo(): Promise<Generated> {
  const shape = { version: SHAPE_VERSION, files: opts.files };
  const marker = path.join(WORK, 'shape.json');
  const cached = await readCachedRepo<Generated>(marker, shape, LOCAL, REF);
  if (cached) {
    log(`using the cached repo in ${LOCAL} (v1 ${cached.v1.objects} objects, v2 ${cached.changedObjects} changed)`);
    return cached;
  }
  log(`generating a ${opts.files}-file tree in ${WORK} …`);
  await fsp.rm(WORK, { recursive: true, force: true });
  const src = path.join(WORK, 'src');
  const r = rng(20261127);
  const dirs = Array.from({ length: Math.max(20, Math.floor(opts.files / 15)) }, (_, i) => `usr/${['lib', 'share', 'bin', 'include'][i % 4]}/pkg${i}`);
  const fileOf = (i: number) => path.join(src, dirs[i % dirs.length]!, `f${i}`);
  const write = async (i: number, data: Buffer) => {
    await fsp.mkdir(path.dirname(fileOf(i)), { recursive: true });
    await fsp.writeFile(fileOf(i), data);
  };
  let bytes = 0;
  for (let i = 0; i < opts.files; i++) {
    const data = fileBytes(i, i + 1, r);
    await write(i, data);
    bytes += data.length;
  }
  log(`committing v1, ${(bytes / 1e6).toFixed(0)} MB, with ostree commit (archive) …`);
  await initRepo(LOCAL, 'archive');
  const c1 = await commitTree(LOCAL, { branch: REF, tree: src, subject: 'bench v1', timestamp: '2026-11-27T00:00:00Z' });
  const objects1 = await objectSizes(LOCAL);

  // v2, an update as a package upgrade makes it: ~5% of the small files and 4 of the large ones
  // rewritten, ~3% new files (some in new folders), ~1.5% removed.
  const u = rng(20261128);
  const v1Bytes = bytes;
  let modified = 0;
  let removed = 0;
  for (let i = 0; i < opts.files; i++) {
    const x = u();
    if ((i < 40 && i % 10 === 3) || (i >= 40 && x < 0.05)) {
      const before = (await fsp.stat(fileOf(i))).size;
      const data = fileBytes(i, 1_000_000 + i, u);
      await write(i, data);
      bytes += data.length - before;
      modified++;
    } else if (i >= 40 && x < 0.065) {
      bytes -= (await fsp.stat(fileOf(i))).size;
      await fsp.rm(fileOf(i));
      removed++;
    }
  }
  const added = Math.floor(opts.files * 0.03);
  for (let k = 0; k < added; k++) {
    const i = opts.files + k;
    const p = path.join(src, 'usr', 'lib', `new${k % 20}`, `f${i}`);
    const data = fileBytes(40 + k, 2_000_000 + k, u);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, data);
    bytes += data.length;
  }
  log(`committing v2 (${modified} modified, ${added} added, ${removed} removed) …`);
  const c2 = await commitTree(LOCAL, { branch: REF, tree: src, subject: 'bench v2', timestamp: '2026-11-28T00:00:00Z', parent: c1 });
  await updateSummary(LOCAL);
  await fsp.rm(src, { recursive: true, force: true });
  const objects2 = await objectSizes(LOCAL);
  const v1 = await treeOf(c1, objects1);
  const v2 = await treeOf(c2, objects2);
  const changed = [...v2.names].filter((n) => !v1.names.has(n));
  const m: Generated = {
    shape,
    commit: c2,
    v1: { commit: c1, files: opts.files, bytes: v1Bytes, objects: v1.names.size, objectBytes: v1.bytes },
    v2: { commit: c2, files: opts.files + added - removed, bytes, objects: v2.names.size, objectBytes: v2.bytes, modified, added, removed },
    changedObjects: changed.length,
    changedObjectBytes: changed.reduce((n, name) => n + objects2.get(name)!, 0),
  };
  await writeCachedRepo(marker, m);
  return m;
}

/** Object name → archive size of every object in a repository. */
async function objectSizes(repo: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const f of await objectFiles(repo)) out.set(path.basename(path.dirname(f)) + path.basename(f), (await fsp.stat(f)).size);
  return out;
}

/** The objects of one commit's tree and their archive bytes. */
async function treeOf(commit: string, sizes: Map<string, number>): Promise<{ names: Set<string>; bytes: number }> {
  const walk = await walkCommitTree(new Repo('local', new FsBackend(LOCAL)), commit);
  const names = new Set(walk.objects.map((o) => objectName(o)));
  let bytes = 0;
  for (const n of names) bytes += sizes.get(n) ?? 0;
  return { names, bytes };
}

async function objectFiles(repo: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await fsp.readdir(path.join(repo, 'objects'))) for (const f of await fsp.readdir(path.join(repo, 'objects', d))) out.push(path.join(repo, 'objects', d, f));
  return out;
}

// ------------------------------------------------------------------------------------------------
// helpers

function runCli(args: string[], nodeArgs: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runNode(CLI, args, nodeArgs);
}

/** nginx serving the local archive repo at /repo/local, for the reference pull. */
async function startNginxServer(): Promise<{ base: string; stop(): Promise<void> }> {
  const n = await startNginx({ prefix: path.join(WORK, 'nginx'), root: WORK, probe: 'local/config', accessLog: false });
  return { base: `${n.origin}/repo/local`, stop: n.stop };
}

const profileArgs = (what: string) => (opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.join(PROFILES, what)}`] : []);

// ------------------------------------------------------------------------------------------------
// measurements

interface PushResult {
  seconds: number;
  objects: number;
  uploaded: number;
  bytes: number;
  serverCpuSeconds: number;
  requests: { missing: number; batches: number; puts: number; retries: number };
}

interface Round {
  push: { fresh: PushResult; incremental: PushResult };
  pull: { fresh: number; incremental: number };
}

/**
 * On a brand-new server (own data folder, own token secret): push v1 (the fresh case), then v2 onto
 * it (the incremental case: only v2's changed objects are missing).
 */
async function pushRound(gen: Generated, i: number): Promise<Round['push']> {
  const data = path.join(WORK, `data-${i}`);
  await fsp.rm(data, { recursive: true, force: true });
  const init = await runCli(['init-repo', 'main', '--data', data]);
  if (init.code !== 0) throw new Error(init.stderr);
  const settings = path.join(data, 'settings', 'main.json');
  const s = JSON.parse(await fsp.readFile(settings, 'utf8')) as Record<string, unknown>;
  await fsp.writeFile(settings, JSON.stringify({ ...s, deltas: { scratch: false, previousCommits: 0 } }, null, 2) + '\n');
  const tok = await runCli(['token', '--data', data, '--scope', 'push', '--repo', 'main', '--ttl', '1h']);
  if (tok.code !== 0) throw new Error(tok.stderr);
  const server = await startCairn({
    dataDir: data,
    env: { CAIRN_LOG: 'warn' },
    logFile: path.join(WORK, `cairn-${i}.log`),
    extraArgs: ['--workers', opts.workers],
    nodeArgs: profileArgs('serve'),
  });
  const one = async (ref: string): Promise<PushResult> => {
    const cpu0 = treeCpuSeconds(server.pid);
    const t0 = performance.now();
    const args = ['push', '--url', `${server.url}/repo/main`, '--token', tok.stdout.trim(), '--repo', LOCAL, '--to', REF, '--jobs', String(opts.jobs), '--json', ref];
    const r = await runCli(args, profileArgs('push'));
    const seconds = (performance.now() - t0) / 1000;
    const serverCpuSeconds = treeCpuSeconds(server.pid) - cpu0;
    if (r.code !== 0) throw new Error(`push of ${ref} failed: ${r.stderr}`);
    const j = JSON.parse(r.stdout) as PushResult;
    return { seconds, objects: j.objects, uploaded: j.uploaded, bytes: j.bytes, serverCpuSeconds, requests: j.requests };
  };
  try {
    // A checksum names v1 (REF is at v2 locally); `--to` is the server's ref.
    const fresh = await one(gen.v1.commit);
    const incremental = await one(gen.v2.commit);
    return { fresh, incremental };
  } finally {
    await server.stop();
    await fsp.rm(data, { recursive: true, force: true });
  }
}

/** The stock client pulls v1 from nginx into a fresh archive repo, then v2 into the same repo. */
async function pullRound(gen: Generated, base: string, i: number): Promise<Round['pull']> {
  const client = path.join(WORK, `client-${i}`);
  await fsp.rm(client, { recursive: true, force: true });
  await initRepo(client, 'archive');
  await addRemote(client, 'origin', base);
  const one = async (ref: string) => {
    const t0 = performance.now();
    await ostree(['pull', 'origin', ref], { repo: client, timeoutMs: 1_800_000 });
    return (performance.now() - t0) / 1000;
  };
  try {
    const fresh = await one(`${REF}@${gen.v1.commit}`);
    const incremental = await one(REF);
    return { fresh, incremental };
  } finally {
    await fsp.rm(client, { recursive: true, force: true });
  }
}

/**
 * What the server's verification costs, measured without the network: one pass over every object
 * of the local repository (v1 and v2) as the server decides about it — verifyObject on the whole
 * object up to WHOLE_OBJECT_BYTES (one-piece inflate and content hash, or metadata parse, normal
 * form and SHA-256), the streaming verifier beyond — on one thread in this process.
 */
async function verifyPass(): Promise<{ seconds: number; cpuSeconds: number; objects: number }> {
  const files = await objectFiles(LOCAL);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let n = 0;
  for (const f of files) {
    const base = path.basename(f);
    const type = objectTypeFromExtension(base.slice(base.indexOf('.') + 1));
    const checksum = path.basename(path.dirname(f)) + base.slice(0, base.indexOf('.'));
    if (type === ObjectType.CommitMeta) continue;
    if (type === ObjectType.File && (await fsp.stat(f)).size > WHOLE_OBJECT_BYTES) {
      const r = await verifyFilez(createReadStream(f, { highWaterMark: 256 * 1024 }));
      if (r.checksum !== checksum) throw new Error(`${f} does not verify`);
    } else {
      await verifyObject({ checksum, type, data: await fsp.readFile(f), maxFileSize: DEFAULT_INGEST_LIMITS.maxFileSize });
    }
    n++;
  }
  const cpu = process.cpuUsage(cpu0);
  return { seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6, objects: n };
}

function summarize(rounds: Round[], which: 'fresh' | 'incremental') {
  const push = rounds.map((r) => r.push[which]);
  const pull = rounds.map((r) => r.pull[which]);
  const pushS = median(push.map((p) => p.seconds));
  const pullS = median(pull);
  const perRound = rounds.map((r) => r.push[which].seconds / r.pull[which]);
  return {
    push: { medianSeconds: pushS, serverCpuSecondsMedian: median(push.map((p) => p.serverCpuSeconds)), rounds: push },
    stockPullFromNginx: { medianSeconds: pullS, rounds: pull },
    /** Median push over median pull: the figure the target is about. */
    ratioPushToPull: pushS / pullS,
    /** Each round's own ratio (push and pull ran back to back), to show the spread. */
    roundRatios: perRound,
    medianRoundRatio: median(perRound),
  };
}

async function main(): Promise<void> {
  await fsp.mkdir(WORK, { recursive: true });
  if (opts.cpuProf) await fsp.rm(PROFILES, { recursive: true, force: true });
  const gen = await buildLocalRepo();
  log(`v1 ${gen.v1.commit.slice(0, 12)}: ${gen.v1.objects} objects, ${(gen.v1.objectBytes / 1e6).toFixed(0)} MB archived (${(gen.v1.bytes / 1e6).toFixed(0)} MB of files)`);
  log(`v2 ${gen.v2.commit.slice(0, 12)}: ${gen.v2.modified} files modified, ${gen.v2.added} added, ${gen.v2.removed} removed; ${gen.changedObjects} new objects, ${(gen.changedObjectBytes / 1e6).toFixed(1)} MB`);
  log(`measuring ${CLI}`);
  const nginx = await startNginxServer();
  const rounds: Round[] = [];
  try {
    for (let i = 0; i < opts.rounds; i++) {
      // Alternate which goes first, so neither always runs on a warmer page cache.
      let push: Round['push'] | undefined;
      let pull: Round['pull'] | undefined;
      const doPush = async () => {
        push = await pushRound(gen, i);
        log(`round ${i + 1} push: v1 ${push.fresh.seconds.toFixed(2)} s (${push.fresh.uploaded} objects, server CPU ${push.fresh.serverCpuSeconds.toFixed(2)} s), ` +
          `v2 ${push.incremental.seconds.toFixed(2)} s (${push.incremental.uploaded} objects, server CPU ${push.incremental.serverCpuSeconds.toFixed(2)} s)`);
      };
      const doPull = async () => {
        pull = await pullRound(gen, nginx.base, i);
        log(`round ${i + 1} ostree pull from nginx: v1 ${pull.fresh.toFixed(2)} s, v2 ${pull.incremental.toFixed(2)} s`);
      };
      if (i % 2 === 0) {
        await doPush();
        await doPull();
      } else {
        await doPull();
        await doPush();
      }
      rounds.push({ push: push!, pull: pull! });
      log(`round ${i + 1} push/pull: fresh ${(push!.fresh.seconds / pull!.fresh).toFixed(2)}×, incremental ${(push!.incremental.seconds / pull!.incremental).toFixed(2)}×`);
    }
  } finally {
    await nginx.stop();
  }
  const verify = opts.verifyPass ? await verifyPass() : undefined;
  const fresh = summarize(rounds, 'fresh');
  const incremental = summarize(rounds, 'incremental');
  const result = {
    date: new Date().toISOString(),
    machine: machineInfo(),
    loadAverage: os.loadavg(),
    cli: path.relative(ROOT, CLI),
    commits: gen,
    options: opts,
    fresh,
    incremental,
    target: 1.0,
    verification: verify && { ...verify, objectsPerSecond: verify.objects / verify.seconds },
  };
  await fsp.mkdir(path.dirname(RESULTS), { recursive: true });
  await fsp.writeFile(RESULTS, JSON.stringify(result, null, 2) + '\n');
  const row = (a: string, b: string, c: string, d: string, e: string) => `${a.padEnd(40)}${b.padStart(10)}${c.padStart(10)}${d.padStart(12)}${e.padStart(14)}`;
  const line = (what: string, s: ReturnType<typeof summarize>, objects: number, mb: number) => [
    row(`cairn push --jobs ${opts.jobs} (${what})`, s.push.medianSeconds.toFixed(2), String(objects), (mb / s.push.medianSeconds).toFixed(1), s.push.serverCpuSecondsMedian.toFixed(2)),
    row(`ostree pull from nginx (${what})`, s.stockPullFromNginx.medianSeconds.toFixed(2), String(objects), (mb / s.stockPullFromNginx.medianSeconds).toFixed(1), ''),
  ];
  const ratios = (s: ReturnType<typeof summarize>) => `${s.ratioPushToPull.toFixed(2)}× (rounds: ${s.roundRatios.map((x) => x.toFixed(2)).join(', ')})`;
  const lines = [
    '',
    `push benchmark: v1 ${gen.v1.objects} objects, ${(gen.v1.objectBytes / 1e6).toFixed(0)} MB; v2 adds ${gen.changedObjects} objects, ${(gen.changedObjectBytes / 1e6).toFixed(1)} MB; ` +
      `${opts.rounds} rounds, medians; ${os.cpus().length} CPUs, serve --workers ${opts.workers}; load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`,
    row('', 'seconds', 'objects', 'MB/s', 'server CPU s'),
    ...line('fresh, v1', fresh, gen.v1.objects, gen.v1.objectBytes / 1e6),
    ...line('incremental, v1 → v2', incremental, gen.changedObjects, gen.changedObjectBytes / 1e6),
    ...(verify ? [row('verify-only pass, all objects (1 thread)', verify.seconds.toFixed(2), String(verify.objects), '', verify.cpuSeconds.toFixed(2))] : []),
    '',
    `push / pull, fresh:       ${ratios(fresh)} (target ≤ 1.0×)`,
    `push / pull, incremental: ${ratios(incremental)} (target ≤ 1.0×)`,
    `results: ${path.relative(ROOT, RESULTS)}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:push failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
