// Pull benchmark: Cairn against nginx serving the same archive repository on loopback.
//
//   npm run bench:pull                       (builds first; see package.json)
//   node dist/bench/pull.js [options]
//
// Options (all optional):
//   --rounds N         pull rounds per client mode and server (default 5, alternating order)
//   --files N          files in the generated tree (default 6000)
//   --wrk-seconds S    duration of each wrk run (default 10)
//   --wrk-rounds N     wrk runs per server, alternating (default 3)
//   --connections N    wrk connections (default 64)
//   --workers N|auto   `cairn serve --workers` (default auto: the product's default for this machine)
//   --quiet-logs       no request logs on either side (default: both log every request to a file)
//   --cpu-prof         run Cairn under `node --cpu-prof` (profile in WORK/profiles/)
//   --skip-pull / --skip-rps
// Env: CAIRN_BENCH_DIR (work folder; default bench/.work, the generated repo is cached there).
//
// Needs the ostree client, nginx-light and wrk: apt-get install -y ostree nginx-light wrk
// A benchmark, never a test: it reports figures and ratios against the targets, it does not fail.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { projectRoot, startCairn, type CairnProcess } from '../test/helpers/cairn-process';
import { run, runCommand } from '../test/helpers/ostree';
import { argv, flag, machineInfo, median, numberOption, stockPull } from './common';
import { mulberry32 } from '../test/helpers/prng';
import { startNginx, waitHttp } from './nginx';
import { buildTreeRepo, type TreeRepo } from './tree';

// ------------------------------------------------------------------------------------------------
// options

const num = (name: string, dflt: number) => numberOption(name, dflt);
const opts = {
  rounds: num('rounds', 5),
  files: num('files', 6000),
  wrkSeconds: num('wrk-seconds', 10),
  wrkRounds: num('wrk-rounds', 3),
  connections: num('connections', 64),
  workers: argv.includes('--workers') ? String(argv[argv.indexOf('--workers') + 1]) : 'auto',
  quietLogs: flag('quiet-logs'),
  cpuProf: flag('cpu-prof'),
  skipPull: flag('skip-pull'),
  skipRps: flag('skip-rps'),
};

const ROOT = projectRoot();
const WORK = path.resolve(process.env.CAIRN_BENCH_DIR || path.join(ROOT, 'bench', '.work'));
const DATA = path.join(WORK, 'data');
const REPO_NAME = 'bench';
const REPO = path.join(DATA, 'repos', REPO_NAME);
const REF = 'bench/x86_64/os';
const RESULTS = path.join(ROOT, 'bench', 'results', 'pull-latest.json');

const log = (s: string) => process.stderr.write(`${s}\n`);

// ------------------------------------------------------------------------------------------------
// servers

interface Server {
  name: 'cairn' | 'nginx';
  base: string; // http://127.0.0.1:PORT/repo/bench
  stop(): Promise<void>;
}

async function buildRepo(): Promise<TreeRepo> {
  return buildTreeRepo({ work: WORK, repo: REPO, ref: REF, files: opts.files, wipe: DATA, log });
}

async function startNginxServer(): Promise<Server> {
  const n = await startNginx({ prefix: path.join(WORK, 'nginx'), root: path.join(DATA, 'repos'), probe: `${REPO_NAME}/config`, accessLog: !opts.quietLogs });
  return { name: 'nginx', base: `${n.origin}/repo/${REPO_NAME}`, stop: n.stop };
}

async function startCairnServer(): Promise<Server & { proc: CairnProcess }> {
  const profDir = path.join(WORK, 'profiles');
  if (opts.cpuProf) await fsp.mkdir(profDir, { recursive: true });
  const proc = await startCairn({
    dataDir: DATA,
    env: { CAIRN_LOG: opts.quietLogs ? 'warn' : 'info' },
    nodeArgs: opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
    logFile: path.join(WORK, 'cairn.log'),
    extraArgs: ['--workers', opts.workers],
  });
  const base = `${proc.url}/repo/${REPO_NAME}`;
  try {
    await waitHttp(`${base}/config`);
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return { name: 'cairn', base, proc, stop: () => proc.stop() };
}

// ------------------------------------------------------------------------------------------------
// measurements

type Mode = 'archive' | 'bare-user';

function timedPull(server: Server, mode: Mode, tag: string, expect: string): Promise<number> {
  return stockPull({ base: server.base, mode, dir: path.join(WORK, 'clients', `${server.name}-${mode}-${tag}`), ref: REF, expect });
}

interface WrkResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  transferPerSec: string;
  requests: number;
  non2xx: number;
  errors: string;
}

