/**
 * `npm run bench:gc [-- --objects N] [--unreachable F] [--history H] [--dir DIR] [--keep] [--set-baseline]`
 * `npm run bench:gc -- --s3 [--objects N]`
 *
 * Garbage collection of a large repository: time and memory of gc's mark (a
 * Buffer-packed set, storage/maintenance/markset.ts) and sweep on N loose
 * objects (default 1,000,000), a fraction F of them unreachable (default 0.5).
 *
 * The repository is generated directly as files (no ostree, no fsync: it is
 * input, not what is measured): a ref whose commit has H ancestors (default
 * 10: the mark walks every commit's tree, skipping subtrees already marked),
 * each commit's root holding folders of 1,000 files; the reachable files are
 * split over the commits' own folders, so the history holds them all. The
 * unreachable ones are loose files no dirtree names. Contents are a few
 * random bytes (gc reads no content: only dirtrees and commits). Then:
 *   1. `gc --dry-run` (mark + full scan, nothing deleted);
 *   2. `gc` with a grace of 0 (mark + sweep deleting the unreachable objects);
 *   3. a second `gc` (nothing left to delete: the cost of a run on a clean repository).
 * Peak RSS and heap are sampled every 50 ms. With --set-baseline, the memory of
 * a JS Set of the N checksums as strings is measured too, for comparison.
 * Results: bench/results/gc-latest.json.
 *
 * With --s3: objects deleted a second by gc on S3 (a Ceph RADOS Gateway:
 * CAIRN_TEST_S3_ENDPOINT and its keys, or one started for the run as the S3
 * tests do, test/s3/ceph.ts). N garbage objects (default 5,000; 2% of them
 * commits, each with a .commitmeta) are uploaded below a fresh prefix of the
 * bucket `cairn-tests`, then one gc with a grace of 0 deletes them all (no
 * ref: nothing is reachable). Printed and written to
 * bench/results/gc-s3-latest.json: gc's seconds, objects deleted a second,
 * and the S3 requests it sent by kind. The prefix is emptied afterwards.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { FsBackend } from '../storage/backends/fs';
import { makeS3Client, S3Backend } from '../storage/backends/s3';
import { emptyPrefix, freshPrefix, s3TestStore } from '../test/s3/ceph';
import { gc, type GcReport } from '../storage/maintenance/gc';
import { encodeCommit } from '../storage/objects/commit';
import { encodeDirMeta, S_IFDIR } from '../storage/objects/dirmeta';
import { encodeDirTree } from '../storage/objects/dirtree';
import { sha256Hex } from '../storage/objects/checksum';
import { Repo } from '../storage/repo/repo';
import { argv, flag, numberOption } from './common';

const S3 = flag('s3');
const N = numberOption('objects', S3 ? 5000 : 1_000_000, { integer: true });
const unreachableFraction = (() => {
  const i = argv.indexOf('--unreachable');
  const v = i < 0 ? 0.5 : Number(argv[i + 1]);
  if (!(v >= 0 && v < 1)) throw new Error('--unreachable needs a fraction in [0, 1)');
  return v;
})();
const HISTORY = numberOption('history', 10, { integer: true });
const dirArg = argv.indexOf('--dir') >= 0 ? argv[argv.indexOf('--dir') + 1]! : path.join(os.tmpdir(), `cairn-bench-gc-${N}`);
const PER_FOLDER = 1000;

function checksumOf(i: number, salt: string): string {
  return createHash('sha256').update(`${salt}:${i}`).digest('hex');
}

function writeObject(root: string, checksum: string, ext: string, data: Buffer): void {
  const dir = path.join(root, 'objects', checksum.slice(0, 2));
  writeFileSync(path.join(dir, `${checksum.slice(2)}.${ext}`), data);
}

/** Generates the repository (or reuses one of the same shape); returns the head commit. */
function generate(root: string): { head: string; seconds: number; reused: boolean } {
  const shape = JSON.stringify({ N, unreachableFraction, HISTORY, PER_FOLDER, v: 1 });
  const marker = path.join(root, 'bench-shape.json');
  if (existsSync(marker)) {
    const m = JSON.parse(readFileSync(marker, 'utf8')) as { shape: string; head: string };
    if (m.shape === shape && existsSync(path.join(root, 'refs', 'heads', 'bench'))) return { head: m.head, seconds: 0, reused: true };
  }
  rmSync(root, { recursive: true, force: true });
  const started = performance.now();
  for (const d of ['objects', 'refs/heads', 'tmp', 'state']) mkdirSync(path.join(root, d), { recursive: true });
  for (let i = 0; i < 256; i++) mkdirSync(path.join(root, 'objects', i.toString(16).padStart(2, '0')));
  writeFileSync(path.join(root, 'config'), '[core]\nrepo_version=1\nmode=archive-z2\n');
  const meta = encodeDirMeta({ uid: 0, gid: 0, mode: S_IFDIR | 0o755, xattrs: [] });
  const metaSum = sha256Hex(meta);
  writeObject(root, metaSum, 'dirmeta', meta);

  const unreachable = Math.floor(N * unreachableFraction);
  const reachableFiles = N - unreachable;
  const blob = randomBytes(64);
  // Reachable files: folders of PER_FOLDER, spread over HISTORY commits (commit k adds its folders to k-1's).
  const folders: Array<{ name: string; tree: string }> = [];
  let parent: string | null = null;
  let done = 0;
  let progressAt = performance.now();
  for (let k = 0; k < HISTORY; k++) {
    const upto = Math.floor((reachableFiles * (k + 1)) / HISTORY);
    for (; done < upto; ) {
      const files: Array<{ name: string; checksum: string }> = [];
      for (let j = 0; j < PER_FOLDER && done < upto; j++, done++) {
        const c = checksumOf(done, 'file');
        writeObject(root, c, 'filez', blob);
        files.push({ name: `f${j}`, checksum: c });
      }
      const dt = encodeDirTree({ files, dirs: [] });
      const tree = sha256Hex(dt);
      writeObject(root, tree, 'dirtree', dt);
      folders.push({ name: `d${folders.length.toString().padStart(6, '0')}`, tree });
      if (performance.now() - progressAt > 5000) {
        process.stderr.write(`  generated ${done} reachable files\n`);
        progressAt = performance.now();
      }
    }
    const rootTree = encodeDirTree({ files: [], dirs: folders.map((f) => ({ name: f.name, treeChecksum: f.tree, metaChecksum: metaSum })) });
    const rootSum = sha256Hex(rootTree);
    writeObject(root, rootSum, 'dirtree', rootTree);
    const commit = encodeCommit({ metadata: [], parent, subject: `bench ${k}`, body: '', timestamp: BigInt(1_700_000_000 + k), rootTree: rootSum, rootMeta: metaSum });
    parent = sha256Hex(commit);
    writeObject(root, parent, 'commit', commit);
  }
  for (let i = 0; i < unreachable; i++) {
    writeObject(root, checksumOf(i, 'garbage'), 'filez', blob);
    if (performance.now() - progressAt > 5000) {
      process.stderr.write(`  generated ${i} unreachable files\n`);
      progressAt = performance.now();
    }
  }
  writeFileSync(path.join(root, 'refs', 'heads', 'bench'), `${parent}\n`);
  writeFileSync(marker, JSON.stringify({ shape, head: parent }));
  return { head: parent!, seconds: (performance.now() - started) / 1000, reused: false };
}

