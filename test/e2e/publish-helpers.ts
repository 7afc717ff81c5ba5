// Shared by the publish-*.test.ts end-to-end tests: the `cairn` CLI as a child process, tokens, and
// the checks made after a crash or a failure (summary against refs and keys, ref log, fsck).

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { parse, Variant, type VarDict } from '../../storage/gvariant';
import { ed25519Verify, parseEd25519PublicKey } from '../../storage/signing/ed25519';
import { summaryRefs } from '../../storage/repo/recovery';
import { projectRoot } from '../helpers/cairn-process';
import { addRemote, initRepo, ostree, ostreeResult } from '../helpers/ostree';

/** The `cairn` script: bin/cairn.js, or CAIRN_E2E_CLI (another build's, as CAIRN_E2E_SERVER names the server's). */
export const CLI = process.env.CAIRN_E2E_CLI ? path.resolve(process.env.CAIRN_E2E_CLI) : path.join(projectRoot(), 'bin', 'cairn.js');

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function startCli(args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, CAIRN_TOKEN: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const done = new Promise<Run>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

export function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return startCli(args, env).done;
}

/** `cairn init-repo main` and a push token for os/ in a fresh data folder. */
export async function initData(data: string): Promise<string> {
  const init = await cli(['init-repo', 'main', '--data', data]);
  assert.equal(init.code, 0, init.stderr);
  const t = await cli(['token', '--data', data, '--scope', 'push', '--repo', 'main', '--prefix', 'os/', '--ttl', '1h', '--sub', 'e2e']);
  assert.equal(t.code, 0, t.stderr);
  return t.stdout.trim();
}

/** Moves refs through the API; the parsed answer and its status. */
export async function moveRefs(url: string, token: string, updates: Array<{ ref: string; commit: string | null; expected?: string | null }>, force = false): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${url}/api/repos/main/refs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ updates, force }),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** The repository's served GPG key, saved to a file for `ostree remote add --gpg-import`. */
export async function saveGpgKey(url: string, file: string): Promise<string> {
  const res = await fetch(`${url}/repo/main/keys/gpg.asc`);
  assert.equal(res.status, 200);
  await fsp.writeFile(file, Buffer.from(await res.arrayBuffer()));
  return file;
}

/** An archive client repository with a remote `cairn` verifying commits and summary with `gpgAsc`. */
export async function verifyingClient(dir: string, url: string, gpgAsc: string): Promise<string> {
  await initRepo(dir, 'archive');
  await addRemote(dir, 'cairn', `${url}/repo/main`, { gpgImport: gpgAsc, set: { 'gpg-verify': 'true', 'gpg-verify-summary': 'true' } });
  return dir;
}

/** Refs as the files in refs/heads say (name → content, trimmed). */
export async function diskRefs(repoDir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const e of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(path.join(dir, e.name), `${prefix}${e.name}/`);
      else out.set(`${prefix}${e.name}`, (await fsp.readFile(path.join(dir, e.name), 'utf8')).trim());
    }
  };
  await walk(path.join(repoDir, 'refs', 'heads'), '');
  return out;
}

/** The newest ref-log entry of each ref, from the files in state/cairn/reflog. */
export async function newestLogged(repoDir: string): Promise<Map<string, { old: string | null; new: string | null; actor: string }>> {
  const dir = path.join(repoDir, 'state', 'cairn', 'reflog');
  const names = (await fsp.readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.json')).sort();
  const out = new Map<string, { old: string | null; new: string | null; actor: string }>();
  for (const n of names) {
    const e = JSON.parse(await fsp.readFile(path.join(dir, n), 'utf8')) as { ref: string; old: string | null; new: string | null; actor: string };
    out.set(e.ref, e);
  }
  return out;
}

/**
 * What must hold of a repository Cairn publishes, whatever happened to it: the stock `ostree fsck`
 * passes; the summary lists exactly the refs on disk; summary.sig holds an ed25519 signature by the
 * repository's key over those exact summary bytes (the GPG one is checked by the verifying pulls);
 * each ref's newest ref-log entry names its commit; no publish journal and no temporary file of a
 * dead writer is left.
 */
export async function assertPublishedConsistent(data: string, what: string): Promise<Map<string, string>> {
  const repoDir = path.join(data, 'repos', 'main');
  const fsck = await ostreeResult(['fsck'], { repo: repoDir });
  assert.equal(fsck.code, 0, `${what}: ostree fsck failed:\n${fsck.stderr}\n${fsck.stdout}`);
  const refs = await diskRefs(repoDir);
  const summary = await fsp.readFile(path.join(repoDir, 'summary'));
  const listed = summaryRefs(summary);
  assert.ok(listed, `${what}: the summary parses`);
  assert.deepEqual(Object.fromEntries(listed.refs), Object.fromEntries(refs), `${what}: the summary lists exactly the refs on disk`);
  const sig = parse('a{sv}', await fsp.readFile(path.join(repoDir, 'summary.sig'))) as VarDict;
  const ed = sig.find(([k]) => k === 'ostree.sign.ed25519')?.[1] as Variant | undefined;
  const pub = parseEd25519PublicKey(await fsp.readFile(path.join(data, 'keys', 'main', 'ed25519.pub'), 'utf8'));
  assert.ok(ed && (ed.value as Buffer[]).some((s) => ed25519Verify(pub, summary, s)), `${what}: summary.sig signs this summary`);
  const logged = await newestLogged(repoDir);
  for (const [ref, commit] of refs) assert.equal(logged.get(ref)?.new, commit, `${what}: the ref log's newest entry for ${ref} names its commit`);
  await assert.rejects(fsp.stat(path.join(repoDir, 'state', 'cairn', 'publish.journal')), `${what}: no journal left`);
  return refs;
}

/** The stock client pulls `ref` verifying commit and summary signatures, then fscks: its commit. */
export async function verifyingPull(dir: string, url: string, gpgAsc: string, ref: string): Promise<string> {
  await verifyingClient(dir, url, gpgAsc);
  await ostree(['pull', 'cairn', ref], { repo: dir });
  await ostree(['fsck'], { repo: dir });
  return (await ostree(['rev-parse', `cairn:${ref}`], { repo: dir })).trim();
}
