// Shared by test/maintenance/*: a data folder whose repository `main` Cairn owns, commits made in it
// by the real `ostree commit`, the `cairn` CLI as a child process, and snapshots of a repository's
// files (to prove a dry run changed nothing, or to compare with what `ostree prune` leaves).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { commitTree, makeTempDir, ostree, pseudoRandomBytes } from '../helpers/ostree';

/** The CLI of this build (see cairn-bin.ts); startCairn runs the same one (CAIRN_E2E_SERVER), unless told otherwise. */
export const CLI = path.join(__dirname, 'cairn-bin.js');
process.env.CAIRN_E2E_SERVER ??= CLI;

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export function cairn(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, CAIRN_TOKEN: '', ...env }, maxBuffer: 64 << 20, timeout: 600_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

export async function cairnOk(args: string[]): Promise<CliRun> {
  const r = await cairn(args);
  assert.equal(r.code, 0, `cairn ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${r.stdout}`);
  return r;
}

/** A fresh data folder with `main` created (and owned) by Cairn. */
export async function ownedData(prefix: string): Promise<{ work: string; data: string; repo: string }> {
  const work = await makeTempDir(prefix);
  const data = path.join(work, 'data');
  await cairnOk(['init-repo', 'main', '--data', data]);
  return { work, data, repo: path.join(data, 'repos', 'main') };
}

/**
 * A commit of a small tree made by `ostree commit` straight into `repo`: a file shared by every
 * version, one of its own (`v<n>.bin`, `size` bytes), and a folder per version.
 */
export async function commitVersion(work: string, repo: string, branch: string, n: number, opts: { timestamp?: number; parent?: string; size?: number } = {}): Promise<string> {
  const dir = path.join(work, `src-${branch.replace(/\//g, '_')}-${n}`);
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(path.join(dir, `dir${n}`), { recursive: true });
  await fsp.writeFile(path.join(dir, 'shared.txt'), 'the same in every version\n');
  await fsp.writeFile(path.join(dir, `v${n}.bin`), pseudoRandomBytes(1000 + n, opts.size ?? 3000));
  await fsp.writeFile(path.join(dir, `dir${n}`, 'note.txt'), `version ${n} of ${branch}\n`);
  return commitTree(repo, { branch, tree: dir, subject: `v${n}`, timestamp: opts.timestamp, parent: opts.parent });
}

/** Every file under `dir` (relative path → size and mtime), for "nothing changed" checks. */
export async function snapshot(dir: string, under = ''): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) await walk(full, `${rel}${e.name}/`);
      else if (e.isFile()) {
        const st = await fsp.stat(full);
        out.set(`${rel}${e.name}`, `${st.size}:${st.mtimeMs}`);
      }
    }
  };
  await walk(path.join(dir, under), under ? `${under}/` : '');
  return out;
}

/** Names of the objects under `repo/objects` (`XX/REST.EXT`), sorted. */
export async function objectNames(repo: string): Promise<string[]> {
  return [...(await snapshot(repo, 'objects')).keys()].map((k) => k.slice('objects/'.length)).sort();
}

/** `ostree log REF` commit checksums, newest first. */
export async function logCommits(repo: string, ref: string): Promise<string[]> {
  const out = await ostree(['log', ref], { repo });
  return [...out.matchAll(/^commit ([0-9a-f]{64})$/gm)].map((m) => m[1]!);
}

/** Sets every object file's mtime `ageMs` into the past (objects made long ago). */
export async function ageObjects(repo: string, ageMs: number): Promise<void> {
  const t = new Date(Date.now() - ageMs);
  for (const k of (await snapshot(repo, 'objects')).keys()) await fsp.utimes(path.join(repo, k), t, t);
}

export { makeTempDir };
