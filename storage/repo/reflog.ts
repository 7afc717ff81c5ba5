import { createHash, randomBytes } from 'node:crypto';
import type { Repo } from './repo';

/** One recorded ref move. `old`/`new` are null for creation/deletion. */
export interface RefLogEntry {
  time: string; // ISO 8601
  ref: string;
  old: string | null;
  new: string | null;
  /** Who moved it (the token subject), or 'cli' / 'system'. */
  actor: string;
}

/**
 * The history of ref moves, kept in the repository's local-only `state/`
 * folder (never served to clients), one small immutable file per entry so
 * that recording is a single atomic write on any backend.
 *
 * File names sort by time and carry a digest of the ref:
 * `<time>-<random>-r<16 hex of sha256(ref)>.json`, so reading one ref's
 * history opens only the files whose name has its digest (a collision is
 * caught by the ref inside). Entries written before the digest was added
 * (`<time>-<random>.json`) are still read, by opening them.
 */
const PREFIX = 'state/cairn/reflog';

/** Entries one read returns by default, and at most. */
export const DEFAULT_REFLOG_LIMIT = 100;
export const MAX_REFLOG_LIMIT = 1000;
/** Files one read may open (old-format names and digest collisions need opening). */
export const MAX_REFLOG_FILE_READS = 5000;

export function refDigest(ref: string): string {
  return createHash('sha256').update(ref, 'utf8').digest('hex').slice(0, 16);
}

/**
 * The file name of a new entry (without the folder). `salt` (a publish's
 * journal id and the entry's place in it) makes the name deterministic, so
 * that a publish rolled forward after a crash writes the entry under the
 * name its journal recorded (once, whether or not it was already written).
 */
export function refLogFileName(e: RefLogEntry, salt?: string): string {
  const middle = salt === undefined ? randomBytes(4).toString('hex') : createHash('sha256').update(salt, 'utf8').digest('hex').slice(0, 8);
  return `${e.time.replace(/[:.]/g, '-')}-${middle}-r${refDigest(e.ref)}.json`;
}

/** The backend key of the entry file `name`. */
export function refLogKey(name: string): string {
  return `${PREFIX}/${name}`;
}

/** The bytes of an entry's file. */
export function refLogBytes(e: RefLogEntry): Buffer {
  const { time, ref, old, new: next, actor } = e;
  return Buffer.from(JSON.stringify({ time, ref, old, new: next, actor }) + '\n');
}

const NEW_NAME = /-r([0-9a-f]{16})\.json$/;

export async function appendRefLog(repo: Repo, entries: RefLogEntry[]): Promise<void> {
  for (const e of entries) await repo.backend.write(refLogKey(refLogFileName(e)), refLogBytes(e));
}

/**
 * The newest entry of each of `refs` (undefined for a ref without one), for
 * recovery: names are listed once, then opened from the newest down until
 * every ref is found or `maxReads` files were opened (`complete` false then).
 */
export async function newestEntries(repo: Repo, refs: Iterable<string>, maxReads = MAX_REFLOG_FILE_READS): Promise<{ entries: Map<string, RefLogEntry>; complete: boolean }> {
  const wanted = new Map<string, string>(); // digest → … (several refs may share a digest: checked inside)
  const open = new Set<string>();
  for (const r of refs) {
    open.add(r);
    wanted.set(refDigest(r), r);
  }
  const names: string[] = [];
  for await (const k of repo.backend.list(PREFIX)) {
    const name = k.slice(PREFIX.length + 1);
    if (!name.endsWith('.json') || name.includes('/')) continue;
    const m = NEW_NAME.exec(name);
    if (m && !wanted.has(m[1]!)) continue;
    names.push(name);
  }
  names.sort().reverse();
  const entries = new Map<string, RefLogEntry>();
  let reads = 0;
  for (const name of names) {
    if (open.size === 0) break;
    if (reads >= maxReads) return { entries, complete: false };
    const got = await repo.backend.read(`${PREFIX}/${name}`);
    reads++;
    if (!got) continue;
    try {
      const e = JSON.parse(got.data.toString('utf8')) as RefLogEntry;
      if (typeof e?.ref === 'string' && open.has(e.ref)) {
        entries.set(e.ref, e);
        open.delete(e.ref);
      }
    } catch {
      // a damaged entry: the next older one of that ref counts
    }
  }
  return { entries, complete: true };
}

export interface RefLogQuery {
  /** Only this ref's history. */
  ref?: string;
  /** Most entries to return (default 100, at most 1000). */
  limit?: number;
  /** A cursor: only entries older than this one (`next` of the previous page). */
  before?: string;
  /** Most files to open (default and maximum MAX_REFLOG_FILE_READS). */
  maxReads?: number;
}

export interface RefLogPage {
  /** Newest first. */
  entries: RefLogEntry[];
  /** Where the next page starts (pass as `before`), or null when there is nothing older. */
  next: string | null;
  /** Files opened for this page. */
  filesRead: number;
}

/**
 * One page of the history, newest first: names are listed (no reads), then
 * opened from the newest down only while entries are still needed, skipping
 * other refs' new-format names unopened, and never more than `maxReads`
 * files; `next` says where to go on when the page stopped early.
 */
export async function readRefLogPage(repo: Repo, q: RefLogQuery = {}): Promise<RefLogPage> {
  const limit = Math.min(MAX_REFLOG_LIMIT, Math.max(1, Math.floor(q.limit ?? DEFAULT_REFLOG_LIMIT)));
  const maxReads = Math.min(MAX_REFLOG_FILE_READS, Math.max(1, Math.floor(q.maxReads ?? MAX_REFLOG_FILE_READS)));
  const digest = q.ref !== undefined ? refDigest(q.ref) : undefined;
  const names: string[] = [];
  for await (const k of repo.backend.list(PREFIX)) {
    const name = k.slice(PREFIX.length + 1);
    if (!name.endsWith('.json') || name.includes('/')) continue;
    if (q.before !== undefined && !(name < q.before)) continue;
    if (digest !== undefined) {
      const m = NEW_NAME.exec(name);
      if (m && m[1] !== digest) continue; // another ref's entry: not opened
    }
    names.push(name);
  }
  names.sort().reverse();
  const entries: RefLogEntry[] = [];
  let filesRead = 0;
  for (let i = 0; i < names.length; i++) {
    if (entries.length >= limit || filesRead >= maxReads) return { entries, next: names[i - 1] ?? q.before ?? null, filesRead };
    const got = await repo.backend.read(`${PREFIX}/${names[i]}`);
    filesRead++;
    if (!got) continue;
    let e: RefLogEntry;
    try {
      e = JSON.parse(got.data.toString('utf8')) as RefLogEntry;
    } catch {
      continue; // a damaged entry does not hide the others
    }
    if (q.ref !== undefined && e.ref !== q.ref) continue;
    entries.push(e);
  }
  return { entries, next: null, filesRead };
}

/** Newest first; optionally only one ref's history (the first page of readRefLogPage). */
export async function readRefLog(repo: Repo, opts: { ref?: string; limit?: number } = {}): Promise<RefLogEntry[]> {
  return (await readRefLogPage(repo, opts)).entries;
}
