import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, Agent, type IncomingMessage, type OutgoingHttpHeaders, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { rmSync } from 'node:fs';
import { AggregatorRegistry, type Registry } from 'prom-client';

type metric = Awaited<ReturnType<Registry['getMetricsAsJSON']>>[number];
import type { RepoRegistry } from '../storage/repo/registry';
import type { SettingsStore } from '../storage/repo/settings';
import { FileCache } from './files/cache';
import { createFastPath } from './files/fastpath';
import { createFrontAnswerer } from './files/frontAnswer';
import { installFront } from './http1/front';
import { closeGracefully } from './listen';
import type { Logger } from './logging';
import type { Metrics } from './metrics';

/**
 * `cairn serve --workers N` (N > 1): one Node process cannot keep up with a
 * multi-core static server, so N worker processes share the listening socket
 * (node:cluster; the primary binds it, also for port 0) and each answers the
 * hot path itself: GET/HEAD of files of public repositories
 * (server/files/fastpath.ts), which only reads the data folder and checks
 * freshness on disk, so any number of processes can do it side by side.
 *
 * Everything else — the API, private repositories, 404s (they feed the
 * on-demand delta hook), mounts, /healthz, /metrics — a worker forwards
 * unchanged over a Unix socket to the primary, which runs the one full
 * express app. So there is one delta job queue, one jobs API view and one
 * writer of the data folder per server; the repository locks are
 * cross-process anyway (storage/backends/lockfile.ts), for `cairn commit`,
 * `cairn delta` and other servers on the same data folder.
 *
 * Each process logs its own requests (one line per request: a forwarded
 * request is logged by the primary only), and /metrics on the primary adds up
 * the metrics of all processes.
 */

const ENV_SOCKET = 'CAIRN_CLUSTER_SOCKET';

export function isClusterWorker(): boolean {
  return cluster.isWorker && !!process.env[ENV_SOCKET];
}

type Msg =
  | { cairn: 'listening'; port: number }
  | { cairn: 'listen-failed'; error: string }
  | { cairn: 'stop' }
  | { cairn: 'metrics?'; id: number }
  | { cairn: 'metrics'; id: number; data: metric[] };

function isMsg(m: unknown): m is Msg {
  return typeof m === 'object' && m !== null && typeof (m as { cairn?: unknown }).cairn === 'string';
}

export interface PrimaryOptions {
  workers: number;
  port: number;
  host: string;
  /** The full app (express, with its own fast path). */
  app: RequestListener;
  metrics?: Metrics;
  logger: Logger;
}

export interface RunningCluster {
  port: number;
  url: string;
  /** Resolves with the exit status once stopped by SIGTERM/SIGINT. */
  stopOnSignals(): Promise<number>;
}

/** Starts the internal server and the workers; resolves once every worker listens. */
export async function startPrimary(opts: PrimaryOptions): Promise<RunningCluster> {
  // Linux: an abstract socket (no file, so nothing is left behind even if the primary is killed).
  const name = `cairn-${process.pid}-${randomBytes(4).toString('hex')}.sock`;
  const socket = process.platform === 'linux' ? `\0${name}` : path.join(os.tmpdir(), name);
  const internal = createServer(opts.app);
  internal.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    internal.once('error', reject);
    internal.listen(socket, () => {
      internal.off('error', reject);
      resolve();
    });
  });
  const removeSocket = () => {
    if (!socket.startsWith('\0')) rmSync(socket, { force: true });
  };
  process.on('exit', removeSocket);

  if (opts.metrics) aggregateWorkerMetrics(opts.metrics);

  let stopping = false;
  // Environment strings cannot hold NUL: an abstract name travels as `@name`.
  const env = { [ENV_SOCKET]: socket.startsWith('\0') ? `@${socket.slice(1)}` : socket };
  const fork = () => cluster.fork(env);
  const ports: number[] = [];
  const listening = new Promise<number>((resolve, reject) => {
    const onMessage = (w: Worker, m: unknown) => {
      if (!isMsg(m)) return;
      if (m.cairn === 'listen-failed') {
        cluster.off('message', onMessage);
        reject(new Error(m.error));
      } else if (m.cairn === 'listening') {
        ports.push(m.port);
        if (ports.length === opts.workers) {
          cluster.off('message', onMessage);
          if (new Set(ports).size !== 1) reject(new Error(`workers listen on different ports: ${ports.join(', ')}`));
          else resolve(ports[0]!);
        }
      }
    };
    cluster.on('message', onMessage);
  });
  cluster.on('exit', (w, code, signal) => {
    if (stopping) return;
    opts.logger.error('worker exited', { pid: w.process.pid, code, signal });
    // Keep serving: a replacement takes its place (it shares the listening socket).
    setTimeout(() => {
      if (!stopping) fork();
    }, 200).unref();
  });
  for (let i = 0; i < opts.workers; i++) fork();
  let port: number;
  try {
    port = await listening;
  } catch (e) {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
    internal.close();
    throw e;
  }
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;

  const stop = async (): Promise<void> => {
    stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((done) => {
            if (w.isDead()) return done();
            w.once('exit', () => done());
            w.send({ cairn: 'stop' } satisfies Msg, () => {});
            setTimeout(() => w.process.kill('SIGKILL'), 7000).unref();
          }),
      ),
    );
    await new Promise<void>((done) => {
      internal.close(() => done());
      internal.closeIdleConnections();
      setTimeout(() => internal.closeAllConnections(), 5000).unref();
    });
    removeSocket();
  };

  return {
    port,
    url: `http://${host}:${port}`,
    stopOnSignals: () =>
      new Promise<number>((done) => {
        const onSignal = (signal: NodeJS.Signals) => {
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          process.once(signal, () => process.exit(1));
          opts.logger.info('stopping', { signal });
          void stop().then(() => {
            opts.logger.info('stopped');
            done(0);
          });
        };
        process.once('SIGTERM', onSignal);
        process.once('SIGINT', onSignal);
      }),
  };
}

