// bench:delta's serving half (issue 9 items 2 and 5): what a publisher and a host see from a real
// `cairn serve` with the default delta policy.
//
//   - time to delta: `cairn push` of v1, its jobs settled, then `cairn push` of v2; from the moment
//     that push is acknowledged (the process exits 0: the ref moved) until the v1→v2 superblock
//     URL answers 200, polled every POLL_MS. Compared by the caller with `ostree static-delta
//     generate --from=v1 --to=v2` measured in the same run. The "racing" variant pushes v2 as soon
//     as v1's push is acknowledged, while v1's from-scratch delta is still running.
//   - bytes downloaded by the real client: a stock `ostree` bare-user repo at v1 (pulled from the
//     same Cairn), copied twice; one copy pulls v2 with --require-static-deltas, the other with
//     --disable-static-deltas. Bytes are what Cairn says it sent (the `bytes` field of its request
//     log), split into superblock + parts, fallback objects, other loose objects, and the rest
//     (summary, refs, config, .commitmeta probes).

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FsBackend } from '../storage/backends/fs';
import { superblockKey } from '../storage/deltas/format';
import { backendDeltaSource, describeDelta } from '../storage/deltas/read';
import { jobsSettled, projectRoot, startCairn, type CairnProcess, type LoggedRequest } from '../test/helpers/cairn-process';
import { addRemote, initRepo, ostree, ostreeResult, revParse, run } from '../test/helpers/ostree';

export const POLL_MS = 10;
const CLI = path.join(projectRoot(), 'bin', 'cairn.js');
const log = (s: string) => process.stderr.write(`${s}\n`);

export interface ServePair {
  name: string;
  ref: string;
  from: string;
  to: string;
}

/** Bytes Cairn sent for one pull, by kind. */
export interface PullBytes {
  total: number;
  delta: number;
  superblock: number;
  parts: number;
  partRequests: number;
  fallbacks: number;
  fallbackRequests: number;
  loose: number;
  looseRequests: number;
  /** Of `loose`: content (.filez) and metadata (dirtree, dirmeta, commit). */
  looseContent: number;
  looseContentRequests: number;
  looseMeta: number;
  looseMetaRequests: number;
  other: number;
  requests: number;
  seconds: number;
}

export interface ServeResult {
  name: string;
  from: string;
  to: string;
  pushV1Ms: number;
  settleV1Ms: number;
  pushV2Ms: number;
  /** Acknowledged v2 push → superblock 200; null when it did not appear within the limit. */
  timeToDeltaMs: number | null;
  /** The reference (`ostree static-delta generate` of the same pair) timed right after, under the same load. */
  referenceMs?: number;
  deltaPath?: PullBytes;
  objectPath?: PullBytes;
  /** deltaPath.total / objectPath.total */
  bytesRatio?: number;
  /** The served delta's layout: superblock, part sizes, fallbacks. */
  served?: { superblock: number; parts: number[]; fallbacks: number; fallbackBytes: number };
  error?: string;
}

async function cli(args: string[], timeoutMs = 30 * 60_000): Promise<string> {
  return run(process.execPath, [CLI, ...args], { timeoutMs });
}

export interface ServeContext {
  server: CairnProcess;
  data: string;
  repoName: string;
  token: string;
  source: string;
  stop(): Promise<void>;
}

/** A fresh data folder with an owned repository, a push token, and `cairn serve` on it. */
export async function startServe(work: string, repoName: string, source: string): Promise<ServeContext> {
  const data = path.join(work, 'data');
  await fsp.rm(work, { recursive: true, force: true });
  await fsp.mkdir(work, { recursive: true });
  await cli(['init-repo', repoName, '--data', data]);
  const token = (await cli(['token', '--data', data, '--scope', 'push', '--repo', repoName, '--prefix', 'bench/', '--ttl', '24h', '--sub', 'bench'])).trim();
  // the default of `cairn serve` (--workers auto: one process fewer than CPUs) and its default policy
  const server = await startCairn({ dataDir: data, env: { CAIRN_LOG: 'info' }, extraArgs: ['--workers', 'auto'], timeoutMs: 60_000 });
  return { server, data, repoName, token, source, stop: () => server.stop() };
}

function repoUrl(ctx: ServeContext): string {
  return `${ctx.server.url}/repo/${ctx.repoName}`;
}

