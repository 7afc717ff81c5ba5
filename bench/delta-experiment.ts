// Scratch experiment for issue 9 item 5: which delta layout makes the stock 2022.7 client download
// the fewest bytes for the root filesystem update. Not part of `npm run bench:delta`.
//
//   node dist-bench/bench/delta-experiment.js [--reps N] [--variants a,b] [--pair rootfs-update]
//
// Uses bench:delta's cached archive repo (run bench:delta once first). The repo is linked
// (cp -al, objects only) into a scratch data folder, so bench:delta's own deltas are untouched.
// For each variant of CompileOptions, the v1→v2 delta is compiled into the scratch repo, the
// summary regenerated, `cairn serve` started on it (the repo is not owned by Cairn: no delta jobs),
// and copies of one bare-user client at v1 pull v2 with --require-static-deltas; the bytes Cairn
// sent are split as in bench/delta-serve.ts. One object-path pull is the reference.
// Writes bench/results/delta-experiment.json and the request logs under WORK/experiment/logs.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FsBackend } from '../storage/backends/fs';
import { compileDelta, type CompileOptions } from '../storage/deltas/compile';
import { decodeSuperblock, encodeSuperblock, inlinePart, inlinePartEntry, partKey, superblockKey, type PartHeader } from '../storage/deltas/format';
import { ObjectType } from '../storage/objects/types';
import { readContentInfo } from '../storage/deltas/objects-io';
import { Repo } from '../storage/repo/repo';
import { updateSummary } from '../storage/repo/summary';
import { projectRoot, startCairn } from '../test/helpers/cairn-process';
import { addRemote, initRepo, ostree, ostreeResult, revParse, run } from '../test/helpers/ostree';
import { argv } from './common';
import { classify, servedDelta, type PullBytes, type ServeContext } from './delta-serve';

const ROOT = projectRoot();
const WORK = path.resolve(process.env.CAIRN_BENCH_DIR || path.join(ROOT, 'bench', '.work', 'delta'));
const SRC = path.join(WORK, 'data', 'repos', 'bench');
const EXP = path.join(WORK, 'experiment');
const log = (s: string) => process.stderr.write(`${s}\n`);
const opt = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i < 0 ? undefined : argv[i + 1];
};

/**
 * How the compiled parts are rearranged afterwards (whole parts only: each part is self-contained,
 * so any order and any inline/separate choice is a valid delta):
 *   metalast  parts holding only metadata (dirtree, dirmeta) moved after the content parts
 *   reverse   all parts in reverse order
 *   inline    every part inside the superblock (the 2022.7 client rejects a superblock over 10 MiB)
 */
type Relayout = 'metalast' | 'reverse' | 'inline' | 'metalast-inline' | 'inline-half' | 'inline-x3';

interface Variant {
  options: CompileOptions;
  relayout?: Relayout;
  /** Inline parts up to this superblock size; parts that do not fit become fallbacks (see budgetLayout). */
  budget?: number;
}

/**
 * Everything inline up to `budget` bytes of superblock; parts are kept by what they save against
 * their objects' loose size (metadata parts always: the client refuses metadata fallbacks); the
 * objects of the parts left out become fallbacks, which the client fetches as loose objects at
 * once, exactly as the object path would: no byte is downloaded twice.
 */
