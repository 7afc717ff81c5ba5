// Push benchmark: `cairn push` of a ~10,000-object, few-hundred-MB commit to a fresh Cairn, against
// the stock client pulling the same commit from nginx into a fresh archive repo (comparable
// verify-and-write work on the receiving side), plus what verification costs.
//
//   npm run bench:push                       (builds first; see package.json)
//   node dist/bench/push.js [--rounds N] [--files N] [--jobs N]
//
// Env: CAIRN_BENCH_DIR (work folder; default bench/.work/push; the generated repo is cached there).
// Needs the ostree client and nginx-light. A benchmark, never a test: it reports, it does not fail.
// Writes bench/results/push-latest.json.

import { spawn } from 'node:child_process';
import { createReadStream, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { sha256Hex } from '../storage/objects/checksum';
import { verifyFilez } from '../storage/objects/filez';
import { objectTypeFromExtension, ObjectType } from '../storage/objects/types';
import { validateMetadataObject } from '../storage/repo/repo';
import { projectRoot, startCairn } from '../test/helpers/cairn-process';
import { addRemote, commitTree, initRepo, ostree, pseudoRandomBytes, updateSummary } from '../test/helpers/ostree';
import { machineInfo, numberOption, readCachedRepo, writeCachedRepo } from './common';
import { startNginx } from './nginx';

const num = (name: string, dflt: number) => numberOption(name, dflt, { integer: true });
const opts = { rounds: num('rounds', 3), files: num('files', 9000), jobs: num('jobs', 4) };

const ROOT = projectRoot();
const CLI = path.join(ROOT, 'bin', 'cairn.js');
const WORK = path.resolve(process.env.CAIRN_BENCH_DIR || path.join(ROOT, 'bench', '.work', 'push'));
const LOCAL = path.join(WORK, 'local');
const REF = 'os/x86_64/bench';
const RESULTS = path.join(ROOT, 'bench', 'results', 'push-latest.json');
const SHAPE_VERSION = 1;
const log = (s: string) => process.stderr.write(`${s}\n`);

// ------------------------------------------------------------------------------------------------
// the commit: a deterministic tree shaped like an OS image (many small files, a few large ones,
// compressible text and incompressible data), committed by the real `ostree commit`

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

interface Generated {
  shape: { version: number; files: number };
  commit: string;
  files: number;
  bytes: number;
  objects: number;
  objectBytes: number;
}

async function buildLocalRepo(): Promise<Generated> {
  const shape = { version: SHAPE_VERSION, files: opts.files };
  const marker = path.join(WORK, 'shape.json');
  const cached = await readCachedRepo<Generated>(marker, shape, LOCAL, REF);
  if (cached) {
    log(`using the cached repo in ${LOCAL} (${cached.objects} objects, ${(cached.objectBytes / 1e6).toFixed(0)} MB)`);
    return cached;
  }
  log(`generating a ${opts.files}-file tree in ${WORK} …`);
  await fsp.rm(WORK, { recursive: true, force: true });
  const src = path.join(WORK, 'src');
  const r = rng(20261127);
  const dirs = Array.from({ length: Math.max(20, Math.floor(opts.files / 15)) }, (_, i) => `usr/${['lib', 'share', 'bin', 'include'][i % 4]}/pkg${i}`);
  let bytes = 0;
  for (let i = 0; i < opts.files; i++) {
    // ~40 large files of 2–8 MB (half of the bytes), the rest log-uniform 100 B – 64 kB.
    const size = i < 40 ? Math.floor(2e6 + r() * 6e6) : Math.floor(Math.exp(Math.log(100) + r() * (Math.log(65536) - Math.log(100))));
    const data = r() < 0.5 ? textBytes(rng(i + 1), size) : pseudoRandomBytes(i + 1, size);
    const p = path.join(src, dirs[i % dirs.length]!, `f${i}`);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, data);
    bytes += size;
  }
  log(`committing ${(bytes / 1e6).toFixed(0)} MB with ostree commit (archive) …`);
  await initRepo(LOCAL, 'archive');
  const commit = await commitTree(LOCAL, { branch: REF, tree: src, subject: 'bench', timestamp: '2026-11-27T00:00:00Z' });
  await updateSummary(LOCAL);
  await fsp.rm(src, { recursive: true, force: true });
  let objects = 0;
  let objectBytes = 0;
  for (const f of await objectFiles(LOCAL)) {
    objects++;
    objectBytes += (await fsp.stat(f)).size;
  }
  const m: Generated = { shape, commit, files: opts.files, bytes, objects, objectBytes };
  await writeCachedRepo(marker, m);
  return m;
}

