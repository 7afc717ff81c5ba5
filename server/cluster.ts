import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Logger } from './logging';
import type { Metrics } from './metrics';

/**
 * `cairn serve --workers N` (N > 1): N worker processes share the listening
 * port (node:cluster) and each is a whole Cairn — the same process assembly
 * as a single-process server (server/start.ts), the HTTP/1.1 front, the app,
 * mounts — so every request is answered by the process that accepted it.
 * No HTTP passes between processes. What must happen once per server goes to
 * the primary as messages over the cluster's IPC channel:
 *   - metric totals: /metrics in any worker answers the sum of every process
 *     (the primary asks each worker for its registry, adds its own);
 *   - delta jobs (server/jobs/): the primary runs the one job queue; workers
 *     send it what they learn (refs moved, missing superblocks) and ask it
 *     for job status (see jobs/remote.ts).
 * Repository writes are safe from any process: the repository locks are
 * cross-process (storage/backends/lockfile.ts), as for `cairn commit`.
 */

type metric = Awaited<ReturnType<Registry['getMetricsAsJSON']>>[number];

/** Messages between the primary and its workers. `id` pairs a request with its reply. */
export type ClusterMsg =
  | { cairn: 'listening'; port: number }
  | { cairn: 'listen-failed'; error: string }
  | { cairn: 'stop' }
  /** primary → worker: your registry, please; worker → primary: the sum of all, please. */
  | { cairn: 'metrics?'; id: number }
  | { cairn: 'metrics'; id: number; data?: metric[]; text?: string; contentType?: string }
  /** worker → primary: a call of the job service; the reply carries its result or error. */
  | { cairn: 'call'; id: number; method: string; args: unknown[] }
  | { cairn: 'reply'; id: number; result?: unknown; error?: { code: string; message: string } };

export function isClusterMsg(m: unknown): m is ClusterMsg {
  return typeof m === 'object' && m !== null && typeof (m as { cairn?: unknown }).cairn === 'string';
}

export function isClusterWorker(): boolean {
  return cluster.isWorker && process.env.CAIRN_CLUSTER_WORKER === '1';
}

export interface PrimaryOptions {
  workers: number;
  logger: Logger;
  /** The primary's own metrics (delta jobs), added to the workers'. */
  metrics?: Metrics;
  /** Answers a worker's call (the job service); a rejection reaches the worker as an error. */
  onCall?(method: string, args: unknown[]): Promise<unknown>;
}

export interface RunningCluster {
  port: number;
  /** Stops every worker (each finishes its answers in progress); resolves once all exited. */
  stop(): Promise<void>;
}

