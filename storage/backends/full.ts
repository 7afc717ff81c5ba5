import type { Readable } from 'node:stream';
import { CairnError } from '../errors';
import { type Backend, type BlobInfo, type BlobReader, type ByteRange, type PreparedWrite, type WriteSource, validateKey } from './backend';

/**
 * Every driver with the whole interface, so callers never test for optional
 * methods: `full(backend)` passes through what the driver has and supplies
 * the rest.
 *
 * | method | a driver without it gets |
 * |---|---|
 * | openReader | positional reads as ranged openRead calls, pinned to the version opened (a replaced key fails the next read with CONFLICT, never mixes versions) |
 * | prepare | the bytes gathered in memory, written at commit() |
 * | lock | a lock within this process only (as storage/repo/mutex.ts gives today) |
 * | sweep | nothing to sweep: [] |
 * | statNow / readNow | statFast / readFast: the driver's statNow / readNow (a value now: `blocking`), else a promise of stat / read |
 * | create | write-once under the driver's lock `cas` (stat, then write if absent) |
 * | compareAndSwap | under the driver's lock `cas`: stat, compare the version, write, stat |
 *
 * The lock-based create and compareAndSwap (the filesystem's) are atomic
 * against every other create/compareAndSwap through `full()` of the same
 * storage, in any process sharing it (the filesystem's lock files); a plain
 * write() bypasses them. S3Backend has both natively (If-None-Match /
 * If-Match), atomic against every writer.
 */
export interface FullBackend extends Omit<Backend, 'statNow' | 'readNow'> {
  /** The driver wrapped (for its own extras: FsBackend's root, S3Backend's bucket). */
  readonly driver: Backend;
  /** Whether statFast/readFast answer at once (local storage) rather than with a promise. */
  readonly blocking: boolean;
  openReader(key: string): Promise<BlobReader | null>;
  prepare(key: string, data: WriteSource): Promise<PreparedWrite>;
  lock(name: string): Promise<() => Promise<void>>;
  sweep(opts?: { graceMs?: number }): Promise<string[]>;
  /** stat without a thread-pool round trip where the driver can (its Backend.statNow); else a promise of stat(). */
  statFast(key: string): BlobInfo | null | Promise<BlobInfo | null>;
  /** read likewise (the driver's readNow, else a promise of read()). */
  readFast(key: string): { data: Buffer; info: BlobInfo } | null | Promise<{ data: Buffer; info: BlobInfo } | null>;
  /** Writes `key` only if absent: true when this call created it, false when it existed (untouched). */
  create(key: string, data: WriteSource): Promise<boolean>;
  /**
   * Replaces `key` only while its version is `expected` (null: only while
   * absent); the new version, or null when another writer changed it first
   * (nothing written).
   */
  compareAndSwap(key: string, data: Buffer, expected: string | null): Promise<string | null>;
}

/** The optional extras a driver may implement natively (S3Backend does). */
interface CasDriver {
  create?(key: string, data: WriteSource): Promise<boolean>;
  compareAndSwap?(key: string, data: Buffer, expected: string | null): Promise<string | null>;
}

const wrapped = new WeakMap<Backend, FullBackend>();

/** The full interface over `b` (the same object for the same driver; a FullBackend is returned as it is). */
export function full(b: Backend | FullBackend): FullBackend {
  if (isFull(b)) return b;
  let f = wrapped.get(b);
  if (!f) {
    f = new Full(b);
    wrapped.set(b, f);
  }
  return f;
}

function isFull(b: Backend | FullBackend): b is FullBackend {
  return b instanceof Full;
}

/** In-process locks of drivers without lock(): one queue per driver and name. */
const localLocks = new WeakMap<Backend, Map<string, Promise<void>>>();

class Full implements FullBackend {
  readonly blocking: boolean;

  constructor(readonly driver: Backend) {
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

  ensurePrefixes(prefixes: string[]): Promise<void> {
    return this.driver.ensurePrefixes(prefixes);
  }

  list(prefix: string): AsyncIterable<string> {
    return this.driver.list(prefix);
  }

  statFast(key: string): BlobInfo | null | Promise<BlobInfo | null> {
    return this.blocking ? this.driver.statNow!(key) : this.driver.stat(key);
  }

  readFast(key: string): { data: Buffer; info: BlobInfo } | null | Promise<{ data: Buffer; info: BlobInfo } | null> {
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

  lock(name: string): Promise<() => Promise<void>> {
    if (this.driver.lock) return this.driver.lock(name);
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
    return prev.then(() => async () => {
      release();
      if (queues.get(name) === tail) queues.delete(name);
    });
  }

  sweep(opts?: { graceMs?: number }): Promise<string[]> {
    return this.driver.sweep ? this.driver.sweep(opts) : Promise.resolve([]);
  }

  async create(key: string, data: WriteSource): Promise<boolean> {
    const native = (this.driver as Backend & CasDriver).create;
    if (native) return native.call(this.driver, key, data);
    validateKey(key);
    const release = await this.lock('cas');
    try {
      if (await this.driver.stat(key)) return false;
      await this.driver.write(key, data);
      return true;
    } finally {
      await release();
    }
  }

  async compareAndSwap(key: string, data: Buffer, expected: string | null): Promise<string | null> {
    const native = (this.driver as Backend & CasDriver).compareAndSwap;
    if (native) return native.call(this.driver, key, data, expected);
    validateKey(key);
    const release = await this.lock('cas');
    try {
      const cur = await this.driver.stat(key);
      if ((cur?.version ?? null) !== expected) return null;
      await this.driver.write(key, data);
      const now = await this.driver.stat(key);
      if (!now) throw new CairnError('IO', `storage error on ${key}: gone right after it was written`, { path: key });
      return now.version;
    } finally {
      await release();
    }
  }
}
