import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { S3Counts } from '../../bench/s3-count';
import { cli } from '../e2e/publish-helpers';

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

/** A token of `scope` for repository main signed with `secret` (the `cairn token` CLI). */
export async function mainToken(secret: string, scope: string, more: string[] = []): Promise<string> {
  const t = await cli(['token', '--scope', scope, '--repo', 'main', ...more, '--ttl', '1h', '--sub', 'requests'], { CAIRN_TOKEN_SECRET: secret });
  assert.equal(t.code, 0, t.stderr);
  return t.stdout.trim();
}

/** Switches main's policy deltas off, so that no compile reads the store while its requests are counted. */
export async function withoutPolicyDeltas(url: string, adminToken: string): Promise<void> {
  const settings = await fetch(`${url}/api/repos/main/settings`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ deltas: { scratch: false, previousCommits: 0 } }),
  });
  assert.equal(settings.status, 200, await settings.text());
}
