import type { Readable } from 'node:stream';
import { CairnError } from '../errors';
import { type Backend, type BlobInfo, type BlobReader, type ByteRange, type Driver, type HeldLock, type Maybe, type PreparedWrite, type WriteSource, validateKey } from './backend';

/**
 * Every driver with the whole interface, so callers never test for optional
 * methods: `full(driver)` passes through what the driver has and supplies
 * the rest. FsBackend and S3Backend implement Backend themselves (full()
 * returns them as they are); this is for any other Driver.
 *
 * | method | a driver without it gets |
 * |---|---|
 * | openReader | positional reads as ranged openRead calls, pinned to the version opened (a replaced key fails the next read with CONFLICT, never mixes versions) |
 * | prepare | the bytes gathered in memory, written at commit() |
 * | lock | a lock within this process only (HeldLock.confirm: nothing to check, as for a driver's own lock) |
 * | sweep | nothing to sweep: [] |
 * | removeMany | every key validated, then removed one after another with the driver's remove |
 * | touch | the blob rewritten with its own bytes (a new mtime) |
 * | statFast / readFast | the driver's statNow / readNow (a value now: `blocking`), else a promise of stat / read |
 * | create | write-once under the driver's lock `cas` (stat, then write if absent) |
 * | compareAndSwap | under the driver's lock `cas`: stat, compare the version, write, stat |
 *
 * The lock-based create and compareAndSwap are atomic against every other
 * create/compareAndSwap through the same lock (lockedCreate,
 * lockedCompareAndSwap: FsBackend's use its lock files, so any process
 * sharing the folder); a plain write() bypasses them.
 */
export type FullBackend = Backend;

const wrapped = new WeakMap<Driver, Full>();

/** The full interface over `b`: a Backend as it is; a Driver wrapped (the same wrapper for the same driver). */
export function full(b: Driver | Backend): Backend {
  if (isComplete(b)) return b;
  let f = wrapped.get(b);
  if (!f) {
    f = new Full(b);
    wrapped.set(b, f);
  }
  return f;
}

/** A lock no one takes from a live holder (a driver's Driver.lock, this process's queue): confirm() has nothing to check. */
function neverTakenOver(release: () => Promise<void>): HeldLock {
  return Object.assign(release, { confirm: () => Promise.resolve() });
}

/** The driver under full()'s wrapper (`b` itself for a complete Backend). */
export function driverOf(b: Backend): Driver | Backend {
  return b instanceof Full ? b.driver : b;
}

function isComplete(b: Driver | Backend): b is Backend {
  if (b instanceof Full) return true;
  const c = b as Partial<Backend>;
  return (
    typeof c.blocking === 'boolean' &&
    typeof c.openReader === 'function' &&
    typeof c.prepare === 'function' &&
    typeof c.lock === 'function' &&
    typeof c.sweep === 'function' &&
    typeof c.touch === 'function' &&
    typeof c.removeMany === 'function' &&
    typeof c.statFast === 'function' &&
    typeof c.readFast === 'function' &&
    typeof c.create === 'function' &&
    typeof c.compareAndSwap === 'function'
  );
}

/** In-process locks of drivers without lock(): one queue per driver and name. */
const localLocks = new WeakMap<Driver, Map<string, Promise<void>>>();

/** create() as "stat, then write if absent" under `lock('cas')`. */
export async function lockedCreate(b: Pick<Backend, 'lock' | 'stat' | 'write'>, key: string, data: WriteSource): Promise<boolean> {
  validateKey(key);
  const release = await b.lock('cas');
  try {
    if (await b.stat(key)) return false;
    await b.write(key, data);
    return true;
  } finally {
    await release();
  }
}

/** compareAndSwap() as "stat, compare, write, stat" under `lock('cas')`. */
export async function lockedCompareAndSwap(b: Pick<Backend, 'lock' | 'stat' | 'write'>, key: string, data: Buffer, expected: string | null): Promise<string | null> {
  validateKey(key);
  const release = await b.lock('cas');
  try {
    const cur = await b.stat(key);
    if ((cur?.version ?? null) !== expected) return null;
    await b.write(key, data);
    const now = await b.stat(key);
    if (!now) throw new CairnError('IO', `storage error on ${key}: gone right after it was written`, { path: key });
    return now.version;
  } finally {
    await release();
  }
}

class Full implements Backend {
  readonly blocking: boolean;

  constructor(readonly driver: Driver) {
    this.blocking = typeof driver.statNow === 'function' && typeof driver.readNow === 'function';
  }

  get location(): string {
    return this.driver.location;
  }

