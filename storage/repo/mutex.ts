import { AsyncLocalStorage } from 'node:async_hooks';
import type { Backend, HeldLock } from '../backends/backend';

/**
 * A per-key async mutex for this process: ref moves and summary regeneration
 * of one repository are serialised so that a slower writer can never publish
 * a summary older than the refs. `withRepoLock` adds the backend's
 * cross-process lock (a lock file for the filesystem driver) inside the
 * in-process one, so that `cairn serve --workers N`, `cairn commit` and
 * `cairn delta` sharing a data folder are serialised too; the in-process
 * queue in front means a process contends for the file with one waiter only.
 */
const tails = new Map<string, Promise<void>>();

export async function withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = tails.get(key) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const tail = prev.then(() => mine);
  tails.set(key, tail);
  await prev;
  try {
    return await fn();
  } finally {
    release();
    if (tails.get(key) === tail) tails.delete(key);
  }
}

/** The store locks the current async context holds (withRepoLock, nested), for confirmLocks. */
const held = new AsyncLocalStorage<HeldLock[]>();
/** Locks whose critical section is over: work started inside one (a delta job queued by a publish) outlives it and must not confirm it. */
const over = new WeakSet<HeldLock>();

/** The repository-wide lock `name` (e.g. `refs`, `summary`) of `backend`, in this process and across processes. */
export function withRepoLock<T>(backend: Backend, name: string, fn: () => Promise<T>): Promise<T> {
  return withLock(`${name}:${backend.location}`, async () => {
    const lock = await backend.lock(name);
    try {
      return await held.run([...(held.getStore() ?? []), lock], fn);
    } finally {
      over.add(lock);
      await lock();
    }
  });
}

/**
 * Confirms that every store lock the caller holds (withRepoLock, however
 * nested) is still its own, extending each (HeldLock.confirm); CONFLICT when
 * one was taken over after a stall longer than its lease. Called right
 * before a commit point (the publish journal), so a holder that lost its
 * lock switches nothing. Outside any lock it does nothing.
 */
export async function confirmLocks(): Promise<void> {
  for (const lock of held.getStore() ?? []) if (!over.has(lock)) await lock.confirm();
}
