import type { Readable } from 'node:stream';
import { CairnError } from '../errors';

/**
 * The storage-driver interface: a flat namespace of keys (relative,
 * '/'-separated paths such as `objects/3f/d0…36a3.commit`) holding immutable
 * or atomically replaced blobs. Callers use Backend (every method
 * required); a driver may implement less (Driver) and be completed by full().
 */
export interface BlobInfo {
  size: number;
  mtimeMs: number;
  /** Changes whenever the blob's bytes may have changed (a validator, not a hash). */
  version: string;
}

export interface ByteRange {
  start: number; // inclusive
  end: number; // inclusive
}

export interface BlobReader {
  info: BlobInfo;
  /** Reads up to `length` bytes at `position` into the start of `buffer`; 0 at the end. */
  read(buffer: Buffer, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}

/** Up to `length` bytes of `reader` at `position` (fewer only at the end), in as many reads as it takes. */
export async function readAt(reader: Pick<BlobReader, 'read'>, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const n = await reader.read(got === 0 ? buf : buf.subarray(got), length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got === length ? buf : buf.subarray(0, got);
}

export type WriteSource = Buffer | AsyncIterable<Buffer | Uint8Array>;

/**
 * A write whose bytes are already stored durably aside (everything that
 * needs space is done): commit() makes them the key's (a rename: needs no
 * space), discard() drops them. Nothing is visible under the key before
 * commit(). For files that must switch together (a publish: refs, summary,
 * summary.sig, ref log), so that running out of space can only happen
 * before the first of them switches.
 */
export interface PreparedWrite {
  commit(): Promise<void>;
  discard(): Promise<void>;
}

/**
 * What a storage driver must implement at least: the required methods, and
 * optionally the extras below. Nothing above storage/backends/ uses a Driver:
 * `full(driver)` (storage/backends/full.ts) turns one into a Backend, the
 * whole interface, supplying whatever the driver lacks. FsBackend and
 * S3Backend implement Backend directly.
 */
export interface Driver {
  /** Human-readable location, for logs. */
  readonly location: string;
  stat(key: string): Promise<BlobInfo | null>;
  /** Whole blob with the info of exactly those bytes; for small files. */
  read(key: string): Promise<{ data: Buffer; info: BlobInfo } | null>;
  /** Streams (part of) a blob; null when absent. */
  openRead(key: string, range?: ByteRange): Promise<{ stream: Readable; info: BlobInfo } | null>;
  /**
   * Optional: an open blob read at positions into the caller's buffer, for
   * sending large blobs with one reused buffer instead of a new chunk per
   * read (a stream's chunks made the garbage collector run a full
   * mark-compact every ~20 MB sent). The bytes are those of `info`'s version
   * until close(), whatever happens to the key meanwhile.
   */
  openReader?(key: string): Promise<BlobReader | null>;
  /** Atomically creates or replaces `key`: readers see the old bytes or all the new ones, never a part. */
  write(key: string, data: WriteSource): Promise<void>;
  /** Optional: write() in two steps (see PreparedWrite); without it, callers write at commit time. */
  prepare?(key: string, data: WriteSource): Promise<PreparedWrite>;
  /**
   * Removes `key`; absent is not an error. A driver with real folders also
   * removes the folders this leaves empty (up to, not including, the ones a
   * repository must keep: its root and layout folders such as refs/heads),
   * so that afterwards no prefix of the removed key is in the way: after
   * removing `x/y/z` (and nothing else under `x/`), listing `x/` yields
   * nothing and `x/y` (or `x`) can be written as a key. A concurrent write
   * into a folder being pruned still succeeds.
   */
  remove(key: string): Promise<void>;
  /** Optional: Backend.removeMany natively (a batch request; without it, full() removes the keys one by one). */
  removeMany?(keys: readonly string[]): Promise<void>;
  /**
   * Creates empty "folders" that tools reading the layout directly expect
   * (ostree wants refs/heads etc. to exist). Key-value drivers do nothing.
   */
  ensurePrefixes(prefixes: string[]): Promise<void>;
  /** Every key below `prefix` ('' for all), recursively, in no particular order. */
  list(prefix: string): AsyncIterable<string>;
  /**
   * Optional: takes the repository-wide lock `name` across processes (several
   * Cairn processes may share the storage); resolves with its release.
   * Drivers without it are locked per process only (storage/repo/mutex.ts).
   * A driver whose lock can be taken over from a holder that is still alive
   * (a lease) implements Backend.lock itself, with HeldLock.confirm.
   */
  lock?(name: string): Promise<() => Promise<void>>;
  /**
   * Optional: removes what dead writers left behind: temporary files of
   * writes older than `graceMs` (or whose process is gone), lock files whose
   * holder is gone. Returns one line per thing removed. Called at start and
   * before publishing (storage/repo/recovery.ts).
   */
  sweep?(opts?: { graceMs?: number }): Promise<string[]>;
  /**
   * Optional blocking variants of stat and read, for drivers whose metadata
   * and small files are local (the filesystem): the HTTP layer uses them for
   * files it keeps in memory, as nginx reads files in its event loop; a
   * thread-pool round trip per call costs more than the call itself.
   */
  statNow?(key: string): BlobInfo | null;
  /**
   * Optional: sets the blob's mtime to now (bytes unchanged; absent is not an
   * error). Garbage collection keeps whatever is younger than its grace
   * window, so a push told an object is present touches it (server/api/objects.ts).
   */
  touch?(key: string): Promise<void>;
  readNow?(key: string): { data: Buffer; info: BlobInfo } | null;
  /** Optional: Backend.create natively. */
  create?(key: string, data: WriteSource): Promise<boolean>;
  /** Optional: Backend.compareAndSwap natively. */
  compareAndSwap?(key: string, data: Buffer, expected: string | null): Promise<string | null>;
}

/**
 * A held store-wide lock (Backend.lock): calling it releases the lock.
 * `confirm()` resolves when the lock is still this holder's, having just
 * extended it (a lease renewed, a lock file refreshed), so it stays this
 * holder's for at least one more lease; it rejects with CONFLICT when the
 * lock was taken over meanwhile (the holder stalled for longer than a lease
 * and a waiter broke in). A critical section calls it right before its
 * commit point (the publish journal), so that a holder that lost its lock
 * switches nothing: the fence that leases alone do not give.
 */
export interface HeldLock {
  (): Promise<void>;
  confirm(): Promise<void>;
}

/** What HeldLock.confirm() throws when the lock is no longer this holder's. */
export function lockLost(name: string): CairnError {
  return new CairnError('CONFLICT', `lock ${name} was taken over (its holder stalled past its lease): nothing was switched, try again`);
}

/** A value now (a blocking backend's statFast/readFast) or a promise of it. */
export type Maybe<T> = T | Promise<T>;

/** Whether a statFast/readFast answer is already there (a blocking backend's), not a promise. */
export function isNow<T>(v: Maybe<T>): v is T {
  return !(v instanceof Promise);
}

/** A blocking backend's statFast/readFast answer (the caller checked `blocking`); a promise here is a bug. */
export function nowOf<T>(v: Maybe<T>): T {
  if (v instanceof Promise) throw new TypeError('statFast/readFast of a non-blocking backend used as a value');
  return v;
}

/**
 * The storage interface every caller uses: one backend instance holds one
 * store (a repository, or the server's state), every method required, so
 * callers never test for optional ones. Every implementation must pass
 * test/unit/backend-conformance.ts.
 */
export interface Backend {
  /** Human-readable location, for logs. */
  readonly location: string;
  /** Whether statFast/readFast answer at once (local storage, the filesystem) rather than with a promise. */
  readonly blocking: boolean;
  stat(key: string): Promise<BlobInfo | null>;
  /** Whole blob with the info of exactly those bytes; for small files. */
  read(key: string): Promise<{ data: Buffer; info: BlobInfo } | null>;
  /** Streams (part of) a blob; null when absent. */
  openRead(key: string, range?: ByteRange): Promise<{ stream: Readable; info: BlobInfo } | null>;
  /**
   * An open blob read at positions into the caller's buffer (sending large
   * blobs with one reused buffer). Every read gives the bytes of `info`'s
   * version, or fails with CONFLICT when the key was replaced meanwhile (a
   * driver that can hold the version open, the filesystem, never fails so).
   */
  openReader(key: string): Promise<BlobReader | null>;
  /** Atomically creates or replaces `key`: readers see the old bytes or all the new ones, never a part. */
  write(key: string, data: WriteSource): Promise<void>;
  /** write() in two steps (see PreparedWrite). */
  prepare(key: string, data: WriteSource): Promise<PreparedWrite>;
  /** Removes `key`; absent is not an error (see Driver.remove for folders). */
  remove(key: string): Promise<void>;
  /**
   * Removes every key of `keys` as remove() does (absent ones are not errors;
   * folders left empty go too), several at once and in no particular order
   * among them: a caller that needs one key gone before another makes two
   * calls. Every key is validated before anything is removed (INVALID_PATH:
   * nothing removed); no keys is nothing to do. Resolves once every key is
   * gone; fails with the typed I/O error when any could not be removed (the
   * others may or may not be gone then). For bulk deletion (gc, prune): the
   * filesystem removes up to REMOVE_PARALLEL files at once, S3 sends
   * DeleteObjects requests of up to 1,000 keys.
   */
  removeMany(keys: readonly string[]): Promise<void>;
  /** Creates empty "folders" that tools reading the layout directly expect; key-value stores do nothing. */
  ensurePrefixes(prefixes: string[]): Promise<void>;
  /** Every key below `prefix` ('' for all), recursively, in no particular order. */
  list(prefix: string): AsyncIterable<string>;
  /** The store-wide lock `name`, across every process sharing the store; resolves with its release (see HeldLock). */
  lock(name: string): Promise<HeldLock>;
  /** Removes what dead writers left behind (see Driver.sweep); one line per thing removed. */
  sweep(opts?: { graceMs?: number }): Promise<string[]>;
  /** Sets the blob's mtime to now, bytes unchanged; absent is not an error (see Driver.touch). */
  touch(key: string): Promise<void>;
  /**
   * stat, answered at once when `blocking` (no thread-pool round trip: the
   * read path's small files, as nginx reads in its event loop), else a promise.
   */
  statFast(key: string): Maybe<BlobInfo | null>;
  /** read likewise. */
  readFast(key: string): Maybe<{ data: Buffer; info: BlobInfo } | null>;
  /** Writes `key` only if absent: true when this call created it, false when it existed (untouched). */
  create(key: string, data: WriteSource): Promise<boolean>;
  /**
   * Replaces `key` only while its version is `expected` (null: only while
   * absent); the new version, or null when another writer changed it first
   * (nothing written).
   */
  compareAndSwap(key: string, data: Buffer, expected: string | null): Promise<string | null>;
}

/** Removals a driver without batch requests runs at once in removeMany (the filesystem: each syncs its folder, and concurrent syncs share the journal's commits). */
export const REMOVE_PARALLEL = 32;

/**
 * `fn` over `items`, at most `limit` at once; on the first failure no new item
 * is started, and once those in flight have settled that failure is thrown.
 */
export async function eachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { e: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (!failure && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (e) {
        failure ??= { e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.e;
}

const MAX_KEY_LENGTH = 4096;
const MAX_SEGMENT_LENGTH = 255;

/**
 * Rejects anything that could name a file outside the backend's root:
 * absolute paths, `.`/`..` segments, empty segments, backslashes, NUL bytes.
 */
export function validateKey(key: string): string {
  const bad = (why: string): never => {
    throw new CairnError('INVALID_PATH', `invalid path: ${why}`, { path: key.slice(0, 200) });
  };
  if (key.length === 0) bad('empty');
  if (key.length > MAX_KEY_LENGTH) bad('too long');
  if (key.charCodeAt(0) === 0x2f) bad('absolute');
  // One pass (every request's key goes through here, twice): segment by segment.
  let start = 0;
  let ascii = true;
  for (let i = 0; i <= key.length; i++) {
    const c = i === key.length ? 0x2f : key.charCodeAt(i);
    if (c === 0) bad('NUL byte');
    if (c === 0x5c) bad('backslash');
    if (c > 0x7f) ascii = false;
    if (c !== 0x2f) continue;
    const len = i - start;
    if (len === 0 || (len <= 2 && key.charCodeAt(start) === 0x2e && (len === 1 || key.charCodeAt(start + 1) === 0x2e))) bad(`illegal segment "${key.slice(start, i)}"`);
    if (len > MAX_SEGMENT_LENGTH || (!ascii && Buffer.byteLength(key.slice(start, i)) > MAX_SEGMENT_LENGTH)) bad('segment too long');
    start = i + 1;
    ascii = true;
  }
  return key;
}