  stat(key: string): Promise<BlobInfo | null> {
    return this.driver.stat(key);
  }

  read(key: string): Promise<{ data: Buffer; info: BlobInfo } | null> {
    return this.driver.read(key);
  }

  openRead(key: string, range?: ByteRange): Promise<{ stream: Readable; info: BlobInfo } | null> {
    return this.driver.openRead(key, range);
  }

  write(key: string, data: WriteSource): Promise<void> {
    return this.driver.write(key, data);
  }

  remove(key: string): Promise<void> {
    return this.driver.remove(key);
  }

  async removeMany(keys: readonly string[]): Promise<void> {
    if (this.driver.removeMany) return this.driver.removeMany(keys);
    for (const k of keys) validateKey(k);
    for (const k of keys) await this.driver.remove(k);
  }

  ensurePrefixes(prefixes: string[]): Promise<void> {
    return this.driver.ensurePrefixes(prefixes);
  }

  list(prefix: string): AsyncIterable<string> {
    return this.driver.list(prefix);
  }

  async touch(key: string): Promise<void> {
    if (this.driver.touch) return this.driver.touch(key);
    const o = await this.driver.openRead(key);
    if (o) await this.driver.write(key, o.stream as AsyncIterable<Buffer>);
  }

  statFast(key: string): Maybe<BlobInfo | null> {
    return this.blocking ? this.driver.statNow!(key) : this.driver.stat(key);
  }

  readFast(key: string): Maybe<{ data: Buffer; info: BlobInfo } | null> {
    return this.blocking ? this.driver.readNow!(key) : this.driver.read(key);
  }

  async openReader(key: string): Promise<BlobReader | null> {
    if (this.driver.openReader) return this.driver.openReader(key);
    const info = await this.driver.stat(key);
    if (!info) return null;
    let closed = false;
    return {
      info,
      read: async (buffer, length, position) => {
        if (closed) throw new CairnError('INVALID_ARGUMENT', 'reader closed');
        const end = Math.min(position + length, info.size);
        if (length <= 0 || position >= end) return 0;
        const o = await this.driver.openRead(key, { start: position, end: end - 1 });
        if (!o || o.info.version !== info.version) {
          o?.stream.destroy();
          throw new CairnError('CONFLICT', `${key} changed while it was read`, { path: key });
        }
        let n = 0;
        for await (const chunk of o.stream) {
          const c = chunk as Buffer;
          const take = Math.min(c.length, length - n);
          c.copy(buffer, n, 0, take);
          n += take;
        }
        return n;
      },
      close: async () => {
        closed = true;
      },
    };
  }

  async prepare(key: string, data: WriteSource): Promise<PreparedWrite> {
    if (this.driver.prepare) return this.driver.prepare(key, data);
    validateKey(key);
    const chunks: Buffer[] = [];
    if (Buffer.isBuffer(data)) chunks.push(data);
    else for await (const c of data) chunks.push(Buffer.from(c));
    const bytes = Buffer.concat(chunks);
    let done = false;
    return {
      commit: async () => {
        if (done) throw new CairnError('INVALID_ARGUMENT', `write of ${key} already committed or discarded`);
        done = true;
        await this.driver.write(key, bytes);
      },
      discard: async () => {
        done = true;
      },
    };
  }

  lock(name: string): Promise<HeldLock> {
    if (this.driver.lock) return this.driver.lock(name).then(neverTakenOver);
    if (!/^[a-z0-9-]{1,64}$/.test(name)) throw new CairnError('INVALID_ARGUMENT', `invalid lock name ${name.slice(0, 80)}`);
    let queues = localLocks.get(this.driver);
    if (!queues) {
      queues = new Map();
      localLocks.set(this.driver, queues);
    }
    const prev = queues.get(name) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    queues.set(name, tail);
    return prev.then(() =>
      neverTakenOver(async () => {
        release();
        if (queues.get(name) === tail) queues.delete(name);
      }),
    );
  }

  sweep(opts?: { graceMs?: number }): Promise<string[]> {
    return this.driver.sweep ? this.driver.sweep(opts) : Promise.resolve([]);
  }

  create(key: string, data: WriteSource): Promise<boolean> {
    if (this.driver.create) return this.driver.create(key, data);
    return lockedCreate(this, key, data);
  }

  compareAndSwap(key: string, data: Buffer, expected: string | null): Promise<string | null> {
    if (this.driver.compareAndSwap) return this.driver.compareAndSwap(key, data, expected);
    return lockedCompareAndSwap(this, key, data, expected);
  }
}
