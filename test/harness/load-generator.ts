// The load generator of test/harness/load-gc, in a process of its own (so that the test's own work —
// spawning a hundred `ostree` clients — neither delays its requests nor skews its latencies):
// `node load-generator.js` with an IPC channel; it receives
// { port, concurrency, targets: [{ path, sha256 }] } and sends GETs over kept-alive connections
// until it receives 'stop', then answers { requests, seconds, p50, p95, p99, max, failures, idleRaces }.
// A target with a sha256 must answer exactly those bytes; the others (summary, refs, …) must answer
// 200 with a body.
//
// A kept-alive connection that the server closed as idle (node's keepAliveTimeout, 5 s) just as a
// request was sent on it fails with a reset before any byte of an answer: as libcurl does, such a GET
// is sent again (node's documented rule: `request.reusedSocket`; again while the connection taken is
// a reused one), counted as idleRaces. A reset of a new connection, or after an answer began, is a
// failure.

import { createHash } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';

interface Start {
  port: number;
  concurrency: number;
  targets: Array<{ path: string; sha256: string }>;
}

function run(cfg: Start): void {
  const agent = new Agent({ keepAlive: true, maxSockets: cfg.concurrency });
  const latencies: number[] = [];
  const failures: string[] = [];
  let idleRaces = 0;
  let stop = false;
  const get = (p: string, retries = 0): Promise<{ status: number; body: Buffer }> =>
    new Promise((resolve, reject) => {
      let answered = false;
      const req = httpRequest({ host: '127.0.0.1', port: cfg.port, path: p, agent }, (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.setTimeout(60_000, () => req.destroy(new Error('no answer within 60 s')));
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (!answered && retries < cfg.concurrency && req.reusedSocket && (e.code === 'ECONNRESET' || e.message === 'socket hang up')) {
          idleRaces++;
          resolve(get(p, retries + 1));
        } else reject(new Error(`${e.code ?? ''} ${e.message} (${req.reusedSocket ? 'kept-alive' : 'new'} connection, ${answered ? 'answer begun' : 'no answer'}, ${retries} resent)`));
      });
      req.end();
    });
  let n = 0;
  const started = performance.now();
  const worker = async () => {
    while (!stop) {
      const t = cfg.targets[n++ % cfg.targets.length]!;
      const t0 = performance.now();
      try {
        const r = await get(t.path);
        latencies.push(performance.now() - t0);
        if (r.status !== 200) failures.push(`GET ${t.path}: ${r.status}`);
        else if (t.sha256 && createHash('sha256').update(r.body).digest('hex') !== t.sha256) failures.push(`GET ${t.path}: wrong bytes`);
        else if (!t.sha256 && r.body.length === 0 && !t.path.endsWith('/config')) failures.push(`GET ${t.path}: empty body`);
      } catch (e) {
        failures.push(`GET ${t.path} at ${((performance.now() - started) / 1000).toFixed(1)} s: ${(e as Error).message}`);
      }
    }
  };
  const workers = Array.from({ length: cfg.concurrency }, worker);
  process.once('message', async () => {
    stop = true;
    await Promise.all(workers);
    agent.destroy();
    const seconds = (performance.now() - started) / 1000;
    const sorted = latencies.sort((a, b) => a - b);
    const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
    process.send!({ requests: sorted.length, seconds, p50: pct(50), p95: pct(95), p99: pct(99), max: sorted[sorted.length - 1] ?? NaN, failures, idleRaces }, () => process.exit(0));
  });
}

// Only as a child with an IPC channel (`node --test dist/test/` also runs this file alone: nothing to do).
if (process.send) process.once('message', (m: Start) => run(m));