async function budgetLayout(repo: Repo, from: string, to: string, budget: number): Promise<void> {
  const sbKey = superblockKey(from, to);
  const sb = decodeSuperblock((await repo.backend.read(sbKey))!.data);
  const files: Buffer[] = [];
  for (let i = 0; i < sb.parts.length; i++) files.push(inlinePart(sb, i) ?? (await repo.backend.read(partKey(from, to, i)))!.data);
  const info = new Map<string, { size: number; storedSize: number }>();
  const loose: number[] = [];
  for (const h of sb.parts) {
    let n = 0;
    for (const o of h.objects) {
      if (o.type !== ObjectType.File) continue;
      const i = await readContentInfo(repo, o.checksum);
      info.set(o.checksum, i);
      n += i.storedSize;
    }
    loose.push(n);
  }
  const hasMeta = (i: number) => sb.parts[i]!.objects.some((o) => o.type !== ObjectType.File);
  const keep = new Set(sb.parts.map((_, i) => i).filter(hasMeta));
  let used = encodeSuperblock({ ...sb, parts: [], metadata: sb.metadata.filter(([k]) => !/\/\d+$/.test(k)) }).length + 200 * sb.parts.length;
  for (const i of keep) used += files[i]!.length + 40 * sb.parts[i]!.objects.length;
  const rest = sb.parts.map((_, i) => i).filter((i) => !keep.has(i)).sort((a, b) => loose[b]! / files[b]!.length - loose[a]! / files[a]!.length);
  for (const i of rest) {
    const cost = files[i]!.length + 40 * sb.parts[i]!.objects.length;
    if (loose[i]! > files[i]!.length && used + cost <= budget) {
      keep.add(i);
      used += cost;
    }
  }
  const order = sb.parts.map((_, i) => i).filter((i) => keep.has(i));
  const fallbacks = [...sb.fallbacks];
  for (let i = 0; i < sb.parts.length; i++) {
    if (keep.has(i)) continue;
    for (const o of sb.parts[i]!.objects) {
      const c = info.get(o.checksum)!;
      fallbacks.push({ type: ObjectType.File, checksum: o.checksum, compressedSize: c.storedSize, size: c.size });
    }
  }
  const base = sb.metadata.filter(([k]) => !/\/\d+$/.test(k));
  const metadata = [...base.filter(([k]) => !k.endsWith('/commitmeta'))];
  order.forEach((i, j) => metadata.push(inlinePartEntry(from, to, j, files[i]!)));
  metadata.push(...base.filter(([k]) => k.endsWith('/commitmeta')));
  for (let j = 0; j < sb.parts.length; j++) await repo.backend.remove(partKey(from, to, j)).catch(() => undefined);
  await repo.backend.write(sbKey, encodeSuperblock({ ...sb, metadata, parts: order.map((i) => sb.parts[i]!), fallbacks }));
}

async function relayout(repo: Repo, from: string, to: string, how: Relayout): Promise<void> {
  const sbKey = superblockKey(from, to);
  const sb = decodeSuperblock((await repo.backend.read(sbKey))!.data);
  const files: Buffer[] = [];
  for (let i = 0; i < sb.parts.length; i++) files.push(inlinePart(sb, i) ?? (await repo.backend.read(partKey(from, to, i)))!.data);
  let order = sb.parts.map((_, i) => i);
  const metaOnly = (h: PartHeader) => h.objects.every((o) => o.type !== ObjectType.File);
  if (how === 'metalast' || how === 'metalast-inline') order = [...order.filter((i) => !metaOnly(sb.parts[i]!)), ...order.filter((i) => metaOnly(sb.parts[i]!))];
  if (how === 'reverse') order.reverse();
  // inline-x3: every part three times, inline. Three copies of a part are three outstanding part
  // executions: the client's fetch queue stays closed until the first copy has written every
  // object of the part (for a delta of one heavy part: a large bsdiff), and the later copies find
  // the objects there. Costs the part's bytes twice more.
  if (how === 'inline-x3') order = order.flatMap((i) => [i, i, i]);
  const inline = how === 'inline' || how === 'metalast-inline' || how === 'inline-x3';
  // inline-half: the first half of the parts inline, the rest separate files (what a delta over the
  // client's 10 MiB superblock limit could do)
  const inlineCount = how === 'inline-half' ? Math.ceil(sb.parts.length / 2) : inline ? order.length : 0;
  const keep = sb.metadata.filter(([k]) => !/\/\d+$/.test(k));
  const parts = order.map((i) => sb.parts[i]!);
  const metadata = [...keep.filter(([k]) => !k.endsWith('/commitmeta'))];
  order.forEach((i, j) => {
    if (j < inlineCount) metadata.push(inlinePartEntry(from, to, j, files[i]!));
  });
  metadata.push(...keep.filter(([k]) => k.endsWith('/commitmeta')));
  for (let j = 0; j < Math.max(order.length, sb.parts.length); j++) {
    if (j < inlineCount || j >= order.length) await repo.backend.remove(partKey(from, to, j)).catch(() => undefined);
    else await repo.backend.write(partKey(from, to, j), files[order[j]!]!);
  }
  await repo.backend.write(sbKey, encodeSuperblock({ ...sb, metadata, parts }));
}

