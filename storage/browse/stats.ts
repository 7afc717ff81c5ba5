/**
 * Storage statistics of one repository: objects by type (count and bytes as
 * stored), refs, deltas and their bytes. One listing of the repository's
 * keys and a stat per object: the cost grows with the repository, so callers
 * cache the answer (it says when it was computed and how long it took).
 */
import { isNow } from '../backends/backend';
import { parseDeltaKey, deltaName } from '../deltas/format';
import { ARCHIVE_EXTENSION, ObjectType } from '../objects/types';
import type { Repo } from '../repo/repo';

export type ObjectTypeName = 'commit' | 'dirtree' | 'dirmeta' | 'file' | 'commitmeta' | 'tombstone-commit';

export interface CountBytes {
  count: number;
  bytes: number;
}

export interface RepoStats {
  repo: string;
  objects: Record<ObjectTypeName, CountBytes>;
  /** All objects together. */
  objectsTotal: CountBytes;
  refs: number;
  /** Deltas with a superblock, and the bytes of their files. */
  deltas: CountBytes;
  /** Files under deltas/ that belong to no complete delta (interrupted generations). */
  deltaLeftovers: CountBytes;
  /** When the figures were taken (ISO 8601) and how long it took. */
  computedAt: string;
  durationMs: number;
  /** The listing stopped at `maxKeys`: the figures are lower bounds. */
  truncated: boolean;
}

export const DEFAULT_MAX_STAT_KEYS = 5_000_000;

const TYPE_NAMES: Record<string, ObjectTypeName> = {
  [ARCHIVE_EXTENSION[ObjectType.Commit]]: 'commit',
  [ARCHIVE_EXTENSION[ObjectType.DirTree]]: 'dirtree',
  [ARCHIVE_EXTENSION[ObjectType.DirMeta]]: 'dirmeta',
  [ARCHIVE_EXTENSION[ObjectType.File]]: 'file',
  [ARCHIVE_EXTENSION[ObjectType.CommitMeta]]: 'commitmeta',
  [ARCHIVE_EXTENSION[ObjectType.TombstoneCommit]]: 'tombstone-commit',
};

const OBJECT_KEY = /^objects\/[0-9a-f]{2}\/[0-9a-f]{62}\.([a-z-]+)$/;

/** The statistics of `repo` (walks its objects, refs and deltas; see the module comment). */
export async function repoStats(repo: Repo, opts: { maxKeys?: number } = {}): Promise<RepoStats> {
  const t0 = performance.now();
  const maxKeys = Math.max(1, Math.floor(opts.maxKeys ?? DEFAULT_MAX_STAT_KEYS));
  const zero = (): CountBytes => ({ count: 0, bytes: 0 });
  const objects: Record<ObjectTypeName, CountBytes> = { commit: zero(), dirtree: zero(), dirmeta: zero(), file: zero(), commitmeta: zero(), 'tombstone-commit': zero() };
  const total = zero();
  let keys = 0;
  let truncated = false;
  const b = repo.backend;
  const size = async (key: string): Promise<number | null> => {
    const got = b.statFast(key);
    const info = isNow(got) ? got : await got;
    return info ? info.size : null;
  };
  let lastYield = performance.now();
  const pace = async () => {
    if (performance.now() - lastYield < 4) return;
    await new Promise<void>((r) => setImmediate(r));
    lastYield = performance.now();
  };

  let batch: Array<{ key: string; type: ObjectTypeName }> = [];
  const flush = async () => {
    const sizes = await Promise.all(batch.map((o) => size(o.key)));
    batch.forEach((o, i) => {
      const s = sizes[i];
      if (s === null || s === undefined) return; // removed meanwhile
      objects[o.type].count++;
      objects[o.type].bytes += s;
      total.count++;
      total.bytes += s;
    });
    batch = [];
    await pace();
  };
  for await (const key of b.list('objects')) {
    if (++keys > maxKeys) {
      truncated = true;
      break;
    }
    const m = OBJECT_KEY.exec(key);
    const type = m ? TYPE_NAMES[m[1]!] : undefined;
    if (!type) continue;
    batch.push({ key, type });
    if (batch.length >= 64) await flush();
  }
  await flush();

  let refs = 0;
  for await (const _ of b.list('refs/heads')) {
    if (++keys > maxKeys) {
      truncated = true;
      break;
    }
    refs++;
  }

  const deltaDirs = new Map<string, { bytes: number; files: number; superblock: boolean }>();
  const leftovers = zero();
  for await (const key of b.list('deltas')) {
    if (++keys > maxKeys) {
      truncated = true;
      break;
    }
    const k = parseDeltaKey(key);
    const s = (await size(key)) ?? 0;
    if (!k) {
      leftovers.count++;
      leftovers.bytes += s;
      continue;
    }
    const name = deltaName(k.from, k.to);
    let d = deltaDirs.get(name);
    if (!d) deltaDirs.set(name, (d = { bytes: 0, files: 0, superblock: false }));
    d.bytes += s;
    d.files++;
    if (k.file === 'superblock') d.superblock = true;
    await pace();
  }
  const deltas = zero();
  for (const d of deltaDirs.values()) {
    const into = d.superblock ? deltas : leftovers;
    into.count += d.superblock ? 1 : d.files;
    into.bytes += d.bytes;
  }
  return {
    repo: repo.name,
    objects,
    objectsTotal: total,
    refs,
    deltas,
    deltaLeftovers: leftovers,
    computedAt: new Date().toISOString(),
    durationMs: Math.round(performance.now() - t0),
    truncated,
  };
}
