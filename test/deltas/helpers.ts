// Shared helpers of the static-delta tests: fresh Cairn repos, applying a delta and judging the
// result with the real ostree (fsck, checkout compared with the source tree).
import { createReadStream } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { applyDelta, type ApplyResult } from '../../storage/deltas/apply';
import type { DeltaSource } from '../../storage/deltas/read';
import { objectKey } from '../../storage/objects/types';
import { Repo } from '../../storage/repo/repo';
import { assertCheckoutEquals, makeTempDir, ostree } from '../helpers/ostree';

let n = 0;

/** A fresh, empty archive repository written by Cairn. */
export async function freshRepo(scratch: string, name = 'r'): Promise<{ repo: Repo; dir: string }> {
  const dir = path.join(scratch, `${name}-${++n}`);
  const repo = await Repo.init(name, new FsBackend(dir));
  return { repo, dir };
}

/** Fallbacks fetched straight from another archive repository's files. */
export function fallbacksFrom(repoDir: string) {
  return (o: { type: number; checksum: string }) => createReadStream(path.join(repoDir, objectKey(o.checksum, o.type))) as AsyncIterable<Buffer>;
}

/** Applies, then requires `ostree fsck` to pass and the checkout to equal `sourceTree`. */
export async function applyAndJudge(
  repo: Repo,
  repoDir: string,
  source: DeltaSource,
  sourceTree: string,
  opts: { fallbacksFrom?: string; ref?: string } = {},
): Promise<ApplyResult> {
  const r = await applyDelta(repo, source, opts.fallbacksFrom ? { fetchFallback: fallbacksFrom(opts.fallbacksFrom) } : {});
  await repo.setRef(opts.ref ?? 'test/main', r.commit);
  await ostree(['fsck'], { repo: repoDir });
  const scratch = await makeTempDir('cairn-delta-co-');
  await assertCheckoutEquals(repoDir, r.commit, sourceTree, scratch);
  return r;
}