const MB = 1000 * 1000;
const OPTIONS: Record<string, CompileOptions> = {
  default: {},
  'parts-8M': { maxPartSize: 8 * MB },
  'parts-4M': { maxPartSize: 4 * MB },
  'nofallback-2M': { minFallbackSize: 0, maxPartSize: 2 * MB },
  'nofallback-4M': { minFallbackSize: 0, maxPartSize: 4 * MB },
  'parts-2M': { maxPartSize: 2 * MB },
  'parts-1M': { maxPartSize: 1 * MB },
  'parts-512k': { maxPartSize: 512 * 1000 },
  'parts-256k': { maxPartSize: 256 * 1000 },
  'parts-128k': { maxPartSize: 128 * 1000 },
  'nofallback': { minFallbackSize: 0 },
  'nofallback-1M': { minFallbackSize: 0, maxPartSize: 1 * MB },
  'nofallback-256k': { minFallbackSize: 0, maxPartSize: 256 * 1000 },
  inline: { inline: true },
};
const VARIANTS: Record<string, Variant> = Object.fromEntries(Object.entries(OPTIONS).map(([k, v]) => [k, { options: v }]));
for (const size of ['4M', '2M', '1M', '512k', '256k', '128k']) {
  const o = OPTIONS[`parts-${size}`]!;
  VARIANTS[`parts-${size}-metalast`] = { options: o, relayout: 'metalast' };
  VARIANTS[`parts-${size}-reverse`] = { options: o, relayout: 'reverse' };
  VARIANTS[`inline-${size}`] = { options: o, relayout: 'inline' };
  VARIANTS[`inline-${size}-metalast`] = { options: o, relayout: 'metalast-inline' };
  VARIANTS[`half-inline-${size}`] = { options: o, relayout: 'inline-half' };
}
const MiB = 1024 * 1024;
VARIANTS['inline-x3'] = { options: {}, relayout: 'inline-x3' };
VARIANTS['inline-x3-nofallback'] = { options: { minFallbackSize: 0 }, relayout: 'inline-x3' };
VARIANTS['budget-4MiB-256k'] = { options: OPTIONS['parts-256k']!, budget: 4 * MiB };
VARIANTS['budget-4MiB-1M'] = { options: OPTIONS['parts-1M']!, budget: 4 * MiB };
VARIANTS['budget-9.5MiB-1M'] = { options: OPTIONS['parts-1M']!, budget: 9.5 * MiB };
VARIANTS['budget-9.5MiB-nofallback-1M'] = { options: OPTIONS['nofallback-1M']!, budget: 9.5 * MiB };
VARIANTS['budget-9.5MiB-nofallback-2M'] = { options: OPTIONS['nofallback-2M']!, budget: 9.5 * MiB };
for (const size of ['1M', '2M', '4M']) {
  VARIANTS[`inline-nofallback-${size}`] = { options: OPTIONS[`nofallback-${size}`]!, relayout: 'inline' };
}

