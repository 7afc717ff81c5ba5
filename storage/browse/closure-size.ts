/**
 * What a commit's closure (the commit, every dirtree, dirmeta and content
 * object of its tree, each once) holds and weighs: archived bytes (the
 * objects as stored) and unpacked bytes (the files' sizes). Walking it reads
 * every dirtree and the header of every file, so results are memoised per
 * commit: a commit is immutable, and only a complete walk is kept.
 */
import { isNow } from '../backends/backend';
import { LRUCache } from 'lru-cache';
import { CancelledError } from '../deltas/cancel';
import { CairnError } from '../errors';
import { validateChecksum } from '../objects/checksum';
import { isSymlink } from '../objects/content';
import { ObjectType, objectKey } from '../objects/types';
import type { Repo } from '../repo/repo';
import { readContentHead } from './content';
import { loadCommit, loadDirTree } from './trees';

export interface ClosureSize {
  commit: string;
  /** Objects in the closure: commit + dirtrees + dirmetas + content objects, each counted once. */
  objects: number;
  dirtrees: number;
  dirmetas: number;
  /** Content objects (regular files and symlinks). */
  contentObjects: number;
  /** Bytes of every object present as stored (`.filez` compressed). */
  archivedBytes: number;
  /** Sum of the regular files' sizes (each content object once). */
  unpackedBytes: number;
  /** Objects of the closure not in the repository (a shallow or partial copy); what lies below a missing dirtree is not counted. */
  missing: number;
  /** The walk stopped at `maxObjects`: the figures are lower bounds. */
  truncated: boolean;
}

export interface ClosureOptions {
  /** Most objects to visit (default 1,000,000). */
  maxObjects?: number;
  /** Called every 1,000 objects with the figures so far. */
  onProgress?: (soFar: ClosureSize) => void;
  signal?: AbortSignal;
}

export const DEFAULT_MAX_CLOSURE_OBJECTS = 1_000_000;

const memo = new LRUCache<string, ClosureSize>({ max: 1024 });
const inflight = new Map<string, Promise<ClosureSize>>();

/** The memoised figures of `commit`, if a complete walk already made them (no work). */
export function cachedClosureSize(repo: Repo, commit: string): ClosureSize | null {
  return memo.get(memoKey(repo, commit)) ?? null;
}

function memoKey(repo: Repo, commit: string): string {
  return `${repo.backend.location}\0${commit}`;
}

/**
 * The closure figures of `commit` (NOT_FOUND when the commit is absent).
 * Memoised when complete; concurrent callers for the same commit share one
 * walk (when they pass no signal or progress callback of their own).
 */
export async function commitClosureSize(repo: Repo, commit: string, opts: ClosureOptions = {}): Promise<ClosureSize> {
  validateChecksum(commit);
  const k = memoKey(repo, commit);
  const hit = memo.get(k);
  if (hit) return hit;
  const shareable = !opts.onProgress && !opts.signal && opts.maxObjects === undefined;
  if (shareable) {
    const running = inflight.get(k);
    if (running) return running;
  }
  const p = walk(repo, commit, opts).then((r) => {
    if (!r.truncated && r.missing === 0) memo.set(k, r);
    return r;
  });
  if (!shareable) return p;
  inflight.set(k, p);
  try {
    return await p;
  } finally {
    inflight.delete(k);
  }
}

async function walk(repo: Repo, commit: string, opts: ClosureOptions): Promise<ClosureSize> {
  const max = Math.max(1, Math.floor(opts.maxObjects ?? DEFAULT_MAX_CLOSURE_OBJECTS));
  const c = await loadCommit(repo, commit);
  const r: ClosureSize = { commit, objects: 0, dirtrees: 0, dirmetas: 0, contentObjects: 0, archivedBytes: 0, unpackedBytes: 0, missing: 0, truncated: false };
  const seen = new Set<string>();
  const stat = async (checksum: string, type: ObjectType): Promise<number | null> => {
    const key = objectKey(checksum, type);
    const b = repo.backend;
    const got = b.statFast(key);
    const info = isNow(got) ? got : await got;
    return info ? info.size : null;
  };
  let lastYield = performance.now();
  let nextProgress = 1000;
  const step = async () => {
    if (opts.signal?.aborted) throw new CancelledError('the closure walk was cancelled');
    if (r.objects >= nextProgress) {
      nextProgress += 1000;
      opts.onProgress?.({ ...r });
    }
    if (performance.now() - lastYield > 4) {
      await new Promise<void>((res) => setImmediate(res));
      lastYield = performance.now();
    }
  };
  const visitMeta = async (checksum: string, type: ObjectType): Promise<boolean> => {
    const name = `${checksum}.${type}`;
    if (seen.has(name)) return false;
    if (r.objects >= max) {
      r.truncated = true;
      return false;
    }
    seen.add(name);
    r.objects++;
    const size = await stat(checksum, type);
    if (size === null) r.missing++;
    else r.archivedBytes += size;
    return size !== null;
  };

  await visitMeta(commit, ObjectType.Commit);
  const stack: Array<{ tree: string; meta: string }> = [{ tree: c.rootTree, meta: c.rootMeta }];
  while (stack.length && !r.truncated) {
    const { tree, meta } = stack.pop()!;
    if (await visitMeta(meta, ObjectType.DirMeta)) r.dirmetas++;
    const fresh = !seen.has(`${tree}.${ObjectType.DirTree}`);
    if (!fresh) continue;
    if (!(await visitMeta(tree, ObjectType.DirTree))) continue;
    r.dirtrees++;
    const dt = await loadDirTree(repo, tree);
    const files = dt.files.filter((f) => !seen.has(f.checksum));
    for (let i = 0; i < files.length && !r.truncated; i += 32) {
      const batch: string[] = [];
      for (const f of files.slice(i, i + 32)) {
        if (seen.has(f.checksum)) continue;
        if (r.objects >= max) {
          r.truncated = true;
          break;
        }
        seen.add(f.checksum);
        r.objects++;
        batch.push(f.checksum);
      }
      const heads = await Promise.all(batch.map((cs) => readContentHead(repo, cs).catch((e) => (e instanceof CairnError && e.code === 'NOT_FOUND' ? null : Promise.reject(e)))));
      for (const h of heads) {
        if (!h) {
          r.missing++;
          continue;
        }
        r.contentObjects++;
        r.archivedBytes += h.storedSize;
        if (!isSymlink(h.header)) r.unpackedBytes += h.size;
      }
      await step();
    }
    for (let i = dt.dirs.length - 1; i >= 0; i--) stack.push({ tree: dt.dirs[i]!.treeChecksum, meta: dt.dirs[i]!.metaChecksum });
    await step();
  }
  return r;
}
