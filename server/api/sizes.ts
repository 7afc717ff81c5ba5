import { LRUCache } from 'lru-cache';
import { cachedClosureSize, commitClosureSize, type ClosureSize } from '../../storage/browse';
import type { Repo } from '../../storage/repo/repo';
import type { Logger } from '../logging';
import type { Sizes } from './schema';

/**
 * A commit's sizes (objects, archived and unpacked bytes of its closure) for
 * the browse routes, without making a request wait for a walk of a whole
 * tree: what storage has memoised is answered at once; otherwise the walk is
 * queued here and the answer says `sizesPending` (the UI asks again). One
 * walk at a time per process (they read every dirtree and file header),
 * each commit queued once, at most MAX_QUEUED waiting (more are simply asked
 * for again by the next request). A commit is immutable, so a figure once
 * known never changes: storage keeps complete walks; walks of a partial copy
 * (objects missing) or cut at their bound are kept here for a while, marked
 * incomplete, so they are not walked again on every request.
 */

const MAX_QUEUED = 256;
const queue: Array<{ key: string; repo: Repo; commit: string }> = [];
const queued = new Set<string>();
let running = false;
const incomplete = new LRUCache<string, ClosureSize>({ max: 1024, ttl: 10 * 60_000 });
let log: Logger | undefined;

function keyOf(repo: Repo, commit: string): string {
  return `${repo.backend.location}\0${commit}`;
}

/** The sizes of `commit` known now, or pending (its walk queued). */
export function commitSizes(repo: Repo, commit: string, logger?: Logger): Sizes {
  const key = keyOf(repo, commit);
  const known = cachedClosureSize(repo, commit) ?? incomplete.get(key);
  if (known) return sizesOf(known);
  if (logger) log = logger;
  if (!queued.has(key) && queued.size < MAX_QUEUED) {
    queued.add(key);
    queue.push({ key, repo, commit });
    if (!running) void drain();
  }
  return { objects: null, archivedBytes: null, unpackedBytes: null, sizesPending: true, sizesIncomplete: false };
}

function sizesOf(c: ClosureSize): Sizes {
  return { objects: c.objects, archivedBytes: c.archivedBytes, unpackedBytes: c.unpackedBytes, sizesPending: false, sizesIncomplete: c.missing > 0 || c.truncated };
}

async function drain(): Promise<void> {
  running = true;
  try {
    for (let job = queue.shift(); job; job = queue.shift()) {
      try {
        const r = await commitClosureSize(job.repo, job.commit);
        if (r.missing > 0 || r.truncated) incomplete.set(job.key, r);
      } catch (e) {
        // An absent or broken commit: the detail route says so on its own; nothing to remember.
        log?.warn('commit sizes failed', { repo: job.repo.name, commit: job.commit, err: e instanceof Error ? e.message : String(e) });
      } finally {
        queued.delete(job.key);
      }
    }
  } finally {
    running = false;
  }
}

/** Waits until no walk is queued or running (tests). */
export async function sizesIdle(): Promise<void> {
  while (running || queue.length > 0) await new Promise((r) => setTimeout(r, 10));
}