/** /metrics of the primary: its own registry plus every worker's, added up (prom-client's cluster aggregation). */
function aggregateWorkerMetrics(metrics: Metrics): void {
  const registry = metrics.registry;
  const own = registry.metrics.bind(registry);
  let nextId = 1;
  const ask = (w: Worker) =>
    new Promise<metric[] | null>((resolve) => {
      const id = nextId++;
      const onMessage = (m: unknown) => {
        if (isMsg(m) && m.cairn === 'metrics' && m.id === id) {
          cleanup();
          resolve(m.data);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        resolve(null);
      }, 2000);
      const cleanup = () => {
        clearTimeout(timer);
        w.off('message', onMessage);
      };
      w.on('message', onMessage);
      try {
        w.send({ cairn: 'metrics?', id } satisfies Msg);
      } catch {
        cleanup();
        resolve(null);
      }
    });
  registry.metrics = async () => {
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && w.isConnected());
    if (workers.length === 0) return own();
    const parts = [await registry.getMetricsAsJSON(), ...(await Promise.all(workers.map(ask))).filter((x): x is metric[] => x !== null)];
    return AggregatorRegistry.aggregate(parts as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics();
  };
}

export interface WorkerOptions {
  port: number;
  host: string;
  registry: RepoRegistry;
  settings: SettingsStore;
  metrics?: Metrics;
  logger: Logger;
}

/** A worker: the fast path, everything else forwarded to the primary. Returns once it stopped. */
export async function runWorker(opts: WorkerOptions): Promise<number> {
  const named = process.env[ENV_SOCKET]!;
  const socket = named.startsWith('@') ? `\0${named.slice(1)}` : named;
  const fastOptions = { registry: opts.registry, settings: opts.settings, cache: new FileCache(), metrics: opts.metrics, logger: opts.logger };
  const fast = createFastPath(fastOptions);
  const agent = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 });
  const server: Server = createServer((req, res) => fast(req, res, () => forward(socket, agent, req, res)));
  const metrics = opts.metrics;
  const front = installFront(server, { answer: createFrontAnswerer(fastOptions), onHandOver: metrics && (() => metrics.frontHandOver()) });
  const send = (m: Msg) => process.send?.(m);

  process.on('message', (m: unknown) => {
    if (!isMsg(m)) return;
    if (m.cairn === 'stop') void close();
    else if (m.cairn === 'metrics?' && opts.metrics) {
      void opts.metrics.registry.getMetricsAsJSON().then((data) => send({ cairn: 'metrics', id: m.id, data }));
    }
  });
  // The primary coordinates stopping; without it (killed), a worker must not linger.
  process.on('disconnect', () => void close().then(() => process.exit(0)));
  // A signal to the whole process group (Ctrl-C) reaches the workers too: the primary's 'stop' follows.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => void close());

  let closing: Promise<void> | undefined;
  let done!: (code: number) => void;
  const finished = new Promise<number>((r) => (done = r));
  const close = () =>
    (closing ??= closeGracefully(server, front, 5000).then(() => {
      agent.destroy();
      done(0);
      // The IPC channel would keep the process alive: leave once the log is out (the sink flushes on exit).
      setImmediate(() => process.exit(0));
    }));

  server.once('error', (e) => send({ cairn: 'listen-failed', error: e.message }));
  server.listen(opts.port, opts.host, () => send({ cairn: 'listening', port: (server.address() as AddressInfo).port }));
  return finished;
}

/** Request and connection-level headers that describe one hop, not the message. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect']);

/** Hands a request to the primary's app unchanged and relays its answer byte for byte. */
function forward(socket: string, agent: Agent, req: IncomingMessage, res: ServerResponse): void {
  const headers: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k) && v !== undefined) headers[k] = v;
  const up = httpRequest({ socketPath: socket, agent, method: req.method, path: req.url, headers, setHost: false });
  up.on('response', (ur) => {
    const raw: string[] = [];
    for (let i = 0; i < ur.rawHeaders.length; i += 2) {
      if (!HOP.has(ur.rawHeaders[i]!.toLowerCase())) raw.push(ur.rawHeaders[i]!, ur.rawHeaders[i + 1]!);
    }
    res.writeHead(ur.statusCode ?? 502, ur.statusMessage, raw);
    ur.pipe(res);
    ur.on('error', () => res.destroy());
    ur.on('aborted', () => res.destroy());
  });
  up.on('error', () => {
    if (res.headersSent) res.destroy();
    else {
      res.writeHead(502, { 'Content-Length': 0, 'Cache-Control': 'no-store', 'X-Cairn-Error': 'primary process unavailable' });
      res.end();
    }
  });
  res.on('close', () => {
    if (!res.writableFinished) up.destroy();
  });
  req.pipe(up);
}