/** Runs `fn`, sampling peak RSS and heap every 50 ms. */
async function measured<T>(fn: () => Promise<T>): Promise<{ result: T; seconds: number; peakRssMB: number; peakHeapMB: number; rssBeforeMB: number }> {
  global.gc?.();
  const before = process.memoryUsage();
  let peakRss = before.rss;
  let peakHeap = before.heapUsed;
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  }, 50);
  const t = performance.now();
  try {
    const result = await fn();
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
    return { result, seconds: (performance.now() - t) / 1000, peakRssMB: peakRss / 1048576, peakHeapMB: peakHeap / 1048576, rssBeforeMB: before.rss / 1048576 };
  } finally {
    clearInterval(timer);
  }
}

function summary(r: GcReport) {
  const { sample: _s, ...rest } = r;
  return { ...rest, markMB: r.markBytes / 1048576 };
}

async function main(): Promise<void> {
  process.stderr.write(`bench:gc — ${N} objects, ${unreachableFraction * 100}% unreachable, history ${HISTORY}, in ${dirArg}\n`);
  const gen = generate(dirArg);
  process.stderr.write(gen.reused ? 'reusing the generated repository\n' : `generated in ${gen.seconds.toFixed(1)} s\n`);
  const repo = new Repo('bench', new FsBackend(dirArg));
  // Everything was written before now: a grace of 0 treats every unreachable object as old.
  await new Promise((r) => setTimeout(r, 20));

  const dry = await measured(() => gc(repo, { graceMs: 0, dryRun: true, onProgress: (l) => process.stderr.write(`  dry run: ${l}\n`) }));
  process.stderr.write(`dry run: ${dry.seconds.toFixed(1)} s, peak RSS ${dry.peakRssMB.toFixed(0)} MB (heap ${dry.peakHeapMB.toFixed(0)} MB), mark set ${(dry.result.markBytes / 1048576).toFixed(0)} MiB\n`);
  const real = await measured(() => gc(repo, { graceMs: 0, onProgress: (l) => process.stderr.write(`  gc: ${l}\n`) }));
  process.stderr.write(`gc: ${real.seconds.toFixed(1)} s, deleted ${real.result.deletedObjects}, peak RSS ${real.peakRssMB.toFixed(0)} MB\n`);
  const clean = await measured(() => gc(repo, { graceMs: 0 }));
  process.stderr.write(`gc on the clean repository: ${clean.seconds.toFixed(1)} s, peak RSS ${clean.peakRssMB.toFixed(0)} MB\n`);

  let setBaseline: { entries: number; heapMB: number } | undefined;
  if (flag('set-baseline')) {
    global.gc?.();
    const h0 = process.memoryUsage().heapUsed;
    const s = new Set<string>();
    for (let i = 0; i < N; i++) s.add(checksumOf(i, 'file'));
    global.gc?.();
    setBaseline = { entries: s.size, heapMB: (process.memoryUsage().heapUsed - h0) / 1048576 };
    process.stderr.write(`a Set of ${N} checksum strings: ${setBaseline.heapMB.toFixed(0)} MB of heap\n`);
  }

  const out = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, load: os.loadavg(), node: process.version },
    shape: { objects: N, unreachableFraction, history: HISTORY, perFolder: PER_FOLDER },
    generateSeconds: gen.reused ? null : gen.seconds,
    dryRun: { ...dry, result: summary(dry.result) },
    gc: { ...real, result: summary(real.result) },
    cleanGc: { ...clean, result: summary(clean.result) },
    setBaseline,
  };
  const file = path.join(__dirname, '..', '..', 'bench', 'results', 'gc-latest.json');
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, JSON.stringify(out, null, 2) + '\n');
  process.stderr.write(`results: ${file}\n`);
  if (!flag('keep')) await fsp.rm(dirArg, { recursive: true, force: true });
}

