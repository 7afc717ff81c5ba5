import { ObjectType } from '../objects/types';
import type { Repo } from '../repo/repo';
import { deltaName, parseDeltaKey } from './format';

/**
 * Removes every static delta whose from- or to-commit is no longer in the
 * repository (pruned): a client could never use it, and it pins bytes of
 * commits that are gone. The superblock goes first, so a delta half-removed by
 * a crash is no longer listed anywhere and the next run finishes the job.
 * Returns the names (`FROM-TO` or `TO`) of the deltas removed; callers then
 * regenerate the summary and indexes.
 */
export async function pruneDeltas(repo: Repo): Promise<string[]> {
  const byDir = new Map<string, { from: string | null; to: string; files: string[] }>();
  for await (const key of repo.backend.list('deltas')) {
    const k = parseDeltaKey(key);
    if (!k) continue;
    const dir = key.slice(0, key.lastIndexOf('/'));
    let d = byDir.get(dir);
    if (!d) byDir.set(dir, (d = { from: k.from, to: k.to, files: [] }));
    d.files.push(key);
  }
  const present = new Map<string, boolean>();
  const has = async (c: string) => {
    let p = present.get(c);
    if (p === undefined) present.set(c, (p = await repo.hasObject(c, ObjectType.Commit)));
    return p;
  };
  const removed: string[] = [];
  for (const d of byDir.values()) {
    if ((await has(d.to)) && (d.from === null || (await has(d.from)))) continue;
    d.files.sort((a, b) => rank(a) - rank(b));
    for (const f of d.files) await repo.backend.remove(f);
    removed.push(deltaName(d.from, d.to));
  }
  return removed.sort();
}

/** Superblock first, then everything else. */
function rank(key: string): number {
  return key.endsWith('/superblock') ? 0 : 1;
}
