import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { performance } from 'node:perf_hooks';
import type { Backend } from '../backends/backend';

/**
 * What this process stored, verified, moments ago: per repository store, the
 * objects an upload created (storage/repo/ingest.ts) and, for small metadata,
 * their verified bytes. A publish's completeness walk (closure.ts
 * walkCommitTree, from updateRefs) takes an object found here as present
 * instead of asking the store again: on S3 that is one HEAD per object (and a
 * HEAD and a GET per dirtree) that the push's own upload answered seconds before.
 *
 * Why that answer is still true when the walk uses it. An entry's time is
 * taken before the write was sent, so the stored object's mtime (the store's
 * Last-Modified, or the file's) is not earlier than it. Objects leave
 * objects/ in three ways:
 *  - gc deletes only what is older than its grace window, by the store's
 *    clock (storage/maintenance/gc.ts): a gc that started before the entry's
 *    time counts the object young and keeps it whatever its grace; one that
 *    starts later, in any process or replica, can delete it only once it is
 *    older than that gc's grace. An entry is trusted for PRESENCE_TTL_MS
 *    (1 min: a sixtieth of gc's default grace of 1 h), so the walk never
 *    trusts an entry a gc with a grace of a minute or more could have
 *    collected. A gc with a shorter grace can collect objects of a push that
 *    takes longer than that grace (the limit gc.ts states for pushes in
 *    flight), in any process or replica: so each gc round that deletes
 *    anything first changes the store's gc epoch (GC_EPOCH_KEY, a random
 *    value; gc in this process also clears the store's entries at once). An
 *    entry carries the epoch this process last read from the store before
 *    the entry was made (objects/missing and every walk read it), and the
 *    walk, under the `refs` lock every gc round also holds, trusts only
 *    entries of the epoch it reads now: an unchanged epoch means no round
 *    deleted anything since before the entry was made. An entry made before
 *    this process read any epoch is not trusted.
 *  - fsck --repair and the scrub move a corrupt object to quarantine (in any
 *    process): the walk lists the quarantine once (closure.ts) and drops
 *    what it names (forget) before it trusts an entry.
 *  - prune removes commits of a ref's history, never one a ref update is
 *    publishing, and the static-delta applier removes only a commit it wrote
 *    itself; neither is an upload's.
 * An object found already stored by an upload is not entered: its age is not
 * known, so gc may take it at any moment (the walk asks the store, as before).
 *
 * Bounded: at most MAX_ENTRIES entries over all stores, and MAX_BYTES of
 * kept bytes (metadata objects up to MAX_KEPT_BYTES each), least recently
 * used first out. Per process (each `cairn serve` worker has its own): a
 * ref update that lands on another worker or replica than the uploads finds
 * nothing here and asks the store.
 */

/** How long an entry is trusted, from the moment before its write was sent (see above). */
export const PRESENCE_TTL_MS = 60_000;
const MAX_ENTRIES = 200_000;
const MAX_BYTES = 64 * 1024 * 1024;
/** Metadata objects up to this size are kept with their bytes (dirtrees, dirmetas, commits mostly are). */
export const MAX_KEPT_BYTES = 64 * 1024;
/** What an entry without bytes counts for in MAX_BYTES: its key and bookkeeping, roughly. */
const ENTRY_COST = 160;

interface Entry {
  /** performance.now() before the write was sent. */
  at: number;
  /** The store's gc epoch as this process last read it before the entry (undefined: none read yet). */
  epoch: string | undefined;
  /** The verified bytes of a small metadata object; null otherwise. */
  bytes: Buffer | null;
}

/** Taken before a write (PresenceMemo.mark): when, and in which gc epoch as this process last read it. */
export interface Mark {
  at: number;
  epoch: string | undefined;
}

/** What a lookup knows: the object is present, with its bytes if they were kept. */
export interface Known {
  bytes: Buffer | null;
}

export class PresenceMemo {
  private readonly entries: LRUCache<string, Entry>;
  /** Per store location: its gc epoch as last read. */
  private readonly epochs = new Map<string, string>();
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(opts: { ttlMs?: number; maxEntries?: number; maxBytes?: number; now?: () => number } = {}) {
    this.ttlMs = opts.ttlMs ?? PRESENCE_TTL_MS;
    this.now = opts.now ?? (() => performance.now());
    this.entries = new LRUCache<string, Entry>({
      max: opts.maxEntries ?? MAX_ENTRIES,
      maxSize: opts.maxBytes ?? MAX_BYTES,
      sizeCalculation: (e) => ENTRY_COST + (e.bytes?.length ?? 0),
    });
  }

