// Starts `node bin/cairn.js serve --data DIR --port 0 --host 127.0.0.1` as a child process, waits
// for its `"msg":"listening"` JSON line and returns its URL. Everything the child writes is kept for
// failure messages, and JSON log lines that describe HTTP requests are parsed so tests can see which
// paths the client asked for.
//
// CAIRN_E2E_SERVER=/path/to/script runs another executable with the same CLI instead (used to check
// the test suite itself against a plain static server).

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The repository root (the folder holding package.json), found upwards from this file. */
export function projectRoot(): string {
  let d = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(d, 'package.json')) && fs.existsSync(path.join(d, 'tsconfig.json'))) return d;
    const up = path.dirname(d);
    if (up === d) throw new Error(`no package.json above ${__dirname}`);
    d = up;
  }
}

export interface LoggedRequest {
  method: string;
  /** Path as received, without the query string. */
  path: string;
  status: number;
  /** Body bytes the server sent, when its log line says (Cairn's `bytes` field); undefined otherwise. */
  bytes?: number;
}

export interface CairnProcess {
  url: string;
  port: number;
  dataDir: string;
  pid: number;
  /** stdout and stderr so far (interleaved as received). */
  output(): string;
  /** Requests seen in the JSON request log so far. */
  requests(): LoggedRequest[];
  /** Whether the server's log describes requests at all (false → use another way to count). */
  logsRequests(): boolean;
  /** Waits until the request log contains `pred`, up to timeoutMs (logs may lag the response). */
  waitForRequest(pred: (r: LoggedRequest) => boolean, timeoutMs?: number): Promise<LoggedRequest | undefined>;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

function pick(o: Record<string, unknown>, keys: string[]): unknown {
  for (const k of keys) {
    let v: unknown = o;
    for (const part of k.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
    if (v !== undefined && v !== null) return v;
  }
  return undefined;
}

/** Extracts {method, path, status} from one JSON log line if it describes a finished request. */
export function parseRequestLine(line: string): LoggedRequest | undefined {
  if (!line.startsWith('{')) return undefined;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const p = pick(o, ['path', 'url', 'req.url', 'req.path', 'request.url', 'request.path', 'http.path']);
  const status = pick(o, ['status', 'statusCode', 'res.statusCode', 'res.status', 'response.status', 'http.status']);
  const method = pick(o, ['method', 'req.method', 'request.method', 'http.method']) ?? 'GET';
  if (typeof p !== 'string' || status === undefined || !Number.isFinite(Number(status))) return undefined;
  const q = p.indexOf('?');
  const r: LoggedRequest = { method: String(method), path: q >= 0 ? p.slice(0, q) : p, status: Number(status) };
  const bytes = pick(o, ['bytes', 'res.bytes', 'response.bytes', 'bytes_sent']);
  if (bytes !== undefined && Number.isFinite(Number(bytes))) r.bytes = Number(bytes);
  return r;
}

/**
 * The `--workers` the end-to-end tests run `cairn serve` with: CAIRN_E2E_WORKERS (1 or 2;
 * default 1). `npm test` runs the end-to-end tests once with each.
 */
export function e2eWorkers(): string {
  const w = process.env.CAIRN_E2E_WORKERS ?? '1';
  if (w !== '1' && w !== '2') throw new Error(`CAIRN_E2E_WORKERS must be 1 or 2, not ${w}`);
  return w;
}

export async function startCairn(opts: {
  dataDir: string;
  env?: NodeJS.ProcessEnv;
  extraArgs?: string[];
  /** Options for node itself, e.g. ['--cpu-prof', '--cpu-prof-dir=DIR']. */
  nodeArgs?: string[];
  /**
   * Send the child's stdout and stderr straight to this file instead of a pipe (benchmarks: no
   * parent process in the data path). requests() stays empty then; output() reads the file.
   */
  logFile?: string;
  timeoutMs?: number;
}): Promise<CairnProcess> {
  const root = projectRoot();
  const alt = process.env.CAIRN_E2E_SERVER;
  const script = alt ? path.resolve(alt) : path.join(root, 'bin', 'cairn.js');
  if (!fs.existsSync(script)) throw new Error(`${script} does not exist (is the server built? npx tsc -p .)`);
  // Always an explicit --workers, whatever the machine's cores: CAIRN_E2E_WORKERS (default 1), unless the test names its own.
  const extra = opts.extraArgs ?? [];
  const workers = extra.includes('--workers') ? [] : ['--workers', e2eWorkers()];
  const args = [script, 'serve', '--data', opts.dataDir, '--port', '0', '--host', '127.0.0.1', ...workers, ...extra];
  const logFd = opts.logFile ? fs.openSync(opts.logFile, 'a') : undefined;
  // the file may hold earlier runs: only what this child writes counts
  const logStart = logFd === undefined ? 0 : fs.fstatSync(logFd).size;
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), ...args], {
    cwd: root,
    env: { ...process.env, ...opts.env },
    stdio: logFd === undefined ? ['ignore', 'pipe', 'pipe'] : ['ignore', logFd, logFd],
  });
  if (logFd !== undefined) fs.closeSync(logFd);
  running.add(child);
  let output = '';
  const requests: LoggedRequest[] = [];
  let sawRequestLog = false;
  let listening: { url: string; port: number } | undefined;
  let onListening: (() => void) | undefined;
  let onExit: ((why: string) => void) | undefined;
  const waiters = new Set<() => void>();

  const handleLine = (line: string) => {
    const r = parseRequestLine(line);
    if (r) {
      sawRequestLog = true;
      requests.push(r);
      for (const w of waiters) w();
      return;
    }
    if (!listening && line.includes('"msg":"listening"')) {
      try {
        const o = JSON.parse(line) as { port?: number; url?: string };
        if (typeof o.port === 'number') {
          listening = { port: o.port, url: (o.url ?? `http://127.0.0.1:${o.port}`).replace(/\/$/, '') };
          onListening?.();
        }
      } catch {
        /* not JSON after all */
      }
    }
  };
  let partial = '';
  let poll: NodeJS.Timeout | undefined;
  if (opts.logFile) {
    const file = opts.logFile;
    let seen = logStart;
    poll = setInterval(() => {
      // Only what this run appended: the file may hold gigabytes of earlier runs.
      const size = fs.statSync(file).size;
      if (size <= seen) return;
      const fresh = Buffer.alloc(Math.min(size - seen, 1 << 20));
      const fd = fs.openSync(file, 'r');
      let n: number;
      try {
        n = fs.readSync(fd, fresh, 0, fresh.length, seen);
      } finally {
        fs.closeSync(fd);
      }
      const text = fresh.subarray(0, n).toString('utf8');
      const end = text.lastIndexOf('\n');
      if (end < 0) return;
      for (const line of text.slice(0, end).split('\n')) if (!listening) handleLine(line.trim());
      seen += Buffer.byteLength(text.slice(0, end + 1));
      if (listening) clearInterval(poll);
    }, 50);
  } else {
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      output += chunk;
      partial += chunk;
      let i: number;
      while ((i = partial.indexOf('\n')) >= 0) {
        handleLine(partial.slice(0, i).trim());
        partial = partial.slice(i + 1);
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      output += chunk;
    });
  }
  const exited = new Promise<void>((resolve) =>
    child.on('exit', (code, signal) => {
      running.delete(child);
      if (poll) clearInterval(poll);
      onExit?.(`exited with ${signal ?? code}`);
      resolve();
    }),
  );

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `cairn did not print its listening line within ${opts.timeoutMs ?? 15000} ms:\n` +
            (opts.logFile ? fs.readFileSync(opts.logFile).subarray(logStart).toString('utf8') : output),
        ),
      );
    }, opts.timeoutMs ?? 15_000);
    onListening = () => {
      clearTimeout(timer);
      resolve();
    };
    onExit = (why) => {
      clearTimeout(timer);
      const text = opts.logFile ? fs.readFileSync(opts.logFile).subarray(logStart).toString('utf8') : output;
      reject(new Error(`cairn ${why} before listening:\n${text}`));
    };
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  onExit = (why) => {
    output += `\n[cairn ${why}]\n`;
  };

  const { url, port } = listening!;
  return {
    url,
    port,
    dataDir: opts.dataDir,
    pid: child.pid!,
    output: () => (opts.logFile ? fs.readFileSync(opts.logFile).subarray(logStart).toString('utf8') : output),
    requests: () => [...requests],
    logsRequests: () => sawRequestLog,
    waitForRequest: async (pred, timeoutMs = 2000) => {
      const found = requests.find(pred);
      if (found) return found;
      return new Promise<LoggedRequest | undefined>((resolve) => {
        const check = () => {
          const f = requests.find(pred);
          if (f) done(f);
        };
        const done = (v: LoggedRequest | undefined) => {
          clearTimeout(t);
          waiters.delete(check);
          resolve(v);
        };
        const t = setTimeout(() => done(undefined), timeoutMs);
        waiters.add(check);
      });
    },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * Resolves once the server at `url` has no delta job queued, running or still being decided
 * (as an anonymous caller sees it), then a little more; fails after `timeoutMs`.
 */
export async function jobsSettled(url: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const body = (await (await fetch(`${url}/api/jobs`)).json()) as { queue: { queued: number; running: number; deciding: number } };
    if (body.queue.queued === 0 && body.queue.running === 0 && body.queue.deciding === 0) break;
    if (Date.now() > deadline) throw new Error(`jobs still running after ${timeoutMs} ms: ${JSON.stringify(body.queue)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 500));
}
