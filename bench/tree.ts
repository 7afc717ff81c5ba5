import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { commitTree, initRepo, pseudoRandomBytes, updateSummary } from '../test/helpers/ostree';
import { mulberry32 } from '../test/helpers/prng';
import { readCachedRepo, writeCachedRepo } from './common';

// The generated tree the read-path benchmarks pull (bench/pull.ts, bench/s3.ts): deterministic,
// realistic shape.

/** Bump when the tree's shape changes: cached repositories are rebuilt. */
const SHAPE_VERSION = 1;


const rng = mulberry32;

const WORDS = (
  'the of and to in is that for it as with was on be by this are from or at an which not have ' +
  'config service module kernel driver library system user value return error option default file ' +
  'path version package install update buffer memory thread socket stream handler request response ' +
  'struct function const static void int char unsigned size_t include define ifdef endif namespace'
)
  .split(' ')
  .map((w) => Buffer.from(w));

/** Text-like bytes: words, punctuation, newlines (compresses roughly 3–4×). */
function textBytes(r: () => number, size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  while (o < size) {
    const w = WORDS[Math.floor(r() * WORDS.length)]!;
    o += w.copy(out, o, 0, Math.min(w.length, size - o));
    if (o < size) out[o++] = r() < 0.08 ? 0x0a : r() < 0.05 ? 0x2c : 0x20;
  }
  return out;
}

/** Binary-like bytes: random runs, zero padding and repeated tables (compresses roughly 1.5–2×). */
function binaryBytes(r: () => number, seed: number, size: number): Buffer {
  const out = Buffer.alloc(size);
  const noise = pseudoRandomBytes(seed, Math.min(size, 256 * 1024));
  const table = pseudoRandomBytes(seed ^ 0x55aa, 512);
  let o = 0;
  while (o < size) {
    const kind = r();
    const len = Math.min(size - o, 64 + Math.floor(r() * 4096));
    if (kind < 0.5) {
      const from = Math.floor(r() * Math.max(1, noise.length - len));
      noise.copy(out, o, from, from + len);
    }
    else if (kind < 0.75) for (let i = 0; i < len; i += table.length) table.copy(out, o + i, 0, Math.min(table.length, len - i));
    // else: zeros
    o += len;
  }
  return out;
}

export interface Shape {
  version: number;
  files: number;
}

/** Returns the file list: relative path, size, kind, mode. */
function planTree(shape: Shape) {
  const r = rng(20261127);
  const files: { rel: string; size: number; kind: 'text' | 'binary' | 'random'; mode: number }[] = [];
  const dirs: string[] = [];
  const tops = ['usr/lib', 'usr/share', 'usr/bin', 'usr/lib/firmware', 'etc', 'opt/app', 'usr/include'];
  for (let i = 0; i < Math.max(20, Math.floor(shape.files / 20)); i++) {
    const top = tops[Math.floor(r() * tops.length)]!;
    const depth = 1 + Math.floor(r() * 3);
    let d = top;
    for (let k = 0; k < depth; k++) d += `/pkg${Math.floor(r() * 60)}${k ? `-sub${k}` : ''}`;
    dirs.push(d);
  }
  const large = Math.max(1, Math.round(shape.files * 0.005)); // ~30 files of 2–8 MB
  for (let i = 0; i < shape.files; i++) {
    const dir = dirs[Math.floor(r() * dirs.length)]!;
    let size: number;
    if (i < large) size = Math.floor(2e6 + r() * 6e6);
    else if (r() < 0.13) size = Math.floor(Math.exp(Math.log(16384) + r() * (Math.log(262144) - Math.log(16384))));
    else size = Math.floor(Math.exp(Math.log(100) + r() * (Math.log(16384) - Math.log(100))));
    const k = r();
    const kind = k < 0.4 ? 'text' : k < 0.8 ? 'binary' : 'random';
    const mode = dir.includes('/bin') || r() < 0.05 ? 0o755 : 0o644;
    files.push({ rel: `${dir}/f${i}${kind === 'text' ? '.txt' : '.bin'}`, size, kind, mode });
  }
  return { files, dirs };
}

/** What buildTreeRepo made (also the cache marker's content beside `shape`). */
export interface TreeRepo {
  commit: string;
  /** Bytes of file content in the tree. */
  bytes: number;
  files: number;
  /** Objects in the repository and their archived bytes. */
  objects: number;
  objectBytes: number;
}

/**
 * The benchmarks' realistic tree (about 0.5% large files of 2–8 MB, 13% of 16–256 kB, the rest
 * 100 B – 16 kB; text, binary-like and random bytes; symlinks, an empty folder), committed with the
 * real `ostree commit` into a fresh archive repository `repo` at `ref`, with a summary. Reused while
 * the marker `work/shape.json` says it was built for this many files and the ref still points at
 * its commit. `wipe` (the repository or a folder holding it) is removed before generating.
 */
export async function buildTreeRepo(o: { work: string; repo: string; ref: string; files: number; wipe: string; log: (s: string) => void }): Promise<TreeRepo> {
  const { work, repo, ref, log } = o;
  const shape: Shape = { version: SHAPE_VERSION, files: o.files };
  const marker = path.join(work, 'shape.json');
  const cached = await readCachedRepo<TreeRepo & { shape: Shape }>(marker, shape, repo, ref);
  if (cached) {
    log(`using the cached repo in ${repo} (${cached.files} files, ${(cached.bytes / 1e6).toFixed(0)} MB)`);
    return cached;
  }
  log(`generating a ${shape.files}-file tree in ${work} …`);
  await fsp.rm(o.wipe, { recursive: true, force: true });
  const src = path.join(work, 'src');
  await fsp.rm(src, { recursive: true, force: true });
  const plan = planTree(shape);
  let bytes = 0;
  for (const [i, f] of plan.files.entries()) {
    const r = rng(i * 2654435761);
    const data =
      f.kind === 'text' ? textBytes(r, f.size) : f.kind === 'binary' ? binaryBytes(r, i + 1, f.size) : pseudoRandomBytes(i + 7, f.size);
    const p = path.join(src, f.rel);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, data, { mode: f.mode });
    bytes += f.size;
  }
  for (let i = 0; i < 50; i++) {
    const f = plan.files[(i * 7) % plan.files.length]!;
    await fsp.symlink(`/${f.rel}`, path.join(src, `usr/lib/link-${i}`)).catch(() => undefined);
  }
  await fsp.mkdir(path.join(src, 'var/empty'), { recursive: true });
  log(`committing ${(bytes / 1e6).toFixed(0)} MB with ostree commit (archive) …`);
  const t0 = performance.now();
  await initRepo(repo, 'archive');
  const commit = await commitTree(repo, { branch: ref, tree: src, subject: 'bench', timestamp: '2026-11-27T00:00:00Z' });
  await updateSummary(repo);
  log(`committed ${commit} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await fsp.rm(src, { recursive: true, force: true });
  let objects = 0;
  let objectBytes = 0;
  for (const d of await fsp.readdir(path.join(repo, 'objects'))) {
    for (const f of await fsp.readdir(path.join(repo, 'objects', d))) {
      objects++;
      objectBytes += (await fsp.stat(path.join(repo, 'objects', d, f))).size;
    }
  }
  const m = { shape, commit, bytes, files: plan.files.length, objects, objectBytes };
  await writeCachedRepo(marker, m);
  return m;
}

