// Helpers to drive the real `ostree` CLI (libostree 2022.7 on Debian 12) from tests and benchmarks.
//
// Everything runs through execFile (never a shell). The module checks at import that the `ostree`
// binary exists and throws if it does not: a test file importing it then FAILS (node:test reports
// the file as failed); the end-to-end tests never skip silently.

import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';

export const OSTREE_BIN = process.env.OSTREE_BIN || 'ostree';

function probeOstree(): string {
  try {
    const out = execFileSync(OSTREE_BIN, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const m = /Version:\s*'?([0-9.]+)/.exec(out);
    return m ? m[1] : out.trim().split('\n')[0] ?? 'unknown';
  } catch (err) {
    throw new Error(
      `The real ostree client is required by these tests but \`${OSTREE_BIN} --version\` failed ` +
        `(${(err as Error).message}). Install it: apt-get install -y ostree`,
    );
  }
}

/** Version of the installed client, e.g. "2022.7". Importing this module throws if it is missing. */
export const OSTREE_VERSION: string = probeOstree();

export interface RunOptions {
  /** Adds `--repo=REPO` right after the subcommand. */
  repo?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Default 120 s. */
  timeoutMs?: number;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly result: RunResult,
  ) {
    super(
      `${argv.join(' ')} exited with ${result.code}\n--- stderr ---\n${result.stderr.trim()}` +
        (result.stdout.trim() ? `\n--- stdout ---\n${result.stdout.trim().slice(0, 4000)}` : ''),
    );
    this.name = 'CommandError';
  }
}

/** Runs any program without a shell and never throws on a non-zero exit. */
export function runCommand(
  file: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        env: opts.env ?? process.env,
        cwd: opts.cwd,
        timeout: opts.timeoutMs ?? 120_000,
        maxBuffer: 64 * 1024 * 1024,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        if (err && typeof (err as NodeJS.ErrnoException).code === 'string') {
          // spawn failure (ENOENT, …), not an exit status
          reject(err);
          return;
        }
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        const killed = err && (err as { killed?: boolean }).killed;
        resolve({ code: killed ? -1 : code, stdout, stderr: killed ? `${stderr}\n(killed: timeout)` : stderr });
      },
    );
  });
}

