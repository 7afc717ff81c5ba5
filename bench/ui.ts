// Web UI benchmark (issue 10): time to first byte and full load of the tree page of a
// 100,000-file commit and of the history page of a 10,000-commit ref, cold and warm, in
// Debian's Chromium (playwright-core) against `cairn serve`.
//
//   npm run bench:ui                         (builds first; see package.json)
//   node dist/bench/ui.js [--cold N] [--warm N] [--workers N]
//
// Options: --cold N   cold loads per page (default 3): each on a freshly started server
//                      (nothing memoised: dirtrees, commits, file headers are read from disk)
//                      and in a fresh browser context (no HTTP cache);
//          --warm N   warm loads per page (default 5): the same server and browser context
//                      again (assets and immutable API answers cached by the browser, the
//                      server's memos filled).
// Env: CAIRN_BENCH_DIR (work folder; default bench/.work; the generated repository is kept
// there and reused). Writes bench/results/ui-latest.json.
//
// The repository is written with the storage layer directly (object files and a ref through
// updateRefs; no fsync per object, it is set-up): one commit whose /big holds 100,000 files of
// distinct contents (and a few small folders), and a chain of 10,000 commits over a small tree.
//
// Figures per load, from the page's own clocks (Navigation and Resource Timing, and the mark
// `cairn:list-rendered` the UI sets when a list's first page is in the document):
//   ttfb     navigation start → first byte of the HTML
//   api      the first API page's request: start → last byte
//   list     navigation start → the list's first page rendered (the "full load": the page is
//            usable; further pages load as the operator scrolls)
// A benchmark, never a test: it reports figures, it does not fail.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { deflateRawSync } from 'node:zlib';
import type { Browser, BrowserContext } from 'playwright-core';
import { FsBackend } from '../storage/backends/fs';
import { sha256Hex } from '../storage/objects/checksum';
import { encodeCommit } from '../storage/objects/commit';
import { contentChecksumOf, encodeArchiveHeader, type FileHeader } from '../storage/objects/content';
import { encodeDirMeta } from '../storage/objects/dirmeta';
import { encodeDirTree, type DirTreeFile } from '../storage/objects/dirtree';
import { ObjectType, objectKey } from '../storage/objects/types';
import { updateRefs } from '../storage/repo/publish';
import { Repo } from '../storage/repo/repo';
import { projectRoot, startCairn, type CairnProcess } from '../test/helpers/cairn-process';
import { launchChromium } from '../test/ui/browser';
import { machineInfo, numberOption } from './common';

const ROOT = projectRoot();
const WORK = path.resolve(process.env.CAIRN_BENCH_DIR ?? path.join(ROOT, 'bench', '.work'), 'ui');
const DATA = path.join(WORK, 'data');
const REPO = 'bench';
const FILES = 100_000;
const COMMITS = 10_000;
const SHAPE = { files: FILES, commits: COMMITS, version: 1 };
const RESULTS = path.join(ROOT, 'bench', 'results', 'ui-latest.json');

interface Built {
  big: string;
  head: string;
}