  /**
   * The moment and the store's gc epoch (as last read) to pass to `stored`: take it before
   * sending the write. (The epoch of the moment before the write, not of its end: a gc round
   * could bump the epoch and delete the object while it is written, and another request read
   * the new epoch meanwhile.)
   */
  mark(backend: Backend): Mark {
    return { at: this.now(), epoch: this.epochs.get(backend.location) };
  }

  /**
   * `key` of `backend` was written by this process, its bytes verified first,
   * with the write sent after `mark` (mark()). `bytes`: the object's bytes,
   * kept when small (metadata the walk reads).
   */
  stored(backend: Backend, key: string, mark: Mark, bytes?: Buffer): void {
    const kept = bytes && bytes.length <= MAX_KEPT_BYTES ? bytes : null;
    this.entries.set(memoKey(backend, key), { at: mark.at, bytes: kept, epoch: mark.epoch });
  }

  /** The store's gc epoch as just read (readGcEpoch): what later entries carry. */
  noteEpoch(backend: Backend, epoch: string): void {
    if (!this.epochs.has(backend.location) && this.epochs.size >= MAX_EPOCHS) this.epochs.clear();
    this.epochs.set(backend.location, epoch);
  }

  /**
   * The object as this process stored it less than the TTL ago, in gc epoch
   * `epoch` (the store's, read by the caller under the `refs` lock; by default
   * the one this process read last: a hint only); undefined when not known so.
   */
  get(backend: Backend, key: string, epoch: string | undefined = this.epochs.get(backend.location)): Known | undefined {
    const k = memoKey(backend, key);
    const e = this.entries.get(k);
    if (!e) return undefined;
    if (e.epoch === undefined || e.epoch !== epoch || this.now() - e.at >= this.ttlMs) {
      this.entries.delete(k);
      return undefined;
    }
    return { bytes: e.bytes };
  }

  /** Drops one object of a store (it was removed, or may have been). */
  forget(backend: Backend, key: string): void {
    this.entries.delete(memoKey(backend, key));
  }

  /** Drops every object of a store (a gc starts in this process). */
  forgetStore(backend: Backend): void {
    const prefix = `${backend.location}\0`;
    for (const k of [...this.entries.keys()]) if (k.startsWith(prefix)) this.entries.delete(k);
  }

  /** Whether the memo holds anything of `backend`'s store (cheap when it holds nothing at all). */
  holdsAny(backend: Backend): boolean {
    if (this.entries.size === 0) return false;
    const prefix = `${backend.location}\0`;
    for (const k of this.entries.keys()) if (k.startsWith(prefix)) return true;
    return false;
  }
}

/** Entries are per store: a repository that lacks an object must not see another's copy. */
function memoKey(backend: Backend, key: string): string {
  return `${backend.location}\0${key}`;
}

/** The process's memo: ingest enters, the completeness walk reads, gc clears. */
export const presence = new PresenceMemo();

/** Stores whose epoch is remembered at most (beyond: all forgotten, entries then untrusted). */
const MAX_EPOCHS = 4096;

/** Where a store's gc epoch lives (local state, never served); absent: no gc ever deleted anything there. */
export const GC_EPOCH_KEY = 'state/cairn/gc-epoch';
const NO_EPOCH = 'none';

/** The store's gc epoch now, also noted as this process's latest (see the module comment). */
export async function readGcEpoch(backend: Backend): Promise<string> {
  const got = await backend.read(GC_EPOCH_KEY);
  const epoch = got ? got.data.toString('utf8').trim() || NO_EPOCH : NO_EPOCH;
  presence.noteEpoch(backend, epoch);
  return epoch;
}

/** A new gc epoch for the store, before a gc round deletes (under the `refs` lock); true once written. */
export async function bumpGcEpoch(backend: Backend): Promise<boolean> {
  await backend.write(GC_EPOCH_KEY, Buffer.from(`${randomBytes(16).toString('hex')}\n`));
  presence.forgetStore(backend);
  return true;
}