/** Runs a program, returns stdout, throws CommandError (with stderr) on failure. */
export async function run(
  file: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<string> {
  const r = await runCommand(file, args, opts);
  if (r.code !== 0) throw new CommandError([file, ...args], r);
  return r.stdout;
}

function ostreeArgv(args: string[], repo?: string): string[] {
  if (!repo) return args;
  // `ostree SUBCOMMAND --repo=R …`; for `ostree remote add` etc. the option also goes after the
  // first word, which ostree accepts anywhere.
  return [args[0]!, `--repo=${repo}`, ...args.slice(1)];
}

/** Runs `ostree ARGS` (with `--repo=` when given) and returns stdout; throws with stderr on failure. */
export function ostree(args: string[], opts: RunOptions = {}): Promise<string> {
  return run(OSTREE_BIN, ostreeArgv(args, opts.repo), opts);
}

/** Like ostree() but returns the exit code and both streams instead of throwing. */
export function ostreeResult(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return runCommand(OSTREE_BIN, ostreeArgv(args, opts.repo), opts);
}

// ---------------------------------------------------------------------------------------------
// Temporary folders

const tempDirs = new Set<string>();

/** Creates a fresh temporary folder (registered for removeTempDirs()). */
export async function makeTempDir(prefix = 'cairn-test-'): Promise<string> {
  const d = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

/** Removes every folder made by makeTempDir(); set CAIRN_KEEP_TMP=1 to keep them for debugging. */
export async function removeTempDirs(): Promise<void> {
  if (process.env.CAIRN_KEEP_TMP) {
    for (const d of tempDirs) process.stderr.write(`keeping ${d}\n`);
    tempDirs.clear();
    return;
  }
  const all = [...tempDirs];
  tempDirs.clear();
  await Promise.all(all.map((d) => fsp.rm(d, { recursive: true, force: true })));
}

// ---------------------------------------------------------------------------------------------
// Repositories and commits

export type RepoMode = 'archive' | 'bare-user' | 'bare' | 'bare-user-only';

export async function initRepo(repo: string, mode: RepoMode): Promise<string> {
  await fsp.mkdir(repo, { recursive: true });
  await ostree(['init', `--mode=${mode}`], { repo });
  return repo;
}

export interface CommitOptions {
  branch: string;
  /** Source folder (`--tree=dir=…`). */
  tree: string;
  subject?: string;
  /** Seconds since the epoch or any `--timestamp` string; default: deterministic per call order. */
  timestamp?: number | string;
  /** `--add-metadata-string=KEY=VALUE` entries. */
  metadata?: Record<string, string>;
  /** Sign while committing. */
  gpg?: { keyId: string; homedir: string };
  /** `--parent=none` etc. */
  parent?: string;
}

/** `ostree commit` → the new commit checksum. */
export async function commitTree(repo: string, o: CommitOptions): Promise<string> {
  const args = ['commit', `--branch=${o.branch}`, `--tree=dir=${o.tree}`, `--subject=${o.subject ?? 'commit'}`];
  if (o.timestamp !== undefined) {
    const ts = typeof o.timestamp === 'number' ? new Date(o.timestamp * 1000).toISOString() : o.timestamp;
    args.push(`--timestamp=${ts}`);
  }
  for (const [k, v] of Object.entries(o.metadata ?? {})) args.push(`--add-metadata-string=${k}=${v}`);
  if (o.parent) args.push(`--parent=${o.parent}`);
  if (o.gpg) args.push(`--gpg-sign=${o.gpg.keyId}`, `--gpg-homedir=${o.gpg.homedir}`);
  const out = (await ostree(args, { repo })).trim();
  if (!/^[0-9a-f]{64}$/.test(out)) throw new Error(`unexpected ostree commit output: ${JSON.stringify(out)}`);
  return out;
}

/** `ostree summary -u` (optionally signed). */
export async function updateSummary(repo: string, gpg?: { keyId: string; homedir: string }): Promise<void> {
  const args = ['summary', '-u'];
  if (gpg) args.push(`--gpg-sign=${gpg.keyId}`, `--gpg-homedir=${gpg.homedir}`);
  await ostree(args, { repo });
}

export async function revParse(repo: string, ref: string): Promise<string> {
  return (await ostree(['rev-parse', ref], { repo })).trim();
}

/** Adds an http remote; `--no-gpg-verify` unless gpgImport is given. */
export async function addRemote(
  repo: string,
  name: string,
  url: string,
  opts: { gpgImport?: string; set?: Record<string, string> } = {},
): Promise<void> {
  const args = ['remote', 'add'];
  if (opts.gpgImport) args.push(`--gpg-import=${opts.gpgImport}`);
  else args.push('--no-gpg-verify');
  for (const [k, v] of Object.entries(opts.set ?? {})) args.push(`--set=${k}=${v}`);
  args.push(name, url);
  await ostree(args, { repo });
}

/** Checks a repo out in user mode (`checkout -U`) into a new folder `dest` (must not exist). */
export async function checkout(repo: string, ref: string, dest: string): Promise<void> {
  await ostree(['checkout', '-U', ref, dest], { repo });
}

/** mb64 as in delta names: base64 of the raw checksum, '/' → '_', no padding. */
export function mb64(hexChecksum: string): string {
  return Buffer.from(hexChecksum, 'hex').toString('base64').replace(/=+$/, '').replace(/\//g, '_');
}

/** Path of a delta superblock relative to the repo root (`deltas/XX/REST[-TO]/superblock`). */
export function deltaSuperblockPath(from: string | null, to: string): string {
  const t = mb64(to);
  if (from === null) return `deltas/${t.slice(0, 2)}/${t.slice(2)}/superblock`;
  const f = mb64(from);
  return `deltas/${f.slice(0, 2)}/${f.slice(2)}-${t}/superblock`;
}

// ---------------------------------------------------------------------------------------------
// Source trees

/** Deterministic pseudo-random bytes (two xorshift32 streams seeded by `seed`). */
export function pseudoRandomBytes(seed: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length + 8);
  const mix = (v: number) => {
    v = Math.imul(v ^ (v >>> 16), 0x85ebca6b);
    v = Math.imul(v ^ (v >>> 13), 0xc2b2ae35);
    return (v ^ (v >>> 16)) | 1;
  };
  let x = mix(seed | 0);
  let y = mix((seed | 0) ^ 0x5bd1e995);
  for (let i = 0; i < length; i += 8) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    y ^= y << 11;
    y ^= y >>> 19;
    y ^= y << 7;
    buf.writeInt32LE(x | 0, i);
    buf.writeInt32LE((x + y) | 0, i + 4);
  }
  return buf.subarray(0, length);
}

export interface SourceTreeOptions {
  /** Changes every generated file's contents. */
  seed?: number;
  /** Size of the one large file; default 3 MiB. */
  bigFileBytes?: number;
  /** Extra files `extra/NAME` → contents, to make a later version differ. */
  extra?: Record<string, string | Buffer>;
}

/**
 * Writes a tree with regular files (0644, 0600), an executable, symlinks (relative, absolute,
 * dangling), empty files and folders, a 0700 folder, a large file, unicode names and names with
 * `+`, `%` and spaces, nested a few levels. Deterministic for a given seed.
 */
export async function makeSourceTree(dir: string, o: SourceTreeOptions = {}): Promise<string> {
  const seed = o.seed ?? 1;
  const w = async (rel: string, data: string | Buffer, mode = 0o644) => {
    const p = path.join(dir, rel);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, data);
    await fsp.chmod(p, mode);
  };
  await fsp.mkdir(dir, { recursive: true });
  await w('README.txt', `Cairn test tree, seed ${seed}\n`);
  await w('bin/tool', `#!/bin/sh\necho tool ${seed}\n`, 0o755);
  await w('etc/secret.conf', `password=${seed}\n`, 0o600);
  await w('etc/os-release', `ID=cairntest\nPRETTY_NAME="Cairn test ${seed}"\n`);
  await w('empty-file', '');
  await w('usr/share/data/blob.bin', pseudoRandomBytes(seed * 7919 + 3, o.bigFileBytes ?? 3 * 1024 * 1024));
  await w('usr/share/doc/text.txt', 'lorem ipsum dolor sit amet\n'.repeat(2000 + seed));
  await w('names/héllo wörld.txt', `unicode ${seed}\n`);
  await w('names/日本語/ファイル', `cjk ${seed}\n`);
  await w('names/a+b.txt', `plus ${seed}\n`);
  await w('names/100% done', `percent ${seed}\n`);
  await w('names/with space/inner file', `space ${seed}\n`);
  await w('names/%2e%2e+%2F', `encoded-looking ${seed}\n`);
  await w('deep/a/b/c/d/e/f/leaf', `deep ${seed}\n`);
  for (let i = 0; i < 40; i++) await w(`many/file-${String(i).padStart(3, '0')}`, pseudoRandomBytes(seed * 1000 + i, 100 + i * 37));
  await fsp.mkdir(path.join(dir, 'empty-dir'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'private'), { recursive: true });
  await w('private/key', `k${seed}\n`, 0o600);
  await fsp.chmod(path.join(dir, 'private'), 0o700);
  await fsp.symlink('../README.txt', path.join(dir, 'bin/readme-link'));
  await fsp.symlink('/usr/share/doc/text.txt', path.join(dir, 'abs-link'));
  await fsp.symlink('does/not/exist', path.join(dir, 'dangling-link'));
  await fsp.symlink('names', path.join(dir, 'dir-link'));
  for (const [name, data] of Object.entries(o.extra ?? {})) await w(path.join('extra', name), data);
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Tree comparison

export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  size: number;
  sha256?: string;
  target?: string;
}

