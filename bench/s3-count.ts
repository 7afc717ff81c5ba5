// Preloaded into `cairn serve` by bench/s3.ts (`node --require dist/bench/s3-count.js`), never part
// of Cairn: counts the S3 requests the process sends, by operation and by the kind of key, with the
// time until each answered (for GetObject: until the response head, not the end of the body), and
// writes the totals to CAIRN_BENCH_S3_COUNTS/<pid>.json every 100 ms when they changed and at exit.
// Every worker of `--workers N` inherits the preload (node's execArgv) and writes its own file.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { S3Client } from '@aws-sdk/client-s3';

/** op → key class → totals. */
export type S3Counts = Record<string, Record<string, { n: number; ms: number; errors: number }>>;

/** The kind of file an S3 key names: an object's type, a repository file, or server state. */
export function keyClass(key: string | undefined): string {
  if (key === undefined) return '-';
  const obj = /\/objects\/[0-9a-f]{2}\/[0-9a-f]{62}\.([a-z]+)$/.exec(key);
  if (obj) return obj[1]!;
  if (/\/deltas\//.test(key)) return 'delta';
  if (/\/refs\//.test(key)) return 'ref';
  const base = key.slice(key.lastIndexOf('/') + 1);
  if (base === 'summary' || base === 'summary.sig' || base === 'config') return base;
  if (/(^|\/)tmp\//.test(key)) return 'tmp';
  if (/(^|\/)(settings|keys|secrets|locks|revocations|webhooks)\//.test(key)) return 'state';
  return 'other';
}

/** Content objects split at the file cache's bound (server/files/cache.ts), by the size the store answered. */
export const CACHED_MAX = 256 * 1024;
export function sizeClass(cls: string, size: number): string {
  return cls === 'filez' ? (size > CACHED_MAX ? 'filez > 256 KiB' : 'filez ≤ 256 KiB') : cls;
}
function sized(cls: string, out: unknown): string {
  const o = out as { ContentLength?: number; ContentRange?: string } | undefined;
  const total = /\/(\d+)$/.exec(o?.ContentRange ?? '');
  const size = total ? Number(total[1]) : o?.ContentLength;
  return size === undefined ? cls : sizeClass(cls, size);
}

const dir = process.env.CAIRN_BENCH_S3_COUNTS;
if (dir) {
  const counts: S3Counts = {};
  let dirty = false;
  const file = path.join(dir, `${process.pid}.json`);
  const flush = (): void => {
    if (!dirty) return;
    dirty = false;
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(counts));
    fs.renameSync(`${file}.tmp`, file);
  };
  setInterval(flush, 100).unref();
  process.on('exit', flush);
  const send = S3Client.prototype.send as (...a: unknown[]) => Promise<unknown>;
  // CAIRN_BENCH_S3_TRACE=1: also one line per request (its end as an ISO time, its duration in ms,
  // operation, key, outcome) in <pid>.trace, to set beside the request log's times.
  const trace = process.env.CAIRN_BENCH_S3_TRACE === '1' ? fs.openSync(path.join(dir, `${process.pid}.trace`), 'a') : undefined;
  const record = (op: string, cls: string, t0: number, failed: boolean, key?: string, err?: unknown): void => {
    const t1 = performance.now();
    const e = ((counts[op] ??= {})[cls] ??= { n: 0, ms: 0, errors: 0 });
    e.n++;
    e.ms += t1 - t0;
    if (failed) e.errors++;
    dirty = true;
    if (trace !== undefined) {
      const why = failed ? ((err as { name?: string })?.name ?? 'error') : 'ok';
      fs.writeSync(trace, `${new Date().toISOString()} ${(t1 - t0).toFixed(1)} ${op} ${key ?? '-'} ${why}\n`);
    }
  };
  (S3Client.prototype as unknown as { send: unknown }).send = function (this: S3Client, ...args: unknown[]): Promise<unknown> {
    const command = args[0] as { constructor: { name: string }; input?: { Key?: string; Prefix?: string } };
    const op = command.constructor.name.replace(/Command$/, '');
    const prefix = command.input?.Prefix;
    // A listing by the last folder it lists ('list repos/', 'list deltas/'…), a key by its kind.
    const cls = command.input?.Key === undefined && prefix !== undefined ? `list ${/[^/]*\/?$/.exec(prefix)![0] || '/'}` : keyClass(command.input?.Key);
    const t0 = performance.now();
    const p = send.apply(this, args);
    if (typeof (p as Promise<unknown> | undefined)?.then !== 'function') return p; // the callback form: not counted
    // Not found (HEAD/GET of an absent key) counts as an answer, as does a lost condition.
    p.then(
      (out) => record(op, sized(cls, out), t0, false, command.input?.Key ?? prefix),
      (err: unknown) => record(op, cls, t0, true, command.input?.Key ?? prefix, err),
    );
    return p;
  };
}