async function buildRepo(): Promise<Built> {
  const marker = path.join(WORK, 'repo.json');
  try {
    const m = JSON.parse(await fsp.readFile(marker, 'utf8')) as Built & { shape: unknown };
    if (JSON.stringify(m.shape) === JSON.stringify(SHAPE)) return m;
  } catch {
    // build it
  }
  await fsp.rm(WORK, { recursive: true, force: true });
  const dir = path.join(DATA, 'repos', REPO);
  await fsp.mkdir(dir, { recursive: true });
  const t0 = performance.now();
  const repo = await Repo.init(REPO, new FsBackend(dir));
  const made = new Set<string>();
  const put = (type: ObjectType, data: Buffer, checksum = sha256Hex(data)): string => {
    const file = path.join(dir, objectKey(checksum, type));
    const d = path.dirname(file);
    if (!made.has(d)) {
      fs.mkdirSync(d, { recursive: true });
      made.add(d);
    }
    fs.writeFileSync(file, data);
    return checksum;
  };
  const header: FileHeader = { uid: 0, gid: 0, mode: 0o100644, symlinkTarget: '', xattrs: [] };
  const file = (text: string): string => {
    const body = Buffer.from(text);
    return put(ObjectType.File, Buffer.concat([encodeArchiveHeader(header, body.length), deflateRawSync(body, { level: 6 })]), contentChecksumOf(header, body));
  };
  const meta = put(ObjectType.DirMeta, encodeDirMeta({ uid: 0, gid: 0, mode: 0o40755, xattrs: [] }));
  const files: DirTreeFile[] = [];
  for (let i = 0; i < FILES; i++) {
    const name = `file-${String(i).padStart(6, '0')}.conf`;
    files.push({ name, checksum: file(`# ${name}\nvalue=${i}\n`) });
    if (i % 10_000 === 9_999) process.stdout.write(`  ${i + 1} files\n`);
  }
  const bigTree = put(ObjectType.DirTree, encodeDirTree({ files, dirs: [] }));
  const small = (n: number) => put(ObjectType.DirTree, encodeDirTree({ files: Array.from({ length: n }, (_, i) => ({ name: `f${i}`, checksum: file(`small ${n} ${i}\n`) })), dirs: [] }));
  const etc = small(20);
  const bin = small(10);
  const root = put(
    ObjectType.DirTree,
    encodeDirTree({
      files: [{ name: 'README', checksum: file('100,000 files in /big\n') }],
      dirs: [
        { name: 'big', treeChecksum: bigTree, metaChecksum: meta },
        { name: 'bin', treeChecksum: bin, metaChecksum: meta },
        { name: 'etc', treeChecksum: etc, metaChecksum: meta },
      ],
    }),
  );
  const big = put(ObjectType.Commit, encodeCommit({ metadata: [], parent: null, subject: '100,000 files', body: '', timestamp: 1_700_000_000n, rootTree: root, rootMeta: meta }));
  // The chain: each commit over a small tree of its own version file (a tiny change per commit).
  let parent: string | null = null;
  for (let i = 0; i < COMMITS; i++) {
    const tree = put(ObjectType.DirTree, encodeDirTree({ files: [{ name: 'version', checksum: file(`${i}\n`) }], dirs: [{ name: 'etc', treeChecksum: etc, metaChecksum: meta }] }));
    parent = put(ObjectType.Commit, encodeCommit({ metadata: [], parent, subject: `release ${i}`, body: '', timestamp: BigInt(1_700_000_000 + i * 60), rootTree: tree, rootMeta: meta }));
  }
  const head = parent!;
  await updateRefs(repo, [
    { ref: 'os/big', commit: big, expected: null },
    { ref: 'os/long', commit: head, expected: null },
  ], { actor: 'bench' });
  const built = { big, head };
  await fsp.writeFile(marker, JSON.stringify({ shape: SHAPE, ...built }));
  process.stdout.write(`built ${FILES} files and ${COMMITS} commits in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return built;
}

interface Load {
  ttfb: number;
  api: number;
  list: number;
  rows: number;
}

async function load(context: BrowserContext, url: string, apiPart: string): Promise<Load> {
  const page = await context.newPage();
  try {
    await page.goto(url, { waitUntil: 'commit' });
    await page.waitForFunction(() => performance.getEntriesByName('cairn:list-rendered').length > 0, undefined, { timeout: 120_000 });
    const r = await page.evaluate((part) => {
      const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
      const mark = performance.getEntriesByName('cairn:list-rendered')[0]!;
      const api = (performance.getEntriesByType('resource') as PerformanceResourceTiming[]).find((e) => e.name.includes(part));
      const rows = document.querySelector('tbody[data-rows]')?.getAttribute('data-rows');
      return { ttfb: nav.responseStart - nav.startTime, api: api ? api.responseEnd - api.startTime : NaN, list: mark.startTime - nav.startTime, rows: Number(rows) };
    }, apiPart);
    return r;
  } finally {
    await page.close();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const coldRuns = numberOption('cold', 3, { integer: true });
  const warmRuns = numberOption('warm', 5, { integer: true });
  const workers = String(numberOption('workers', 1, { integer: true }));
  const built = await buildRepo();
  const pages = [
    { name: 'tree of /big (100,000 files)', path: `/ui/repos/${REPO}/commits/${built.big}/tree?path=%2Fbig`, api: '/tree?' },
    { name: 'history of os/long (10,000 commits)', path: `/ui/repos/${REPO}/history?ref=os%2Flong`, api: '/history?' },
  ];
  const browser: Browser = await launchChromium();
  const chromiumVersion = browser.version();
  const results: Array<{ page: string; mode: 'cold' | 'warm'; loads: Load[]; median: Omit<Load, 'rows'> }> = [];
  let server: CairnProcess | undefined;
  const start = () => startCairn({ dataDir: DATA, extraArgs: ['--workers', workers], env: { CAIRN_LOG: 'warn' } });
  try {
    for (const p of pages) {
      const cold: Load[] = [];
      for (let i = 0; i < coldRuns; i++) {
        server = await start();
        const ctx = await browser.newContext();
        cold.push(await load(ctx, server.url + p.path, p.api));
        await ctx.close();
        if (i < coldRuns - 1) {
          await server.stop();
          server = undefined;
        }
      }
      // Warm: the last cold server and a context that has loaded the page once.
      server ??= await start();
      const ctx = await browser.newContext();
      await load(ctx, server.url + p.path, p.api);
      const warm: Load[] = [];
      for (let i = 0; i < warmRuns; i++) warm.push(await load(ctx, server.url + p.path, p.api));
      await ctx.close();
      await server.stop();
      server = undefined;
      for (const [mode, loads] of [['cold', cold], ['warm', warm]] as const) {
        const m = { ttfb: median(loads.map((l) => l.ttfb)), api: median(loads.map((l) => l.api)), list: median(loads.map((l) => l.list)) };
        results.push({ page: p.name, mode, loads, median: m });
        process.stdout.write(`${p.name.padEnd(40)} ${mode}  ttfb ${m.ttfb.toFixed(1)} ms  first API page ${m.api.toFixed(1)} ms  list rendered ${m.list.toFixed(1)} ms  (${loads[0]?.rows} rows shown, medians of ${loads.length})\n`);
      }
    }
  } finally {
    await server?.stop();
    await browser.close();
  }
  await fsp.mkdir(path.dirname(RESULTS), { recursive: true });
  await fsp.writeFile(RESULTS, `${JSON.stringify({ date: new Date().toISOString(), machine: machineInfo(), workers, chromium: chromiumVersion, results }, null, 2)}\n`);
  process.stdout.write(`results: ${path.relative(ROOT, RESULTS)}\n`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
