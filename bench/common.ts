import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import { OSTREE_VERSION, revParse } from '../test/helpers/ostree';

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
