import * as fs from 'node:fs';
import * as path from 'node:path';
import type { S3Counts } from '../../bench/s3-count';

/**
 * The S3 requests a `cairn serve` sent, as bench/s3-count.js (preloaded with `--require`,
 * CAIRN_BENCH_S3_COUNTS=DIR) writes them: one counts file per process, rewritten every 100 ms.
 * Shared by test/s3/serve-requests and test/s3/push-requests.
 */

/** The counter module to preload in the server (`nodeArgs: ['--require', S3_COUNTER]`). */
export const S3_COUNTER = path.join(__dirname, '../../bench/s3-count.js');

/** Every worker's S3 requests (one counts file per process), summed: `op class` → n. */
export function readCounts(dir: string): Map<string, number> {
  const total = new Map<string, number>();
  for (const f of fs.readdirSync(dir)) {
    if (!f.endsWith('.json')) continue;
    const c = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as S3Counts;
    for (const [op, byClass] of Object.entries(c)) for (const [cls, v] of Object.entries(byClass)) total.set(`${op} ${cls}`, (total.get(`${op} ${cls}`) ?? 0) + v.n);
  }
  return total;
}

/** The counts once they stop changing (the counter writes every 100 ms). */
export async function settledCounts(dir: string): Promise<Map<string, number>> {
  let last = readCounts(dir);
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 300));
    const now = readCounts(dir);
    if (now.size === last.size && [...now].every(([k, v]) => last.get(k) === v)) return now;
    last = now;
  }
  return last;
}
