// S3 benchmark (issue #13): the stock client pulling one commit from nginx serving the repository
// folder, from `cairn serve --data` (filesystem) and from `cairn serve --storage s3://BUCKET/PREFIX`
// on a Ceph RADOS Gateway (and through presigned redirects when `cairn serve` has --s3-redirect);
// `cairn push` of that commit to a fresh Cairn on each backend; and where the S3 read path's time
// goes (requests to the gateway per client request, by operation and kind of file).
//
//   npm run bench:s3                         (builds first; see package.json)
//   node dist/bench/s3.js [options]
//
// Options (all optional):
//   --quick            a small run: 600 files, 1 push per backend, 1 timed pull per mode and server
//   --files N          files in the generated tree (default 6000, bench:pull's tree)
//   --rounds N         timed pulls per client mode and server, interleaved (default 5)
//   --push-rounds N    pushes to a fresh Cairn per backend, alternating which goes first (default 3)
//   --jobs N           `cairn push --jobs` (default 4)
//   --workers N|auto   `cairn serve --workers` (default auto: the product's default for this machine)
//   --no-redirect      leave out the presigned-redirect server even where `cairn serve` has --s3-redirect
//   --keep             keep the bucket prefixes and data folders of the run
//   --trace            also trace every S3 request of every Cairn (WORK/counts/TAG/PID.trace)
// Env: CAIRN_TEST_S3_ENDPOINT names the gateway (keys CAIRN_TEST_S3_ACCESS_KEY/SECRET_KEY, default
// testkey/testsecret); without it scripts/ceph-up.sh starts a one-node Ceph for the run and
// scripts/ceph-down.sh stops it at exit (test/s3/ceph.ts). CAIRN_BENCH_DIR (work folder, default
// bench/.work/s3; the generated repository is cached there). CAIRN_BENCH_CLI (the `cairn` script to
// measure, default bin/cairn.js, as bench:push). Needs the ostree client and nginx-light.
//
// Every Cairn runs with bench/s3-count.js preloaded (`node --require`), which counts the S3
// requests the process sends (HeadObject, GetObject, PutObject…, by kind of key, with the time to
// each answer), and logs every request (CAIRN_LOG=info) to its own file, read back per pull: so
// each pull gets its client requests, what Cairn sent the gateway for them, and Cairn's own
// per-request time. A benchmark, never a test: it reports, it does not fail. Writes
// bench/results/s3-latest.json.

import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { projectRoot, startCairn, type CairnProcess } from '../test/helpers/cairn-process';
import { emptyPrefix, freshPrefix, s3ClientEnv, s3TestStore, type S3TestStore } from '../test/s3/ceph';
import { argv, flag, machineInfo, median, numberOption, runNode, stockPull, treeCpuSeconds } from './common';
import { startNginx, waitHttp } from './nginx';
import { keyClass, sizeClass, type S3Counts } from './s3-count';
import { buildTreeRepo, type TreeRepo } from './tree';

// ------------------------------------------------------------------------------------------------
// options

const quick = flag('quick');
const int = (name: string, dflt: number) => numberOption(name, dflt, { integer: true });
const opts = {
  quick,
  files: int('files', quick ? 600 : 6000),
  rounds: int('rounds', quick ? 1 : 5),
  pushRounds: int('push-rounds', quick ? 1 : 3),
  jobs: int('jobs', 4),
  workers: argv.includes('--workers') ? String(argv[argv.indexOf('--workers') + 1]) : 'auto',
  redirect: !flag('no-redirect'),
  keep: flag('keep'),
  trace: flag('trace'),
};

const ROOT = projectRoot();
const CLI = path.resolve(process.env.CAIRN_BENCH_CLI || path.join(ROOT, 'bin', 'cairn.js'));
// The server measured is the same script's `cairn serve` (startCairn takes another script from CAIRN_E2E_SERVER).
if (process.env.CAIRN_BENCH_CLI) process.env.CAIRN_E2E_SERVER = CLI;
const WORK = path.resolve(process.env.CAIRN_BENCH_DIR || path.join(ROOT, 'bench', '.work', 's3'));
const LOCAL = path.join(WORK, 'local');
const REF = 'bench/x86_64/os';
const REPO = 'main';
const RESULTS = path.join(ROOT, 'bench', 'results', 's3-latest.json');
const SECRET = 'cairn-bench-s3-token-secret-0123456789abcdef';
const COUNTER = path.join(__dirname, 's3-count.js');