/** `cairn push` of `commit` from the source repo to server ref `ref`; resolves when it exits 0. */
export async function push(ctx: ServeContext, ref: string, commit: string): Promise<number> {
  const t0 = performance.now();
  await cli(['push', '--url', repoUrl(ctx), '--token', ctx.token, '--repo', ctx.source, '--to', ref, commit]);
  return performance.now() - t0;
}

/** Polls the superblock URL every POLL_MS until it answers 200 → ms since `since`, or null after limitMs. */
export async function waitForSuperblock(ctx: ServeContext, from: string, to: string, since: number, limitMs: number): Promise<number | null> {
  const url = `${repoUrl(ctx)}/${superblockKey(from, to)}`;
  for (;;) {
    const r = await fetch(url, { method: 'HEAD' }).catch(() => null);
    if (r?.status === 200) return performance.now() - since;
    if (performance.now() - since > limitMs) return null;
    await new Promise((res) => setTimeout(res, POLL_MS));
  }
}

const FILEZ = /\/objects\/([0-9a-f]{2})\/([0-9a-f]{62})\.filez$/;
const META = /\/objects\/[0-9a-f]{2}\/[0-9a-f]{62}\.(dirtree|dirmeta|commit|commitmeta)$/;

export function classify(reqs: LoggedRequest[], fallbackSet: Set<string>, seconds: number): PullBytes {
  const b: PullBytes = {
    total: 0,
    delta: 0,
    superblock: 0,
    parts: 0,
    partRequests: 0,
    fallbacks: 0,
    fallbackRequests: 0,
    loose: 0,
    looseRequests: 0,
    looseContent: 0,
    looseContentRequests: 0,
    looseMeta: 0,
    looseMetaRequests: 0,
    other: 0,
    requests: reqs.length,
    seconds,
  };
  for (const r of reqs) {
    const n = r.method === 'HEAD' ? 0 : (r.bytes ?? 0);
    b.total += n;
    if (r.path.includes('/deltas/')) {
      b.delta += n;
      if (r.path.endsWith('/superblock')) b.superblock += n;
      else {
        b.parts += n;
        if (r.status === 200 || r.status === 206) b.partRequests++;
      }
      continue;
    }
    const fz = FILEZ.exec(r.path);
    if (fz && fallbackSet.has(fz[1]! + fz[2]!)) {
      b.fallbacks += n;
      if (r.status === 200) b.fallbackRequests++;
      continue;
    }
    if (fz || META.test(r.path)) {
      b.loose += n;
      if (r.status === 200) b.looseRequests++;
      if (fz) {
        b.looseContent += n;
        if (r.status === 200) b.looseContentRequests++;
      } else {
        b.looseMeta += n;
        if (r.status === 200) b.looseMetaRequests++;
      }
      continue;
    }
    b.other += n;
  }
  return b;
}

/** Requests logged from index `from` on, once the log has caught up (it may lag the response). */
async function requestsSince(server: CairnProcess, from: number): Promise<LoggedRequest[]> {
  let n = -1;
  // settle: no new line for 300 ms
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 300));
    const now = server.requests().length;
    if (now === n) break;
    n = now;
  }
  return server.requests().slice(from);
}

/** One `ostree pull` of `ref` in client `c`, with the bytes Cairn sent for it. */
export async function countedPull(ctx: ServeContext, c: string, ref: string, args: string[], fallbackSet: Set<string>): Promise<{ bytes: PullBytes; requests: LoggedRequest[] }> {
  const mark = ctx.server.requests().length;
  const t0 = performance.now();
  const r = await ostreeResult(['pull', ...args, 'cairn', ref], { repo: c, timeoutMs: 30 * 60_000 });
  const seconds = (performance.now() - t0) / 1000;
  if (r.code !== 0) throw new Error(`ostree pull ${args.join(' ')} failed (${r.code}): ${(r.stderr || r.stdout).trim().slice(-600)}`);
  const reqs = await requestsSince(ctx.server, mark);
  return { bytes: classify(reqs, fallbackSet, seconds), requests: reqs };
}

/** The fallback checksums and layout of the delta Cairn serves for from → to. */
export async function servedDelta(ctx: ServeContext, from: string, to: string) {
  const backend = new FsBackend(path.join(ctx.data, 'repos', ctx.repoName));
  const d = await describeDelta(backendDeltaSource(backend, from, to));
  return {
    fallbackSet: new Set(d.fallbacks.map((f) => f.checksum)),
    layout: { superblock: d.superblockSize, parts: d.parts.map((p) => p.size), fallbacks: d.fallbacks.length, fallbackBytes: d.fallbackSize },
  };
}