async function main(): Promise<void> {
  const built = JSON.parse(await fsp.readFile(path.join(WORK, 'built.json'), 'utf8')) as { base: string; rootfsV2: string; shapes: Record<string, { from: string; to: string }> };
  const pairName = opt('pair') ?? 'rootfs-update';
  const pair = pairName === 'rootfs-update' ? { ref: 'bench/rootfs', from: built.base, to: built.rootfsV2 } : { ref: `bench/shape/${pairName}`, ...built.shapes[pairName]! };
  const reps = Number(opt('reps') ?? 2);
  const names = (opt('variants') ?? Object.keys(VARIANTS).join(',')).split(',').filter(Boolean);

  const data = path.join(EXP, 'data');
  const repoDir = path.join(data, 'repos', 'exp');
  if (!(await fsp.stat(repoDir).catch(() => null))) {
    await fsp.mkdir(path.dirname(repoDir), { recursive: true });
    await run('cp', ['-al', SRC, repoDir]);
  }
  for (const sub of ['deltas', 'delta-indexes', 'summary', 'summary.sig']) await fsp.rm(path.join(repoDir, sub), { recursive: true, force: true });
  const repo = new Repo('exp', new FsBackend(repoDir));
  await updateSummary(repo);

  const server = await startCairn({ dataDir: data, env: { CAIRN_LOG: 'info' }, extraArgs: ['--workers', 'auto'], timeoutMs: 60_000 });
  const ctx: ServeContext = { server, data, repoName: 'exp', token: '', source: SRC, stop: () => server.stop() };
  const url = `${server.url}/repo/exp`;
  const clients = path.join(EXP, 'clients');
  const template = path.join(clients, pairName === 'rootfs-update' ? 'template' : `template-${pairName}`);
  const logs = path.join(EXP, 'logs');
  await fsp.mkdir(logs, { recursive: true });
  const results: Array<{ variant: string; options: CompileOptions; layout: unknown; compileMs: number; pulls: PullBytes[] }> = [];
  try {
    if (!(await fsp.stat(path.join(template, 'config')).catch(() => null))) {
      await fsp.rm(template, { recursive: true, force: true });
      await initRepo(template, 'bare-user');
      await addRemote(template, 'cairn', url);
      log(`client template: pulling v1 ${pair.from.slice(0, 10)} …`);
      await ostree(['pull', 'cairn', `${pair.ref}@${pair.from}`], { repo: template, timeoutMs: 30 * 60_000 });
    }
    await ostree(['remote', 'delete', 'cairn'], { repo: template }).catch(() => '');
    await addRemote(template, 'cairn', url);

    const pull = async (args: string[], fallbackSet: Set<string>, tag: string): Promise<PullBytes> => {
      const c = path.join(clients, 'c');
      await fsp.rm(c, { recursive: true, force: true });
      await run('cp', ['-a', template, c]);
      const mark = server.requests().length;
      const t0 = performance.now();
      const r = await ostreeResult(['pull', ...args, 'cairn', pair.ref], { repo: c, timeoutMs: 30 * 60_000 });
      const seconds = (performance.now() - t0) / 1000;
      if (r.code !== 0) throw new Error(`pull failed: ${r.stderr.slice(-500)}`);
      if ((await revParse(c, `cairn:${pair.ref}`)) !== pair.to) throw new Error('not at v2');
      if (argv.includes('--fsck')) {
        const f = await ostreeResult(['fsck'], { repo: c, timeoutMs: 30 * 60_000 });
        if (f.code !== 0) throw new Error(`ostree fsck failed after ${tag}: ${(f.stderr || f.stdout).slice(-500)}`);
        log(`  ${tag}: ostree fsck clean`);
      }
      let n = -1;
      for (let i = 0; i < 50; i++) {
        await new Promise((res) => setTimeout(res, 300));
        if (server.requests().length === n) break;
        n = server.requests().length;
      }
      const reqs = server.requests().slice(mark);
      await fsp.writeFile(path.join(logs, `${tag}.jsonl`), reqs.map((x) => JSON.stringify(x)).join('\n') + '\n');
      await fsp.rm(c, { recursive: true, force: true });
      return classify(reqs, fallbackSet, seconds);
    };

    if (!opt('variants') || names.includes('objects')) {
      const o = await pull(['--disable-static-deltas'], new Set(), 'objects');
      log(`objects: ${o.total} bytes in ${o.requests} requests (${o.seconds.toFixed(1)} s)`);
      results.push({ variant: 'object path', options: {}, layout: null, compileMs: 0, pulls: [o] });
    }
    for (const name of names) {
      if (name === 'objects') continue;
      const variant = VARIANTS[name];
      if (!variant) throw new Error(`unknown variant ${name} (have: ${Object.keys(VARIANTS).join(' ')})`);
      const options = variant.options;
      const t0 = performance.now();
      await compileDelta(repo, pair.from, pair.to, { ...options, replace: true });
      if (variant.relayout) await relayout(repo, pair.from, pair.to, variant.relayout);
      if (variant.budget) await budgetLayout(repo, pair.from, pair.to, variant.budget);
      const compileMs = performance.now() - t0;
      await updateSummary(repo);
      const { fallbackSet, layout } = await servedDelta(ctx, pair.from, pair.to);
      const pulls: PullBytes[] = [];
      for (let i = 0; i < reps; i++) {
        const b = await pull(['--require-static-deltas'], fallbackSet, `${name}-${i + 1}`);
        pulls.push(b);
        log(
          `${name.padEnd(16)} #${i + 1}: total ${b.total} = sb+parts ${b.delta} (${layout.parts.length} parts) + fallbacks ${b.fallbacks} (${b.fallbackRequests}) + loose ${b.loose} ` +
            `(${b.looseContentRequests} content ${b.looseContent} B, ${b.looseMetaRequests} meta ${b.looseMeta} B) + other ${b.other}; ${b.seconds.toFixed(1)} s`,
        );
      }
      results.push({ variant: name, options: { ...options, relayout: variant.relayout, budget: variant.budget } as CompileOptions, layout, compileMs, pulls });
      await fsp.mkdir(path.join(ROOT, 'bench', 'results'), { recursive: true });
      await fsp.writeFile(path.join(ROOT, 'bench', 'results', 'delta-experiment.json'), JSON.stringify({ date: new Date().toISOString(), pair: { name: pairName, ...pair }, results }, null, 2) + '\n');
    }
  } finally {
    await server.stop();
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