/** Forks the workers; resolves once every one listens. A worker that dies is replaced. */
export async function startPrimary(opts: PrimaryOptions): Promise<RunningCluster> {
  let stopping = false;
  const fork = () => cluster.fork({ CAIRN_CLUSTER_WORKER: '1' });
  const ports: number[] = [];
  const listening = new Promise<number>((resolve, reject) => {
    const onMessage = (_w: Worker, m: unknown) => {
      if (!isClusterMsg(m)) return;
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
  cluster.on('message', (w, m: unknown) => {
    if (!isClusterMsg(m)) return;
    if (m.cairn === 'metrics?') void totalMetrics(opts.metrics).then((r) => send(w, { cairn: 'metrics', id: m.id, ...r }));
    else if (m.cairn === 'call') {
      const call = opts.onCall ? opts.onCall(m.method, m.args) : Promise.reject(new Error('no job service'));
      call.then(
        (result) => send(w, { cairn: 'reply', id: m.id, result }),
        (e: unknown) => send(w, { cairn: 'reply', id: m.id, error: { code: (e as { code?: string })?.code ?? 'INTERNAL', message: e instanceof Error ? e.message : String(e) } }),
      );
    }
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
    for (const w of liveWorkers()) w.process.kill('SIGKILL');
    throw e;
  }
  return {
    port,
    stop: async () => {
      stopping = true;
      await Promise.all(
        liveWorkers().map(
          (w) =>
            new Promise<void>((done) => {
              if (w.isDead()) return done();
              w.once('exit', () => done());
              send(w, { cairn: 'stop' });
              setTimeout(() => w.process.kill('SIGKILL'), 7000).unref();
            }),
        ),
      );
    },
  };
}

function liveWorkers(): Worker[] {
  return Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
}

function send(w: Worker, m: ClusterMsg): void {
  try {
    if (w.isConnected()) w.send(m);
  } catch {
    /* the worker is gone; its replacement asks again */
  }
}

/** Every worker's registry and the primary's own, added up (prom-client's cluster aggregation), as exposition text. */
/** Ids of the primary's metric requests to workers: one sequence, so concurrent scrapes never take each other's replies. */
let nextMetricsId = 1;

async function totalMetrics(own: Metrics | undefined): Promise<{ text: string; contentType: string }> {
  const ask = (w: Worker) =>
    new Promise<metric[] | null>((resolve) => {
      const id = nextMetricsId++;
      const onMessage = (m: unknown) => {
        if (isClusterMsg(m) && m.cairn === 'metrics' && m.id === id) {
          cleanup();
          resolve(m.data ?? null);
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
      send(w, { cairn: 'metrics?', id });
    });
  const parts = (await Promise.all(liveWorkers().filter((w) => w.isConnected()).map(ask))).filter((x): x is metric[] => x !== null);
  if (own) parts.push(await own.registry.getMetricsAsJSON());
  const total = AggregatorRegistry.aggregate(parts as Parameters<typeof AggregatorRegistry.aggregate>[0]);
  return { text: await total.metrics(), contentType: total.contentType };
}

/** Replies to the primary's calls to a worker, and lets the worker call the primary. */
export interface WorkerChannel {
  /** Calls `method` of the primary's job service. */
  call(method: string, args: unknown[]): Promise<unknown>;
  /** Tells the primary this worker listens (or could not). */
  listening(port: number): void;
  listenFailed(error: string): void;
}

/**
 * A worker's side: answers the primary's requests for this process's
 * metrics, makes the worker's /metrics answer the cluster's totals, stops on
 * the primary's word (or when the primary is gone).
 */
export function workerChannel(opts: { metrics?: Metrics; stop(): void }): WorkerChannel {
  let nextId = 1;
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  const post = (m: ClusterMsg) => process.send?.(m);
  process.on('message', (m: unknown) => {
    if (!isClusterMsg(m)) return;
    if (m.cairn === 'stop') opts.stop();
    else if (m.cairn === 'metrics?' && opts.metrics) void opts.metrics.registry.getMetricsAsJSON().then((data) => post({ cairn: 'metrics', id: m.id, data }));
    else if (m.cairn === 'metrics' || m.cairn === 'reply') {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (m.cairn === 'metrics') p.resolve(m);
      else if (m.error) p.reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
      else p.resolve(m.result);
    }
  });
  // The primary coordinates stopping; without it (killed), a worker must not linger.
  process.on('disconnect', () => {
    for (const p of pending.values()) p.reject(new Error('the primary process is gone'));
    pending.clear();
    opts.stop();
  });
  // A signal to the whole process group (Ctrl-C) reaches the workers too: the primary's 'stop' follows.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => opts.stop());

  const ask = (m: (id: number) => ClusterMsg, timeoutMs: number) =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error('the primary process did not answer'));
      }, timeoutMs);
      timer.unref();
      pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      post(m(id));
    });

  if (opts.metrics) {
    const registry = opts.metrics.registry;
    registry.metrics = async () => {
      const r = (await ask((id) => ({ cairn: 'metrics?', id }), 5000)) as { text?: string };
      return r.text ?? '';
    };
  }
  return {
    call: (method, args) => ask((id) => ({ cairn: 'call', id, method, args }), 30_000),
    listening: (port) => post({ cairn: 'listening', port }),
    listenFailed: (error) => post({ cairn: 'listen-failed', error }),
  };
}