/** cp -a (the copies must not share inodes: the client writes into its repo). */
async function copyRepo(from: string, to: string): Promise<void> {
  await fsp.rm(to, { recursive: true, force: true });
  await run('cp', ['-a', from, to]);
}

/**
 * A bare-user client at `commit` of `ref`, pulled from this Cairn: a copy of `template` (a client
 * holding an earlier pair's v1, so a shape sharing its tree costs little) or a fresh repo.
 */
export async function clientAt(ctx: ServeContext, dir: string, template: string | null, ref: string, commit: string): Promise<void> {
  if (template) await copyRepo(template, dir);
  else {
    await fsp.rm(dir, { recursive: true, force: true });
    await initRepo(dir, 'bare-user');
    await addRemote(dir, 'cairn', repoUrl(ctx));
  }
  await ostree(['pull', 'cairn', `${ref}@${commit}`], { repo: dir, timeoutMs: 30 * 60_000 });
  const at = await revParse(dir, `cairn:${ref}`);
  if (at !== commit) throw new Error(`client at ${at}, expected ${commit}`);
}

/** Both pulls of v2 from the same client state at v1; `keep` saves the delta pull's request log. */
export async function measureBytes(
  ctx: ServeContext,
  clients: string,
  template: string | null,
  p: ServePair,
  keep?: string,
): Promise<{ deltaPath: PullBytes; objectPath: PullBytes; served: ServeResult['served']; template: string }> {
  const base = path.join(clients, `${p.name}-v1`);
  await clientAt(ctx, base, template, p.ref, p.from);
  const dc = path.join(clients, `${p.name}-delta`);
  const oc = path.join(clients, `${p.name}-objects`);
  await copyRepo(base, dc);
  await copyRepo(base, oc);
  const { fallbackSet, layout } = await servedDelta(ctx, p.from, p.to);
  const d = await countedPull(ctx, dc, p.ref, ['--require-static-deltas'], fallbackSet);
  if ((await revParse(dc, `cairn:${p.ref}`)) !== p.to) throw new Error('delta pull did not reach v2');
  if (!d.requests.some((r) => r.path.endsWith(`/${superblockKey(p.from, p.to)}`) && r.status === 200)) throw new Error('the client never fetched the superblock');
  const o = await countedPull(ctx, oc, p.ref, ['--disable-static-deltas'], fallbackSet);
  if ((await revParse(oc, `cairn:${p.ref}`)) !== p.to) throw new Error('object pull did not reach v2');
  if (keep) {
    await fsp.mkdir(path.dirname(keep), { recursive: true });
    await fsp.writeFile(keep, d.requests.map((r) => JSON.stringify(r)).join('\n') + '\n');
    await fsp.writeFile(keep.replace(/\.jsonl$/, '') + '-objects.jsonl', o.requests.map((r) => JSON.stringify(r)).join('\n') + '\n');
  }
  await fsp.rm(dc, { recursive: true, force: true });
  await fsp.rm(oc, { recursive: true, force: true });
  return { deltaPath: d.bytes, objectPath: o.bytes, served: layout, template: base };
}

/**
 * Every pair in turn on one server: push v1, settle, push v2 (timed to the superblock), settle,
 * then both pulls. Errors are reported per pair, never thrown.
 */
export interface ServeOptions {
  bytes: boolean;
  logs?: string;
  limitMs?: number;
  /** Times the reference generation of a pair (ms); run right after the pair's delta appeared, so both see the same load. */
  reference?(p: ServePair): Promise<number>;
}

