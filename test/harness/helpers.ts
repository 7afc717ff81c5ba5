// Shared by the issue #11 harnesses (test/harness/*): the `cairn` CLI of this build as a child
// process (startCairn runs the same one), a data folder with an owned repository `main` holding a
// first push, tokens signed with a known secret, raw HTTP requests (paths sent exactly as given),
// and a snapshot of a data folder's files for "nothing changed" checks.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import * as path from 'node:path';
import { issueToken, type Scope } from '../../server/auth/tokens';

/** The CLI of this build; startCairn runs the same one (CAIRN_E2E_SERVER) unless told otherwise. */
export const CLI = path.join(__dirname, 'cairn-bin.js');
process.env.CAIRN_E2E_SERVER ??= CLI;

/** The token secret every harness server runs with (so the tests can sign, forge and expire tokens). */
export const SECRET = 'harness-secret-0123456789abcdef-0123456789abcdef';
export const SERVER_ENV: NodeJS.ProcessEnv = { CAIRN_TOKEN_SECRET: SECRET, CAIRN_LOG: process.env.CAIRN_HARNESS_LOG ?? 'warn' };

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function startCli(args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, CAIRN_TOKEN: '', ...SERVER_ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const done = new Promise<Run>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

/** Runs the CLI, killed after `timeoutMs` (a command must never hang on a dead server). */
export async function cli(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  const { child, done } = startCli(args, opts.env);
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
  const r = await done;
  clearTimeout(timer);
  return r;
}

export async function cliOk(args: string[]): Promise<Run> {
  const r = await cli(args);
  assert.equal(r.code, 0, `cairn ${args.join(' ')} exited ${r.code ?? r.signal}:\n${r.stderr}\n${r.stdout}`);
  return r;
}

/** A token for repository `repos` (default main) signed with SECRET. */
export async function token(scope: Scope[], opts: { repos?: string[]; prefixes?: string[]; ttlSeconds?: number; sub?: string } = {}): Promise<string> {
  return (await issueToken(new TextEncoder().encode(SECRET), { sub: opts.sub ?? 'harness', scope, repos: opts.repos ?? ['main'], prefixes: opts.prefixes ?? ['*'], ttlSeconds: opts.ttlSeconds ?? 3600 })).token;
}

export interface RawAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * One request on its own connection with the path exactly as given. `body` is sent whole, or
 * streamed from an iterable; `abortAfterAnswer` ends the upload once an answer came.
 */
export function raw(port: number, method: string, rawPath: string, opts: { headers?: Record<string, string | number>; body?: Buffer | string | AsyncIterable<Buffer> | Iterable<Buffer>; timeoutMs?: number } = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest({ host: '127.0.0.1', port, path: rawPath, method, headers: opts.headers, agent: false }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        req.destroy();
      });
      res.on('error', reject);
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`${method} ${rawPath.slice(0, 200)}: no answer within ${opts.timeoutMs ?? 60_000} ms`));
    }, opts.timeoutMs ?? 60_000);
    req.on('error', (e) => {
      // The server may answer early and close while the body is still being sent (EPIPE/ECONNRESET).
      if (!answered) {
        clearTimeout(timer);
        reject(e);
      }
    });
    const b = opts.body;
    if (b === undefined || typeof b === 'string' || Buffer.isBuffer(b)) {
      req.end(b);
      return;
    }
    void (async () => {
      try {
        for await (const chunk of b as AsyncIterable<Buffer>) {
          if (answered || req.destroyed) return;
          if (!req.write(chunk)) await new Promise<void>((r) => (req.once('drain', r), req.once('close', r)));
        }
        if (!answered && !req.destroyed) req.end();
      } catch {
        req.destroy();
      }
    })();
  });
}

/**
 * Every file under `dir` (relative path → size, mtime and a digest of its bytes), and the names of
 * folders; for "nothing changed" checks.
 */
export async function snapshot(dir: string, skip: (rel: string) => boolean = () => false): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const e of await fsp.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const r = `${rel}${e.name}`;
      if (skip(r)) continue;
      const full = path.join(d, e.name);
      if (e.isDirectory()) {
        out.set(`${r}/`, 'dir');
        await walk(full, `${r}/`);
      } else {
        const st = await fsp.lstat(full);
        const digest = st.isFile() && st.size <= 1 << 20 ? createHash('sha256').update(await fsp.readFile(full)).digest('hex').slice(0, 16) : '';
        out.set(r, `${st.size}:${st.mtimeMs}:${digest}`);
      }
    }
  };
  await walk(dir, '');
  return out;
}

/** What differs between two snapshots, readably (empty when nothing changed). */
export function snapshotDiff(before: Map<string, string>, now: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of now) if (before.get(k) !== v) out.push(before.has(k) ? `changed ${k}` : `added ${k}`);
  for (const k of before.keys()) if (!now.has(k)) out.push(`removed ${k}`);
  return out;
}