async function objectFiles(repo: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await fsp.readdir(path.join(repo, 'objects'))) for (const f of await fsp.readdir(path.join(repo, 'objects', d))) out.push(path.join(repo, 'objects', d, f));
  return out;
}

// ------------------------------------------------------------------------------------------------
// helpers

function runNode(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** CPU seconds (user + system) a live process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** nginx serving the local archive repo at /repo/local, for the reference pull. */
async function startNginxServer(): Promise<{ base: string; stop(): Promise<void> }> {
  const n = await startNginx({ prefix: path.join(WORK, 'nginx'), root: WORK, probe: 'local/config', accessLog: false });
  return { base: `${n.origin}/repo/local`, stop: n.stop };
}

// ------------------------------------------------------------------------------------------------
// measurements

interface PushRound {
  seconds: number;
  objects: number;
  uploaded: number;
  bytes: number;
  serverCpuSeconds: number;
  requests: { missing: number; batches: number; puts: number; retries: number };
}

/** One push to a brand-new server (own data folder, own token secret). */
async function pushRound(i: number): Promise<PushRound> {
  const data = path.join(WORK, `data-${i}`);
  await fsp.rm(data, { recursive: true, force: true });
  const init = await runNode(['init-repo', 'main', '--data', data]);
  if (init.code !== 0) throw new Error(init.stderr);
  const tok = await runNode(['token', '--data', data, '--scope', 'push', '--repo', 'main', '--ttl', '1h']);
  if (tok.code !== 0) throw new Error(tok.stderr);
  const server = await startCairn({ dataDir: data, env: { CAIRN_LOG: 'warn' }, logFile: path.join(WORK, `cairn-${i}.log`), extraArgs: ['--workers', 'auto'] });
  try {
    const cpu0 = cpuSeconds(server.pid);
    const t0 = performance.now();
    const r = await runNode(['push', '--url', `${server.url}/repo/main`, '--token', tok.stdout.trim(), '--repo', LOCAL, '--jobs', String(opts.jobs), '--json', REF]);
    const seconds = (performance.now() - t0) / 1000;
    const serverCpuSeconds = cpuSeconds(server.pid) - cpu0;
    if (r.code !== 0) throw new Error(`push failed: ${r.stderr}`);
    const j = JSON.parse(r.stdout) as PushRound;
    return { seconds, objects: j.objects, uploaded: j.uploaded, bytes: j.bytes, serverCpuSeconds, requests: j.requests };
  } finally {
    await server.stop();
    await fsp.rm(data, { recursive: true, force: true });
  }
}

/** The stock client pulls the commit from nginx into a fresh archive repo. */
async function pullRound(base: string, i: number): Promise<number> {
  const client = path.join(WORK, `client-${i}`);
  await fsp.rm(client, { recursive: true, force: true });
  await initRepo(client, 'archive');
  await addRemote(client, 'origin', base);
  const t0 = performance.now();
  await ostree(['pull', 'origin', REF], { repo: client, timeoutMs: 1_800_000 });
  const seconds = (performance.now() - t0) / 1000;
  await fsp.rm(client, { recursive: true, force: true });
  return seconds;
}

/**
 * What the server's verification costs, measured without the network: one pass over every object
 * as ingest checks it (.filez inflated and content-hashed; metadata parsed, normal form checked,
 * SHA-256), single-threaded in this process.
 */
async function verifyPass(): Promise<{ seconds: number; cpuSeconds: number; objects: number }> {
  const files = await objectFiles(LOCAL);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let n = 0;
  for (const f of files) {
    const base = path.basename(f);
    const type = objectTypeFromExtension(base.slice(base.indexOf('.') + 1));
    if (type === ObjectType.File) await verifyFilez(createReadStream(f, { highWaterMark: 256 * 1024 }));
    else {
      const data = await fsp.readFile(f);
      if (type !== ObjectType.CommitMeta) sha256Hex(data);
      validateMetadataObject(type, data);
    }
    n++;
  }
  const cpu = process.cpuUsage(cpu0);
  return { seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6, objects: n };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<void> {
  await fsp.mkdir(WORK, { recursive: true });
  const gen = await buildLocalRepo();
  log(`commit ${gen.commit}: ${gen.objects} objects, ${(gen.objectBytes / 1e6).toFixed(0)} MB archived (${(gen.bytes / 1e6).toFixed(0)} MB of files)`);
  const nginx = await startNginxServer();
  const pushes: PushRound[] = [];
  const pulls: number[] = [];
  try {
    for (let i = 0; i < opts.rounds; i++) {
      // Alternate which goes first, so neither always runs on a warmer page cache.
      const doPush = async () => {
        const p = await pushRound(i);
        pushes.push(p);
        log(`round ${i + 1} push: ${p.seconds.toFixed(2)} s, ${p.uploaded} objects, server CPU ${p.serverCpuSeconds.toFixed(2)} s`);
      };
      const doPull = async () => {
        const s = await pullRound(nginx.base, i);
        pulls.push(s);
        log(`round ${i + 1} ostree pull from nginx: ${s.toFixed(2)} s`);
      };
      if (i % 2 === 0) {
        await doPush();
        await doPull();
      } else {
        await doPull();
        await doPush();
      }
    }
  } finally {
    await nginx.stop();
  }
  const verify = await verifyPass();
  const pushS = median(pushes.map((p) => p.seconds));
  const pullS = median(pulls);
  const serverCpu = median(pushes.map((p) => p.serverCpuSeconds));
  const result = {
    date: new Date().toISOString(),
    machine: machineInfo(),
    commit: { checksum: gen.commit, objects: gen.objects, archiveBytes: gen.objectBytes, fileBytes: gen.bytes },
    options: opts,
    push: {
      medianSeconds: pushS,
      objectsPerSecond: gen.objects / pushS,
      megabytesPerSecond: gen.objectBytes / 1e6 / pushS,
      serverCpuSecondsMedian: serverCpu,
      rounds: pushes,
    },
    stockPullFromNginx: { medianSeconds: pullS, objectsPerSecond: gen.objects / pullS, megabytesPerSecond: gen.objectBytes / 1e6 / pullS, rounds: pulls },
    ratioPushToPull: pushS / pullS,
    target: 1.5,
    verification: {
      ...verify,
      objectsPerSecond: verify.objects / verify.seconds,
      shareOfServerCpu: verify.cpuSeconds / serverCpu,
    },
  };
  await fsp.mkdir(path.dirname(RESULTS), { recursive: true });
  await fsp.writeFile(RESULTS, JSON.stringify(result, null, 2) + '\n');
  const row = (a: string, b: string, c: string, d: string) => `${a.padEnd(34)}${b.padStart(10)}${c.padStart(12)}${d.padStart(10)}`;
  const lines = [
    '',
    `push benchmark: ${gen.objects} objects, ${(gen.objectBytes / 1e6).toFixed(0)} MB (archive), ${opts.rounds} rounds, median; ${os.cpus().length} CPUs`,
    row('', 'seconds', 'objects/s', 'MB/s'),
    row(`cairn push --jobs ${opts.jobs} (fresh server)`, pushS.toFixed(2), (gen.objects / pushS).toFixed(0), (gen.objectBytes / 1e6 / pushS).toFixed(1)),
    row('ostree pull from nginx (archive)', pullS.toFixed(2), (gen.objects / pullS).toFixed(0), (gen.objectBytes / 1e6 / pullS).toFixed(1)),
    row('verify-only pass (1 thread)', verify.seconds.toFixed(2), (verify.objects / verify.seconds).toFixed(0), (gen.objectBytes / 1e6 / verify.seconds).toFixed(1)),
    '',
    `push / pull ratio: ${(pushS / pullS).toFixed(2)}× (target ≤ 1.5×)`,
    `server CPU during a push: ${serverCpu.toFixed(2)} s; verification alone: ${verify.cpuSeconds.toFixed(2)} s CPU (${((verify.cpuSeconds / serverCpu) * 100).toFixed(0)}% of it)`,
    `results: ${path.relative(ROOT, RESULTS)}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:push failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