export async function measureServing(work: string, repoName: string, source: string, pairs: ServePair[], opts: ServeOptions): Promise<ServeResult[]> {
  const ctx = await startServe(work, repoName, source);
  const clients = path.join(work, 'clients');
  await fsp.mkdir(clients, { recursive: true });
  const out: ServeResult[] = [];
  let template: string | null = null;
  try {
    for (const p of pairs) {
      const r: ServeResult = { name: p.name, from: p.from, to: p.to, pushV1Ms: NaN, settleV1Ms: NaN, pushV2Ms: NaN, timeToDeltaMs: null };
      try {
        r.pushV1Ms = await push(ctx, p.ref, p.from);
        let t = performance.now();
        await jobsSettled(ctx.server.url, 60 * 60_000);
        r.settleV1Ms = performance.now() - t;
        t = performance.now();
        r.pushV2Ms = await push(ctx, p.ref, p.to);
        const acked = performance.now();
        r.timeToDeltaMs = await waitForSuperblock(ctx, p.from, p.to, acked, opts.limitMs ?? 30 * 60_000);
        log(
          `  serve ${p.name.padEnd(16)} push v1 ${(r.pushV1Ms / 1000).toFixed(1)} s, its jobs ${(r.settleV1Ms / 1000).toFixed(1)} s; push v2 ${(r.pushV2Ms / 1000).toFixed(1)} s; ` +
            `delta served ${r.timeToDeltaMs === null ? 'NEVER' : `${(r.timeToDeltaMs / 1000).toFixed(2)} s`} after the push was acknowledged`,
        );
        await jobsSettled(ctx.server.url, 60 * 60_000);
        if (opts.reference) {
          r.referenceMs = await opts.reference(p);
          log(`  ref   ${p.name.padEnd(16)} ostree static-delta generate ${(r.referenceMs / 1000).toFixed(2)} s (right after)`);
        }
        if (opts.bytes) {
          const m = await measureBytes(ctx, clients, template, p, opts.logs ? path.join(opts.logs, `${p.name}.jsonl`) : undefined);
          if (template && template !== m.template) await fsp.rm(template, { recursive: true, force: true });
          template = m.template;
          r.deltaPath = m.deltaPath;
          r.objectPath = m.objectPath;
          r.served = m.served;
          r.bytesRatio = m.deltaPath.total / m.objectPath.total;
          log(
            `  bytes ${p.name.padEnd(16)} delta path ${m.deltaPath.total} (parts+sb ${m.deltaPath.delta}, fallbacks ${m.deltaPath.fallbacks}, loose ${m.deltaPath.loose} in ${m.deltaPath.looseRequests}) ` +
              `vs object path ${m.objectPath.total}: ${r.bytesRatio.toFixed(2)}×`,
          );
        }
      } catch (e) {
        r.error = (e as Error).message.split('\n').slice(0, 6).join(' | ');
        log(`  serve ${p.name}: FAILED ${r.error}`);
      }
      out.push(r);
    }
  } finally {
    await ctx.stop();
    await fsp.rm(clients, { recursive: true, force: true });
  }
  return out;
}

/** The issue's case: v2 pushed the moment v1's push is acknowledged, v1's from-scratch delta running. */
export async function measureRacing(work: string, repoName: string, source: string, p: ServePair, limitMs = 60 * 60_000, reference?: ServeOptions['reference']): Promise<ServeResult & { jobsAtV2?: unknown }> {
  const ctx = await startServe(work, repoName, source);
  const r: ServeResult & { jobsAtV2?: unknown } = { name: `${p.name} (v2 during v1's scratch delta)`, from: p.from, to: p.to, pushV1Ms: NaN, settleV1Ms: 0, pushV2Ms: NaN, timeToDeltaMs: null };
  try {
    r.pushV1Ms = await push(ctx, p.ref, p.from);
    r.pushV2Ms = await push(ctx, p.ref, p.to);
    const acked = performance.now();
    r.jobsAtV2 = await fetch(`${ctx.server.url}/api/jobs`)
      .then((x) => x.json())
      .catch(() => null);
    r.timeToDeltaMs = await waitForSuperblock(ctx, p.from, p.to, acked, limitMs);
    log(
      `  serve ${r.name}: push v1 ${(r.pushV1Ms / 1000).toFixed(1)} s, push v2 ${(r.pushV2Ms / 1000).toFixed(1)} s; ` +
        `delta served ${r.timeToDeltaMs === null ? 'NEVER' : `${(r.timeToDeltaMs / 1000).toFixed(2)} s`} after the push was acknowledged`,
    );
  } catch (e) {
    r.error = (e as Error).message.split('\n').slice(0, 6).join(' | ');
    log(`  serve ${r.name}: FAILED ${r.error}`);
  } finally {
    await ctx.stop();
  }
  if (reference && r.timeToDeltaMs !== null) r.referenceMs = await reference(p);
  return r;
}