const log = (s: string) => process.stderr.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------------
// servers

type Kind = 'nginx' | 'fs' | 's3' | 's3-redirect';

interface Target {
  kind: Kind;
  /** http://127.0.0.1:PORT/repo/main */
  base: string;
  proc?: CairnProcess;
  /** Where the preloaded counter writes (Cairn only). */
  countsDir?: string;
  /** Cairn's request log. */
  logFile?: string;
  stop(): Promise<void>;
}

let store: S3TestStore;
const prefixes: string[] = [];

function s3Env(): NodeJS.ProcessEnv {
  return {
    ...s3ClientEnv(store),
  };
}

/** `cairn serve` on a data folder (fs) or on a prefix of the bucket (s3, s3-redirect), its request log and S3 counts in WORK. */
async function startTarget(kind: Exclude<Kind, 'nginx'>, where: string, tag: string): Promise<Target> {
  const countsDir = path.join(WORK, 'counts', tag);
  const logFile = path.join(WORK, 'logs', `${tag}.log`);
  await fsp.rm(countsDir, { recursive: true, force: true });
  await fsp.mkdir(countsDir, { recursive: true });
  await fsp.mkdir(path.dirname(logFile), { recursive: true });
  await fsp.rm(logFile, { force: true });
  const onS3 = kind !== 'fs';
  const proc = await startCairn({
    dataDir: onS3 ? path.join(WORK, 'scratch', tag) : where,
    env: { CAIRN_LOG: 'info', CAIRN_TOKEN_SECRET: SECRET, CAIRN_BENCH_S3_COUNTS: countsDir, ...(opts.trace ? { CAIRN_BENCH_S3_TRACE: '1' } : {}), ...(onS3 ? s3Env() : {}) },
    nodeArgs: ['--require', COUNTER],
    logFile,
    extraArgs: ['--workers', opts.workers, ...(onS3 ? ['--storage', `s3://${store.bucket}/${where.replace(/\/$/, '')}`] : []), ...(kind === 's3-redirect' ? ['--s3-redirect'] : [])],
    timeoutMs: 60_000,
  });
  const base = `${proc.url}/repo/${REPO}`;
  try {
    await waitHttp(`${base}/config`, 30_000);
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return { kind, base, proc, countsDir, logFile, stop: () => proc.stop() };
}

/** Whether the `cairn serve` measured has presigned redirects (issue #13, being built meanwhile). */
async function hasRedirectOption(): Promise<boolean> {
  const r = await runNode(CLI, ['serve', '--help']);
  return /--s3-redirect\b/.test(r.stdout + r.stderr);
}

async function cli(args: string[]): Promise<string> {
  const r = await runNode(CLI, args, [], { CAIRN_TOKEN_SECRET: SECRET });
  if (r.code !== 0) throw new Error(`cairn ${args[0]} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** No policy deltas: a from-scratch delta compiling after the push would share the CPU with what is measured (as bench:push). */
async function deltasOff(t: Target, adminToken: string): Promise<void> {
  const r = await fetch(`${t.proc!.url}/api/repos/${REPO}/settings`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ deltas: { scratch: false, previousCommits: 0 } }),
  });
  if (r.status !== 200) throw new Error(`settings of ${t.kind}: ${r.status} ${await r.text()}`);
}

// ------------------------------------------------------------------------------------------------
// what a Cairn did: S3 requests (the preloaded counter) and client requests (its log)

function readCounts(dir: string): S3Counts {
  const total: S3Counts = {};
  for (const f of fs.readdirSync(dir)) {
    if (!f.endsWith('.json')) continue;
    const c = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as S3Counts;
    for (const [op, byClass] of Object.entries(c)) {
      for (const [cls, v] of Object.entries(byClass)) {
        const e = ((total[op] ??= {})[cls] ??= { n: 0, ms: 0, errors: 0 });
        e.n += v.n;
        e.ms += v.ms;
        e.errors += v.errors;
      }
    }
  }
  return total;
}

function diffCounts(after: S3Counts, before: S3Counts): S3Counts {
  const out: S3Counts = {};
  for (const [op, byClass] of Object.entries(after)) {
    for (const [cls, v] of Object.entries(byClass)) {
      const b = before[op]?.[cls] ?? { n: 0, ms: 0, errors: 0 };
      if (v.n === b.n) continue;
      (out[op] ??= {})[cls] = { n: v.n - b.n, ms: v.ms - b.ms, errors: v.errors - b.errors };
    }
  }
  return out;
}

interface ClientRequest {
  method: string;
  path: string;
  status: number;
  bytes: number;
  ms: number;
}

/** Request lines of a Cairn log from byte `from` on. */
function readRequests(file: string, from: number): ClientRequest[] {
  const text = fs.readFileSync(file).subarray(from).toString('utf8');
  const out: ClientRequest[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{') || !line.includes('"msg":"request"')) continue;
    try {
      const o = JSON.parse(line) as { method: string; path: string; status: number; bytes: number; duration_ms: number };
      out.push({ method: o.method, path: o.path, status: o.status, bytes: o.bytes, ms: o.duration_ms });
    } catch {
      /* a line cut by the snapshot: not a whole request */
    }
  }
  return out;
}

/** The kind of file a client request names; content objects split at the file cache's bound. */
function requestClass(r: ClientRequest): string {
  return sizeClass(keyClass(r.path), r.bytes);
}

interface Snapshot {
  counts: S3Counts;
  logAt: number;
  cpu: number;
}

async function snapshot(t: Target): Promise<Snapshot> {
  return { counts: readCounts(t.countsDir!), logAt: fs.statSync(t.logFile!).size, cpu: treeCpuSeconds(t.proc!.pid) };
}

interface Activity {
  s3: S3Counts;
  requests: ClientRequest[];
  serverCpuSeconds: number;
}

/** What a Cairn did since `before` (after its counter and its log caught up). */
async function activitySince(t: Target, before: Snapshot): Promise<Activity> {
  await sleep(400); // the counter flushes every 100 ms, the log sink batches
  const cpu = treeCpuSeconds(t.proc!.pid) - before.cpu;
  return { s3: diffCounts(readCounts(t.countsDir!), before.counts), requests: readRequests(t.logFile!, before.logAt), serverCpuSeconds: cpu };
}

// ------------------------------------------------------------------------------------------------
// the gateway alone

/**
 * HEAD and GET of a 1 KiB object straight from the gateway with Cairn's S3 client settings,
 * medians of 15: the GET split into its head and the rest of its body. A body that takes ~40 ms
 * after the head is a Nagle stall: the gateway writes head and body separately without TCP_NODELAY
 * and the receiver delays its ACK (RGW's beast frontend: `tcp_nodelay=1`).
 */
async function probeGateway(): Promise<{ headMs: number; getHeadMs: number; getBodyMs: number; nagleStall: boolean }> {
  const prefix = freshPrefix('bench-s3-probe');
  prefixes.push(prefix);
  const key = `${prefix}probe`;
  await store.client.send(new PutObjectCommand({ Bucket: store.bucket, Key: key, Body: Buffer.alloc(1024, 7) }));
  const head: number[] = [];
  const getHead: number[] = [];
  const getBody: number[] = [];
  for (let i = 0; i < 15; i++) {
    let t0 = performance.now();
    await store.client.send(new HeadObjectCommand({ Bucket: store.bucket, Key: key }));
    head.push(performance.now() - t0);
    t0 = performance.now();
    const o = await store.client.send(new GetObjectCommand({ Bucket: store.bucket, Key: key }));
    const t1 = performance.now();
    await o.Body!.transformToByteArray();
    getHead.push(t1 - t0);
    getBody.push(performance.now() - t1);
  }
  const r = { headMs: median(head), getHeadMs: median(getHead), getBodyMs: median(getBody) };
  return { ...r, nagleStall: r.getBodyMs > 20 };
}

// ------------------------------------------------------------------------------------------------
// push

interface PushRun {
  backend: 'fs' | 's3';
  seconds: number;
  objects: number;
  uploaded: number;
  bytes: number;
  objectsPerSecond: number;
  mbPerSecond: number;
  serverCpuSeconds: number;
  requests: { missing: number; batches: number; puts: number; retries: number };
  s3: S3Counts;
}

async function pushTo(t: Target, token: string): Promise<PushRun> {
  const before = await snapshot(t);
  const t0 = performance.now();
  const r = await runNode(CLI, ['push', '--url', t.base, '--token', token, '--repo', LOCAL, '--jobs', String(opts.jobs), '--json', REF]);
  const seconds = (performance.now() - t0) / 1000;
  if (r.code !== 0) throw new Error(`push to ${t.kind} failed: ${r.stderr}`);
  const j = JSON.parse(r.stdout) as { objects: number; uploaded: number; bytes: number; requests: PushRun['requests'] };
  const a = await activitySince(t, before);
  return {
    backend: t.kind as 'fs' | 's3',
    seconds,
    objects: j.objects,
    uploaded: j.uploaded,
    bytes: j.bytes,
    objectsPerSecond: j.uploaded / seconds,
    mbPerSecond: j.bytes / 1e6 / seconds,
    serverCpuSeconds: a.serverCpuSeconds,
    requests: j.requests,
    s3: a.s3,
  };
}

/**
 * Pushes to a fresh Cairn on each backend, `pushRounds` times, alternating which goes first. The
 * last round's data folder and prefix stay: the pulls read them.
 */
async function pushPhase(adminToken: string): Promise<{ runs: PushRun[]; fsData: string; s3Prefix: string }> {
  const runs: PushRun[] = [];
  let fsData = '';
  let s3Prefix = '';
  for (let i = 0; i < opts.pushRounds; i++) {
    const last = i === opts.pushRounds - 1;
    for (const backend of i % 2 ? (['s3', 'fs'] as const) : (['fs', 's3'] as const)) {
      const where = backend === 'fs' ? path.join(WORK, 'push', `fs-${i}`) : freshPrefix('bench-s3');
      if (backend === 'fs') await fsp.rm(where, { recursive: true, force: true });
      else prefixes.push(where);
      const t = await startTarget(backend, where, `push-${backend}-${i}`);
      try {
        await deltasOff(t, adminToken);
        const run = await pushTo(t, adminToken);
        runs.push(run);
        log(
          `push ${i + 1}/${opts.pushRounds} ${backend.padEnd(2)}: ${run.seconds.toFixed(2)} s, ${run.uploaded} objects (${run.objectsPerSecond.toFixed(0)}/s), ` +
            `${(run.bytes / 1e6).toFixed(1)} MB (${run.mbPerSecond.toFixed(1)} MB/s), server CPU ${run.serverCpuSeconds.toFixed(2)} s` +
            (backend === 's3' ? `, ${s3Total(run.s3).n} S3 requests` : ''),
        );
      } finally {
        await t.stop();
      }
      if (last) {
        if (backend === 'fs') fsData = where;
        else s3Prefix = where;
      } else if (backend === 'fs' && !opts.keep) await fsp.rm(where, { recursive: true, force: true });
      else if (backend === 's3' && !opts.keep) await emptyPrefix(store, where);
    }
  }
  return { runs, fsData, s3Prefix };
}

// ------------------------------------------------------------------------------------------------
// pull

type Mode = 'archive' | 'bare-user';

interface PullRun {
  server: Kind;
  mode: Mode;
  seconds: number;
  activity?: Activity;
}

async function timedPull(t: Target, mode: Mode, tag: string, expect: string): Promise<PullRun> {
  const before = t.proc ? await snapshot(t) : undefined;
  const seconds = await stockPull({ base: t.base, mode, dir: path.join(WORK, 'clients', `${t.kind}-${mode}-${tag}`), ref: REF, expect });
  return { server: t.kind, mode, seconds, activity: before && (await activitySince(t, before)) };
}

const s3Total = (c: S3Counts) => {
  let n = 0;
  let ms = 0;
  for (const byClass of Object.values(c)) for (const v of Object.values(byClass)) (n += v.n), (ms += v.ms);
  return { n, ms };
};

/**
 * Where one pull's time went on a Cairn: client requests by kind of file (count, Cairn's median and
 * total time per request) and, for each kind, the S3 requests Cairn sent (count and time to answer).
 */
function profile(a: Activity) {
  const byClass: Record<string, { requests: number; statuses: Record<string, number>; cairnMsMedian: number; cairnMsTotal: number; s3: Record<string, { n: number; ms: number }> }> = {};
  const durations: Record<string, number[]> = {};
  for (const r of a.requests) {
    const c = requestClass(r);
    const e = (byClass[c] ??= { requests: 0, statuses: {}, cairnMsMedian: 0, cairnMsTotal: 0, s3: {} });
    e.requests++;
    e.statuses[r.status] = (e.statuses[r.status] ?? 0) + 1;
    e.cairnMsTotal += r.ms;
    (durations[c] ??= []).push(r.ms);
  }
  for (const [c, d] of Object.entries(durations)) byClass[c]!.cairnMsMedian = median(d);
  // S3 requests by the key's kind (content objects split by the size the store answered, as client requests by the bytes sent).
  const s3ByKind: Record<string, Record<string, { n: number; ms: number }>> = {};
  for (const [op, m] of Object.entries(a.s3)) for (const [cls, v] of Object.entries(m)) ((s3ByKind[cls] ??= {})[op] = { n: v.n, ms: v.ms });
  const total = s3Total(a.s3);
  const clientRequests = a.requests.length;
  const ops: Record<string, { n: number; ms: number; perClientRequest: number; msMean: number }> = {};
  for (const [op, m] of Object.entries(a.s3)) {
    const n = Object.values(m).reduce((x, v) => x + v.n, 0);
    const ms = Object.values(m).reduce((x, v) => x + v.ms, 0);
    ops[op] = { n, ms, perClientRequest: clientRequests ? n / clientRequests : 0, msMean: n ? ms / n : 0 };
  }
  return {
    clientRequests,
    cairnMsTotal: a.requests.reduce((x, r) => x + r.ms, 0),
    serverCpuSeconds: a.serverCpuSeconds,
    s3Requests: total.n,
    s3Ms: total.ms,
    s3RequestsPerClientRequest: clientRequests ? total.n / clientRequests : 0,
    s3MsPerClientRequest: clientRequests ? total.ms / clientRequests : 0,
    ops,
    byClass,
    s3ByKind,
  };
}

// ------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  process.on('SIGINT', () => process.exit(130)); // exit hooks: the Cairn children, a Ceph this run started
  await fsp.mkdir(WORK, { recursive: true });
  const tree: TreeRepo = await buildTreeRepo({ work: WORK, repo: LOCAL, ref: REF, files: opts.files, wipe: LOCAL, log });
  log(`repo: ${tree.files} files, ${(tree.bytes / 1e6).toFixed(0)} MB of content, ${tree.objects} objects, ${(tree.objectBytes / 1e6).toFixed(0)} MB archived`);
  const endpointGiven = !!process.env.CAIRN_TEST_S3_ENDPOINT;
  if (!endpointGiven) log('CAIRN_TEST_S3_ENDPOINT is not set: starting a Ceph for this run (scripts/ceph-up.sh, ~15 s) …');
  store = await s3TestStore();
  log(`S3: ${store.settings.endpoint}, bucket ${store.bucket}${endpointGiven ? '' : ' (started by this run, stopped at exit)'}`);
  const redirect = opts.redirect && (await hasRedirectOption());
  log(redirect ? 'cairn serve has --s3-redirect: measuring presigned redirects too' : 'no presigned redirects measured (cairn serve has no --s3-redirect, or --no-redirect)');
  const gateway = await probeGateway();
  log(
    `gateway alone: HEAD ${gateway.headMs.toFixed(2)} ms, GET ${gateway.getHeadMs.toFixed(2)} ms to its head + ${gateway.getBodyMs.toFixed(2)} ms to the end of a 1 KiB body` +
      (gateway.nagleStall ? ' (a Nagle stall: every GET of the gateway waits for a delayed ACK; RGW beast: tcp_nodelay=1)' : ''),
  );
  const adminToken = await cli(['token', '--scope', 'admin', '--repo', REPO, '--ttl', '4h', '--sub', 'bench']);

  const targets: Target[] = [];
  const result: Record<string, unknown> = {
    date: new Date().toISOString(),
    command: argv.length ? `npm run bench:s3 -- ${argv.join(' ')}` : 'npm run bench:s3',
    machine: { ...machineInfo(), loadAverageStart: os.loadavg(), s3Endpoint: store.settings.endpoint, cephStartedByBench: !endpointGiven, cairnWorkers: opts.workers },
    options: opts,
    repo: tree,
    gateway,
  };
  try {
    // ---- push
    const pushed = await pushPhase(adminToken);
    const pushSummary = (b: 'fs' | 's3') => {
      const runs = pushed.runs.filter((r) => r.backend === b);
      return {
        runs,
        medianSeconds: median(runs.map((r) => r.seconds)),
        objectsPerSecond: median(runs.map((r) => r.objectsPerSecond)),
        mbPerSecond: median(runs.map((r) => r.mbPerSecond)),
        serverCpuSeconds: median(runs.map((r) => r.serverCpuSeconds)),
        s3RequestsPerObject: median(runs.map((r) => s3Total(r.s3).n / Math.max(1, r.uploaded))),
      };
    };
    const pf = pushSummary('fs');
    const ps = pushSummary('s3');
    result.push = { fs: pf, s3: ps, ratioSecondsS3ToFs: ps.medianSeconds / pf.medianSeconds };

    // ---- pull: nginx on the fs Cairn's repository folder, Cairn on that folder, Cairn on the bucket prefix
    const nginx = await startNginx({ prefix: path.join(WORK, 'nginx'), root: path.join(pushed.fsData, 'repos'), probe: `${REPO}/config`, accessLog: false });
    targets.push({ kind: 'nginx', base: `${nginx.origin}/repo/${REPO}`, stop: nginx.stop });
    targets.push(await startTarget('fs', pushed.fsData, 'pull-fs'));
    targets.push(await startTarget('s3', pushed.s3Prefix, 'pull-s3'));
    if (redirect) targets.push(await startTarget('s3-redirect', pushed.s3Prefix, 'pull-s3-redirect'));

    log('warm-up pulls (page cache, JIT; Cairn on S3 starts with an empty file cache), not counted in the medians …');
    const warmup: PullRun[] = [];
    for (const t of targets) {
      const r = await timedPull(t, 'archive', 'warmup', tree.commit);
      warmup.push(r);
      log(`warm-up ${t.kind.padEnd(11)} ${r.seconds.toFixed(2)} s${r.activity ? `, ${r.activity.requests.length} requests, ${s3Total(r.activity.s3).n} S3 requests` : ''}`);
    }
    const modes: Mode[] = ['archive', 'bare-user'];
    const runs: PullRun[] = [];
    for (let round = 0; round < opts.rounds; round++) {
      for (const [mi, mode] of modes.entries()) {
        const k = (round * modes.length + mi) % targets.length;
        for (const t of [...targets.slice(k), ...targets.slice(0, k)]) {
          const r = await timedPull(t, mode, `r${round}`, tree.commit);
          runs.push(r);
          log(
            `round ${round + 1}/${opts.rounds} ${mode.padEnd(9)} ${t.kind.padEnd(11)} ${r.seconds.toFixed(2)} s` +
              (r.activity ? `  ${r.activity.requests.length} requests, ${s3Total(r.activity.s3).n} S3 requests` : ''),
          );
        }
      }
    }
    const pull: Record<string, Record<string, unknown>> = {};
    for (const mode of modes) {
      const m: Record<string, number> = {};
      const secs: Record<string, number[]> = {};
      for (const t of targets) {
        secs[t.kind] = runs.filter((r) => r.mode === mode && r.server === t.kind).map((r) => r.seconds);
        m[t.kind] = median(secs[t.kind]!);
      }
      pull[mode] = {
        seconds: secs,
        median: m,
        ratioS3ToFs: m.s3! / m.fs!,
        ratioS3ToNginx: m.s3! / m.nginx!,
        ratioFsToNginx: m.fs! / m.nginx!,
        ...(redirect ? { ratioRedirectToFs: m['s3-redirect']! / m.fs!, ratioRedirectToNginx: m['s3-redirect']! / m.nginx! } : {}),
      };
    }
    result.pull = pull;

    // ---- where the S3 read path's time goes: the cold pull (empty file cache) and the measured archive pulls
    const prof = (kind: Kind, mode: Mode) => runs.filter((r) => r.server === kind && r.mode === mode).map((r) => profile(r.activity!));
    result.readPath = {
      note:
        'per pull: client requests Cairn answered, by kind of file, with Cairn\'s time per request (from its request log, ' +
        'duration_ms) and the S3 requests it sent (bench/s3-count.ts: count and time until the answer head)',
      s3ColdArchive: profile(warmup.find((r) => r.server === 's3')!.activity!),
      s3Archive: prof('s3', 'archive'),
      s3BareUser: prof('s3', 'bare-user'),
      fsArchive: prof('fs', 'archive'),
      ...(redirect ? { s3RedirectColdArchive: profile(warmup.find((r) => r.server === 's3-redirect')!.activity!), s3RedirectArchive: prof('s3-redirect', 'archive') } : {}),
    };
    result.warmup = warmup.map((r) => ({ server: r.server, seconds: r.seconds }));
  } finally {
    for (const t of targets) await t.stop().catch(() => undefined);
    await fsp.rm(path.join(WORK, 'clients'), { recursive: true, force: true });
    if (!opts.keep) {
      for (const p of prefixes) await emptyPrefix(store, p).catch((e: unknown) => log(`could not empty ${p}: ${String(e)}`));
      await fsp.rm(path.join(WORK, 'push'), { recursive: true, force: true });
      await fsp.rm(path.join(WORK, 'scratch'), { recursive: true, force: true });
    }
  }
  result.loadAverageEnd = os.loadavg();
  await fsp.mkdir(path.dirname(RESULTS), { recursive: true });
  await fsp.writeFile(RESULTS, JSON.stringify(result, null, 2) + '\n');
  report(result, redirect);
}

// ------------------------------------------------------------------------------------------------
// the table

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

function report(result: Record<string, unknown>, redirect: boolean): void {
  type PullMode = { median: Record<string, number>; ratioS3ToFs: number; ratioS3ToNginx: number; ratioRedirectToFs?: number; ratioRedirectToNginx?: number };
  const pull = result.pull as Record<Mode, PullMode>;
  type PushSide = { medianSeconds: number; objectsPerSecond: number; mbPerSecond: number; serverCpuSeconds: number; s3RequestsPerObject: number; runs: PushRun[] };
  const push = result.push as { fs: PushSide; s3: PushSide; ratioSecondsS3ToFs: number };
  const out: string[] = [''];
  const kinds: Kind[] = ['nginx', 'fs', 's3', ...(redirect ? (['s3-redirect'] as const) : [])];
  const g = result.gateway as Awaited<ReturnType<typeof probeGateway>>;
  out.push(
    `S3 gateway alone (1 KiB object): HEAD ${g.headMs.toFixed(2)} ms, GET ${(g.getHeadMs + g.getBodyMs).toFixed(2)} ms (body ${g.getBodyMs.toFixed(2)} ms after the head)` +
      (g.nagleStall ? ': NAGLE STALL, every GET through the gateway pays ~40 ms (RGW beast: tcp_nodelay=1)' : ''),
  );
  out.push(`pull (median seconds of ${opts.rounds}, stock ostree client, ${(result.repo as TreeRepo).files} files; load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')})`);
  out.push(
    table([
      ['mode', ...kinds.map((k) => (k === 'nginx' ? 'nginx' : `cairn ${k}`)), 's3/fs', 's3/nginx', ...(redirect ? ['redirect/fs', 'redirect/nginx'] : [])],
      ...(['archive', 'bare-user'] as const).map((m) => {
        const p = pull[m];
        return [m, ...kinds.map((k) => p.median[k]!.toFixed(2)), p.ratioS3ToFs.toFixed(2), p.ratioS3ToNginx.toFixed(2), ...(redirect ? [p.ratioRedirectToFs!.toFixed(2), p.ratioRedirectToNginx!.toFixed(2)] : [])];
      }),
    ]),
  );
  out.push('');
  out.push(`push (cairn push --jobs ${opts.jobs} to a fresh Cairn, median of ${opts.pushRounds}; ${push.fs.runs[0]?.uploaded ?? 0} objects, ${((push.fs.runs[0]?.bytes ?? 0) / 1e6).toFixed(1)} MB)`);
  out.push(
    table([
      ['backend', 'seconds', 'objects/s', 'MB/s', 'server CPU s', 'S3 req/object'],
      ...(['fs', 's3'] as const).map((b) => [b, push[b].medianSeconds.toFixed(2), push[b].objectsPerSecond.toFixed(0), push[b].mbPerSecond.toFixed(1), push[b].serverCpuSeconds.toFixed(2), b === 's3' ? push[b].s3RequestsPerObject.toFixed(2) : '']),
      ['s3/fs (time)', push.ratioSecondsS3ToFs.toFixed(2), '', '', '', ''],
    ]),
  );
  type Prof = ReturnType<typeof profile>;
  const rp = result.readPath as { s3ColdArchive: Prof; s3Archive: Prof[]; fsArchive: Prof[] };
  const show = (title: string, p: Prof, fsp_?: Prof) => {
    out.push('');
    out.push(
      `${title}: ${p.clientRequests} client requests, ${p.s3Requests} S3 requests (${p.s3RequestsPerClientRequest.toFixed(2)} per client request), ` +
        `${(p.s3Ms / 1000).toFixed(2)} s waiting on S3 (${p.s3MsPerClientRequest.toFixed(2)} ms per client request), ` +
        `Cairn ${(p.cairnMsTotal / 1000).toFixed(2)} s answering, CPU ${p.serverCpuSeconds.toFixed(2)} s`,
    );
    const ops = Object.keys(p.ops).sort();
    const rows = [['client request', 'count', 'cairn ms (median)', ...(fsp_ ? ['fs ms (median)'] : []), ...ops.map((o) => `${o} n / ms mean`)]];
    const cell = (m: Record<string, { n: number; ms: number }> | undefined, o: string) => (m?.[o] ? `${m[o]!.n} / ${(m[o]!.ms / m[o]!.n).toFixed(2)}` : '');
    for (const [cls, e] of Object.entries(p.byClass).sort((a, b) => b[1].requests - a[1].requests)) {
      rows.push([cls, String(e.requests), e.cairnMsMedian.toFixed(2), ...(fsp_ ? [fsp_.byClass[cls]?.cairnMsMedian.toFixed(2) ?? ''] : []), ...ops.map((o) => cell(p.s3ByKind[cls], o))]);
    }
    for (const [kind, m] of Object.entries(p.s3ByKind)) {
      if (!p.byClass[kind]) rows.push([`(no client request) ${kind}`, '', '', ...(fsp_ ? [''] : []), ...ops.map((o) => cell(m, o))]);
    }
    out.push(table(rows));
  };
  show('S3 read path, first pull (empty file cache), archive', rp.s3ColdArchive);
  if (rp.s3Archive.length) show('S3 read path, a measured archive pull (warm file cache)', rp.s3Archive[rp.s3Archive.length - 1]!, rp.fsArchive[rp.fsArchive.length - 1]);
  out.push('', `results: ${path.relative(ROOT, RESULTS)}`);
  process.stdout.write(out.join('\n') + '\n');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench:s3 failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