function parseLatency(s: string | undefined): number {
  if (!s) return NaN;
  const m = /([\d.]+)(us|ms|s)/.exec(s);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

async function runWrk(server: Server, script: string): Promise<WrkResult> {
  const out = await run(
    'wrk',
    ['-t', '2', '-c', String(opts.connections), '-d', `${opts.wrkSeconds}s`, '--latency', '-s', script, server.base],
    { timeoutMs: (opts.wrkSeconds + 30) * 1000 },
  );
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const errors = /Socket errors:[^\n]*/.exec(out)?.[0] ?? '';
  const p50 = parseLatency(/\s50%\s+(\S+)/.exec(out)?.[1]);
  const p99 = parseLatency(/\s99%\s+(\S+)/.exec(out)?.[1]);
  const transferPerSec = /Transfer\/sec:\s+(\S+)/.exec(out)?.[1] ?? '';
  if (!Number.isFinite(rps)) throw new Error(`could not parse wrk output:\n${out}`);
  return { rps, p50ms: p50, p99ms: p99, transferPerSec, requests, non2xx, errors };
}

/** Up to 2000 object paths of at most 8 KiB (dirtree, dirmeta and small .filez), in a fixed order. */
async function smallObjectPaths(): Promise<string[]> {
  const paths: string[] = [];
  for (const d of (await fsp.readdir(path.join(REPO, 'objects'))).sort()) {
    for (const f of (await fsp.readdir(path.join(REPO, 'objects', d))).sort()) {
      const st = await fsp.stat(path.join(REPO, 'objects', d, f));
      if (st.size <= 8192) paths.push(`objects/${d}/${f}`);
    }
  }
  const r = mulberry32(42);
  for (let i = paths.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [paths[i], paths[j]] = [paths[j]!, paths[i]!];
  }
  return paths.slice(0, 2000);
}

async function writeWrkScript(paths: string[], prefix: string): Promise<string> {
  const file = path.join(WORK, 'small-objects.lua');
  const list = paths.map((p) => `"${prefix}/${p}"`).join(',\n');
  await fsp.writeFile(
    file,
    `-- generated by bench/pull.ts: cycle through small object paths
local paths = {
${list}
}
local counter = 1
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("offset", threads * 997)
end
function init(args)
  counter = (offset or 1) % #paths + 1
end
function request()
  local p = paths[counter]
  counter = counter % #paths + 1
  return wrk.format("GET", p)
end
`,
  );
  return file;
}

// ------------------------------------------------------------------------------------------------

async function versionOf(cmd: string, args: string[]): Promise<string> {
  const r = await runCommand(cmd, args).catch(() => ({ stdout: '', stderr: 'missing', code: 1 }));
  return (r.stdout + r.stderr).trim().split('\n')[0] ?? '';
}

async function main(): Promise<void> {
  for (const [cmd, args] of [
    ['nginx', ['-v']],
    ['wrk', ['--version']],
  ] as const) {
    const r = await runCommand(cmd, [...args]).catch(() => undefined);
    if (!r) throw new Error(`${cmd} is not installed: apt-get install -y nginx-light wrk`);
  }
  await fsp.mkdir(WORK, { recursive: true });
  const built = await buildRepo();
  log(
    `repo: ${built.files} files, ${(built.bytes / 1e6).toFixed(0)} MB of content, ${built.objects} objects, ` +
      `${(built.objectBytes / 1e6).toFixed(0)} MB on disk (archive)`,
  );

  const cairn = await startCairnServer();
  const nginx = await startNginxServer().catch(async (e) => {
    await cairn.stop();
    throw e;
  });
  const servers = [nginx, cairn];
  const result: Record<string, unknown> = {
    date: new Date().toISOString(),
    command: argv.length ? `npm run bench:pull -- ${argv.join(' ')}` : 'npm run bench:pull',
    machine: {
      ...machineInfo(),
      nginx: await versionOf('nginx', ['-v']),
      wrk: await versionOf('wrk', ['--version']),
      requestLogs: !opts.quietLogs,
      cairnWorkers: opts.workers,
    },
    repo: built,
  };
  try {
    // The comparison assumes both serve the very same folder: if Cairn wrote static deltas into it
    // (deltas on demand), bare-user clients would use them from either server afterwards.
    const hadDeltas = fs.existsSync(path.join(REPO, 'deltas'));
    if (hadDeltas) log('warning: the bench repo has a deltas/ folder; bare-user pulls may use deltas');
    if (!opts.skipPull) {
      const modes: Mode[] = ['archive', 'bare-user'];
      log('warm-up pulls (page cache, JIT), not counted …');
      for (const s of servers) await timedPull(s, 'archive', 'warmup', built.commit);
      const times: Record<string, Record<string, number[]>> = {};
      for (let round = 0; round < opts.rounds; round++) {
        for (const mode of modes) {
          const order = (round + (mode === 'archive' ? 0 : 1)) % 2 ? [cairn, nginx] : [nginx, cairn];
          for (const s of order) {
            const sec = await timedPull(s, mode, `r${round}`, built.commit);
            ((times[mode] ??= {})[s.name] ??= []).push(sec);
            log(`round ${round + 1}/${opts.rounds} ${mode.padEnd(9)} ${s.name.padEnd(5)} ${sec.toFixed(2)} s`);
          }
        }
      }
      const pull: Record<string, unknown> = {};
      for (const mode of modes) {
        const c = median(times[mode]!.cairn!);
        const n = median(times[mode]!.nginx!);
        pull[mode] = { cairnSeconds: times[mode]!.cairn, nginxSeconds: times[mode]!.nginx, cairnMedian: c, nginxMedian: n, ratio: c / n };
      }
      result.pull = pull;
    }

    if (!opts.skipRps) {
      const paths = await smallObjectPaths();
      const prefix = `/repo/${REPO_NAME}`;
      const script = await writeWrkScript(paths, prefix);
      // both must serve the very same bytes for the list
      for (const p of paths.slice(0, 20)) {
        const [a, b] = await Promise.all(servers.map(async (s) => Buffer.from(await (await fetch(`${s.base}/${p}`)).arrayBuffer())));
        if (!a!.equals(b!)) throw new Error(`cairn and nginx differ on ${p}`);
      }
      const runs: Record<string, WrkResult[]> = { cairn: [], nginx: [] };
      for (let round = 0; round < opts.wrkRounds; round++) {
        for (const s of round % 2 ? [cairn, nginx] : [nginx, cairn]) {
          const r = await runWrk(s, script);
          runs[s.name]!.push(r);
          log(
            `wrk ${round + 1}/${opts.wrkRounds} ${s.name.padEnd(5)} ${r.rps.toFixed(0)} req/s  p50 ${r.p50ms} ms  p99 ${r.p99ms} ms` +
              (r.non2xx ? `  NON-2xx ${r.non2xx}` : '') +
              (r.errors ? `  ${r.errors}` : ''),
          );
        }
      }
      const c = median(runs.cairn!.map((r) => r.rps));
      const n = median(runs.nginx!.map((r) => r.rps));
      result.smallObjects = {
        paths: paths.length,
        maxObjectBytes: 8192,
        connections: opts.connections,
        threads: 2,
        seconds: opts.wrkSeconds,
        cairn: runs.cairn,
        nginx: runs.nginx,
        cairnMedianRps: c,
        nginxMedianRps: n,
        ratio: c / n,
      };
    }
    const hasDeltas = fs.existsSync(path.join(REPO, 'deltas'));
    if (hasDeltas && !hadDeltas) log('warning: deltas/ appeared in the bench repo during the run (written by Cairn?)');
    result.repoHasDeltas = hasDeltas;
  } finally {
    await cairn.stop();
    await nginx.stop();
    await fsp.rm(path.join(WORK, 'clients'), { recursive: true, force: true });
  }

  // ---- report
  const pull = result.pull as Record<Mode, { cairnMedian: number; nginxMedian: number; ratio: number }> | undefined;
  const small = result.smallObjects as { cairnMedianRps: number; nginxMedianRps: number; ratio: number } | undefined;
  const rows: string[][] = [['measure', 'cairn', 'nginx', 'cairn/nginx', 'target', 'met']];
  if (pull) {
    for (const mode of ['archive', 'bare-user'] as const) {
      const p = pull[mode];
      rows.push([
        `pull ${mode} (median s)`,
        p.cairnMedian.toFixed(2),
        p.nginxMedian.toFixed(2),
        p.ratio.toFixed(3),
        '≤ 1.10',
        p.ratio <= 1.1 ? 'yes' : 'NO',
      ]);
    }
  }
  if (small) {
    rows.push([
      `small objects, ${opts.connections} conns (median req/s)`,
      small.cairnMedianRps.toFixed(0),
      small.nginxMedianRps.toFixed(0),
      small.ratio.toFixed(3),
      '≥ 0.50',
      small.ratio >= 0.5 ? 'yes' : 'NO',
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log('');
  console.log(line(rows[0]!));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows.slice(1)) console.log(line(r));
  result.targets = {
    pullRatioMax: 1.1,
    smallObjectRatioMin: 0.5,
    met: {
      ...(pull ? { pullArchive: pull.archive.ratio <= 1.1, pullBareUser: pull['bare-user'].ratio <= 1.1 } : {}),
      ...(small ? { smallObjects: small.ratio >= 0.5 } : {}),
    },
  };
  await fsp.mkdir(path.dirname(RESULTS), { recursive: true });
  await fsp.writeFile(RESULTS, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nJSON summary: ${path.relative(process.cwd(), RESULTS)}`);
  if (opts.cpuProf) console.log(`CPU profile(s): ${path.join(WORK, 'profiles')}`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack ?? err.message : err);
  process.exitCode = 1;
});
