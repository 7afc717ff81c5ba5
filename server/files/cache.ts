import { LRUCache } from 'lru-cache';
import type { Backend, BlobInfo } from '../../storage/backends/backend';
import type { FixedHead } from './serve';

/**
 * Small hot files (config, refs, summary, metadata objects) kept in memory,
 * bounded by bytes. An entry is only ever used for the exact backend version
 * it was read at, and for every file that can change the caller stats the
 * backend on every request: a file rewritten behind our back (the `ostree` CLI
 * updating a ref or the summary) is a miss on the very next request.
 *
 * The one exception is `trusted()`: content-addressed objects (a key whose
 * name is the checksum of its bytes) cannot change, only appear or disappear
 * (prune, a deleted repository). Their entries are served without a stat for
 * TRUST_MS after the last time the backend confirmed them; after that the
 * next request stats again (and refreshes or drops the entry). So a deleted
 * object is served for at most TRUST_MS, never forever.
 */
export interface FileCacheOptions {
  /** Total bytes held (default 64 MiB). */
  maxBytes?: number;
  /** Larger files are always streamed (default 256 KiB). */
  maxFileBytes?: number;
  /** How long a content-addressed entry is served without asking the backend (default 5 s; 0 never). */
  trustMs?: number;
}

export interface CacheEntry {
  version: string;
  info: BlobInfo;
  data: Buffer;
  /** When the backend last confirmed this version (Date.now()). */
  checkedAt: number;
  /** A content-addressed object's full 200 head, built on first use (server/files/serve.ts). */
  head?: FixedHead;
}

const ENTRY_OVERHEAD = 160;

export class FileCache {
  readonly maxFileBytes: number;
  readonly trustMs: number;
  private readonly lru: LRUCache<string, CacheEntry>;

  constructor(opts: FileCacheOptions = {}) {
    const maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
    this.maxFileBytes = Math.min(opts.maxFileBytes ?? 256 * 1024, maxBytes);
    this.trustMs = opts.trustMs ?? 5_000;
    this.lru = new LRUCache<string, CacheEntry>({
      maxSize: Math.max(1, maxBytes),
      sizeCalculation: (e, k) => e.data.length + k.length + ENTRY_OVERHEAD,
    });
  }

  /** Whether a file of this size is worth caching. */
  accepts(size: number): boolean {
    return size <= this.maxFileBytes;
  }

  /**
   * The entry of a content-addressed key if the backend confirmed it less than
   * trustMs ago. Only for keys whose bytes cannot change (see above).
   */
  trusted(backend: Backend, key: string, now: number): CacheEntry | undefined {
    const e = this.lru.get(cacheKey(backend, key));
    return e && now - e.checkedAt < this.trustMs ? e : undefined;
  }

  /** The bytes of `key` at exactly `version`, if held; a hit counts as a confirmation (the caller just statted). */
  get(backend: Backend, key: string, version: string): Buffer | undefined {
    const k = cacheKey(backend, key);
    const e = this.lru.get(k);
    if (!e) return undefined;
    if (e.version !== version) {
      this.lru.delete(k);
      return undefined;
    }
    e.checkedAt = Date.now();
    return e.data;
  }

  set(backend: Backend, key: string, data: Buffer, info: BlobInfo): void {
    if (!this.accepts(data.length)) return;
    this.lru.set(cacheKey(backend, key), { version: info.version, info, data, checkedAt: Date.now() });
  }

  get size(): number {
    return this.lru.calculatedSize;
  }
}

/** Backends may be created per request; their location names the repository. */
function cacheKey(backend: Backend, key: string): string {
  return `${backend.location}\0${key}`;
}
