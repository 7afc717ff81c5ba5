/**
 * The static deltas that lead to or start from a commit, with their sizes,
 * found by listing delta file names (no superblock is read).
 */
import { deltaName, parseDeltaKey } from '../deltas/format';
import { validateChecksum } from '../objects/checksum';
import type { Repo } from '../repo/repo';

export interface CommitDelta {
  /** `FROM-TO` or `TO` (from scratch). */
  name: string;
  from: string | null;
  to: string;
  /** Bytes of the superblock and its part files. */
  size: number;
  /** Part files beside the superblock (parts carried inline are not files). */
  partFiles: number;
}

export interface CommitDeltas {
  /** Deltas whose target is the commit (updates to it), from scratch included. */
  to: CommitDelta[];
  /** Deltas from the commit to another (updates away from it). */
  from: CommitDelta[];
}

/** Delta files looked at, at most (a repository with more keeps only this many in view). */
export const MAX_DELTA_FILES = 200_000;

/**
 * Deltas to and from `commit` that have a superblock (a folder without one
 * is an interrupted generation). Sorted by name.
 */
export async function deltasOfCommit(repo: Repo, commit: string): Promise<CommitDeltas> {
  validateChecksum(commit);
  const found = new Map<string, { from: string | null; to: string; keys: string[]; superblock: boolean }>();
  let n = 0;
  for await (const key of repo.backend.list('deltas')) {
    if (++n > MAX_DELTA_FILES) break;
    const k = parseDeltaKey(key);
    if (!k || (k.to !== commit && k.from !== commit)) continue;
    const name = deltaName(k.from, k.to);
    let d = found.get(name);
    if (!d) found.set(name, (d = { from: k.from, to: k.to, keys: [], superblock: false }));
    d.keys.push(key);
    if (k.file === 'superblock') d.superblock = true;
  }
  const out: CommitDeltas = { to: [], from: [] };
  for (const [name, d] of [...found].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    if (!d.superblock) continue;
    let size = 0;
    for (const k of d.keys) size += (await repo.backend.stat(k))?.size ?? 0;
    const e: CommitDelta = { name, from: d.from, to: d.to, size, partFiles: d.keys.filter((k) => /\/[0-9]+$/.test(k)).length };
    if (d.to === commit) out.to.push(e);
    else out.from.push(e);
  }
  return out;
}