/** Walks a tree without following symlinks: relative path → entry (root excluded). */
export async function walkTree(root: string): Promise<Map<string, TreeEntry>> {
  const out = new Map<string, TreeEntry>();
  const visit = async (rel: string) => {
    const abs = path.join(root, rel);
    const entries = await fsp.readdir(abs, { withFileTypes: true });
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const p = path.join(root, r);
      const st = await fsp.lstat(p);
      const mode = st.mode & 0o7777;
      if (st.isSymbolicLink()) {
        out.set(r, { type: 'symlink', mode: 0, size: 0, target: await fsp.readlink(p) });
      } else if (st.isDirectory()) {
        out.set(r, { type: 'dir', mode, size: 0 });
        await visit(r);
      } else if (st.isFile()) {
        const sha256 = createHash('sha256').update(await fsp.readFile(p)).digest('hex');
        out.set(r, { type: 'file', mode, size: st.size, sha256 });
      } else {
        out.set(r, { type: 'other', mode, size: 0 });
      }
    }
  };
  await visit('');
  return out;
}

/** Differences between two trees (content, type, mode, symlink target), as readable lines. */
export async function diffTrees(expectedRoot: string, actualRoot: string): Promise<string[]> {
  const [a, b] = await Promise.all([walkTree(expectedRoot), walkTree(actualRoot)]);
  const diffs: string[] = [];
  const oct = (m: number) => m.toString(8).padStart(4, '0');
  for (const [p, e] of a) {
    const g = b.get(p);
    if (!g) {
      diffs.push(`missing: ${p}`);
      continue;
    }
    if (e.type !== g.type) diffs.push(`type of ${p}: expected ${e.type}, got ${g.type}`);
    else if (e.type === 'symlink' && e.target !== g.target)
      diffs.push(`symlink ${p}: expected -> ${e.target}, got -> ${g.target}`);
    else if (e.type !== 'symlink' && e.mode !== g.mode) diffs.push(`mode of ${p}: expected ${oct(e.mode)}, got ${oct(g.mode)}`);
    if (e.type === 'file' && g.type === 'file' && (e.size !== g.size || e.sha256 !== g.sha256))
      diffs.push(`content of ${p}: expected ${e.size} B sha256 ${e.sha256}, got ${g.size} B sha256 ${g.sha256}`);
  }
  for (const p of b.keys()) if (!a.has(p)) diffs.push(`unexpected: ${p}`);
  return diffs;
}

/** Throws listing every difference when the checkout differs from the source tree. */
export async function assertTreesEqual(expectedRoot: string, actualRoot: string): Promise<void> {
  const diffs = await diffTrees(expectedRoot, actualRoot);
  if (diffs.length) {
    throw new Error(
      `tree ${actualRoot} differs from ${expectedRoot} (${diffs.length} differences):\n  ${diffs.slice(0, 40).join('\n  ')}`,
    );
  }
  const n = (await walkTree(expectedRoot)).size;
  if (n === 0) throw new Error(`source tree ${expectedRoot} is empty: nothing was compared`);
}

/** Checks out REF with `-U` into a fresh folder under `scratch` and compares it with `source`. */
export async function assertCheckoutEquals(repo: string, ref: string, source: string, scratch: string): Promise<void> {
  const dest = path.join(scratch, `co-${process.pid}-${Math.random().toString(36).slice(2)}`);
  await checkout(repo, ref, dest);
  try {
    await assertTreesEqual(source, dest);
  } finally {
    await fsp.rm(dest, { recursive: true, force: true });
  }
}

export function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