/** gc on S3: N garbage objects uploaded, then deleted by one gc; objects/s and requests by kind. */
async function mainS3(): Promise<void> {
  const store = await s3TestStore();
  const client = makeS3Client(store.settings);
  const requests = new Map<string, number>();
  let counting = false;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (counting) {
        const name = (context.commandName ?? '?').replace(/Command$/, '');
        requests.set(name, (requests.get(name) ?? 0) + 1);
      }
      return next(args);
    },
    { step: 'initialize', name: 'benchCount' },
  );
  const prefix = freshPrefix('bench-gc');
  const backend = new S3Backend(client, store.bucket, prefix);
  const repo = new Repo('bench', backend);
  const commits = Math.floor(N * 0.01);
  const keys: string[] = [];
  for (let i = 0; i < commits; i++) {
    const c = checksumOf(i, 'commit');
    keys.push(`objects/${c.slice(0, 2)}/${c.slice(2)}.commit`, `objects/${c.slice(0, 2)}/${c.slice(2)}.commitmeta`);
  }
  for (let i = keys.length; i < N; i++) {
    const c = checksumOf(i, 'garbage');
    keys.push(`objects/${c.slice(0, 2)}/${c.slice(2)}.filez`);
  }
  process.stderr.write(`bench:gc --s3 — ${N} garbage objects (${commits} commits with their .commitmeta) in ${backend.location}\n`);
  try {
    const up = performance.now();
    let next = 0;
    const blob = randomBytes(64);
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < keys.length) await backend.write(keys[next++]!, blob);
      }),
    );
    process.stderr.write(`uploaded in ${((performance.now() - up) / 1000).toFixed(1)} s\n`);
    await new Promise((r) => setTimeout(r, 1100)); // the store dates objects in whole seconds: all older than its "now"
    counting = true;
    const run = await measured(() => gc(repo, { graceMs: 0, onProgress: (l) => process.stderr.write(`  gc: ${l}\n`) }));
    counting = false;
    const perSecond = N / run.seconds; // every object went: the .commitmeta with their commits (gc counts commits, not their metadata)
    process.stderr.write(`gc: ${run.seconds.toFixed(1)} s, deleted ${run.result.deletedObjects} + ${commits} .commitmeta (${perSecond.toFixed(0)} objects/s); requests ${JSON.stringify(Object.fromEntries(requests))}\n`);
    if (run.result.deletedObjects !== N - commits) throw new Error(`gc deleted ${run.result.deletedObjects} objects, not ${N - commits}`);
    const out = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, load: os.loadavg(), node: process.version },
      shape: { objects: N, commits },
      gc: { seconds: run.seconds, deletedObjects: run.result.deletedObjects, objectsPerSecond: perSecond, peakRssMB: run.peakRssMB, requests: Object.fromEntries(requests) },
    };
    const file = path.join(__dirname, '..', '..', 'bench', 'results', 'gc-s3-latest.json');
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await fsp.writeFile(file, JSON.stringify(out, null, 2) + '\n');
    process.stderr.write(`results: ${file}\n`);
  } finally {
    await emptyPrefix(store, prefix);
  }
}

(S3 ? mainS3() : main()).catch((e: unknown) => {
  process.stderr.write(`bench:gc failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
