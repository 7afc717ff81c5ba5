import { spawn } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import { performance } from 'node:perf_hooks';
import { addRemote, initRepo, ostree, OSTREE_VERSION, revParse } from '../test/helpers/ostree';

/** What the benchmarks share: options, the cache of generated repositories, machine facts. */

export const argv = process.argv.slice(2);

export const flag = (name: string): boolean => argv.includes(`--${name}`);

/** `--NAME N`: a positive number (a whole one with `integer`), else `dflt`. */
export function numberOption(name: string, dflt: number, opts: { integer?: boolean } = {}): number {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(argv[i + 1]);
  const ok = opts.integer ? Number.isInteger(v) && v > 0 : Number.isFinite(v) && v > 0;
  if (!ok) throw new Error(`--${name} needs a positive ${opts.integer ? 'whole ' : ''}number`);
  return v;
}

/**
 * A generated repository is reused while its marker file says it was built for
 * the same shape and the ref still points at the commit it recorded.
 */
export async function readCachedRepo<T extends { shape: unknown; commit: string }>(marker: string, shape: unknown, repo: string, ref: string): Promise<T | null> {
  try {
    const m = JSON.parse(await fsp.readFile(marker, 'utf8')) as T;
    if (JSON.stringify(m.shape) === JSON.stringify(shape) && (await revParse(repo, ref)) === m.commit) return m;
  } catch {
    /* absent, unreadable or stale: build it */
  }
  return null;
}

export async function writeCachedRepo(marker: string, m: { shape: unknown; commit: string }): Promise<void> {
  await fsp.writeFile(marker, JSON.stringify(m, null, 2));
}

export function machineInfo(): { cpus: number; cpuModel: string | undefined; memGB: number; node: string; ostree: string } {
  return { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGB: Math.round(os.totalmem() / 1e9), node: process.version, ostree: OSTREE_VERSION };
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Runs `node [nodeArgs] cli args` (the `cairn` script measured) and collects its output. */
export function runNode(cli: string, args: string[], nodeArgs: string[] = [], env?: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...nodeArgs, cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: env && { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** CPU seconds (user + system) a live process and its children so far waited for have used, from /proc. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** CPU seconds of a process and of every live descendant (the workers of `--workers N`). */
export function treeCpuSeconds(pid: number): number {
  let total = 0;
  const visit = (p: number) => {
    try {
      total += cpuSeconds(p);
      for (const c of readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/)) if (c) visit(Number(c));
    } catch {
      /* gone meanwhile */
    }
  };
  visit(pid);
  return total;
}

/**
 * One timed `ostree pull` of `ref` by the stock client into a fresh repository `dir` of `mode`
 * from `base`; fails unless it lands on `expect`. The repository is removed afterwards.
 */
export async function stockPull(o: { base: string; mode: 'archive' | 'bare-user'; dir: string; ref: string; expect: string }): Promise<number> {
  await fsp.rm(o.dir, { recursive: true, force: true });
  await initRepo(o.dir, o.mode);
  await addRemote(o.dir, 'origin', o.base);
  const t0 = performance.now();
  await ostree(['pull', 'origin', o.ref], { repo: o.dir, timeoutMs: 30 * 60_000 });
  const seconds = (performance.now() - t0) / 1000;
  const got = await revParse(o.dir, `origin:${o.ref}`);
  if (got !== o.expect) throw new Error(`${o.base} ${o.mode}: pulled ${got}, expected ${o.expect}`);
  await fsp.rm(o.dir, { recursive: true, force: true });
  return seconds;
}
