import { LRUCache } from 'lru-cache';
import type { Backend, BlobInfo } from '../../storage/backends/backend';
import type { FixedHead } from './serve';

/**
 * Small hot files (config, refs, summary, metadata objects) kept in memory,
 * bounded by bytes. An entry is only ever used for the exact backend version
 * (inode, size, modification and change time) it was read at, and the caller
 * stats the backend on every request before asking: a file deleted, replaced
 * or repaired on disk — by Cairn, the `ostree` CLI or anyone — is a miss on
 * the very next request. Nothing is served from memory on trust.
 */
export interface FileCacheOptions {
  /** Total bytes held (default 64 MiB). */
  maxBytes?: number;
  /** Larger files are always streamed (default 256 KiB). */
  maxFileBytes?: number;
}

export interface CacheEntry {
  version: string;
  info: BlobInfo;
  data: Buffer;
  /** A content-addressed object's full 200 head, built on first use (server/files/serve.ts). */
  head?: FixedHead;
}

const ENTRY_OVERHEAD = 160;

export class FileCache {
  readonly maxFileBytes: number;
  private readonly lru: LRUCache<string, CacheEntry>;

  constructor(opts: FileCacheOptions = {}) {
    const maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
    this.maxFileBytes = Math.min(opts.maxFileBytes ?? 256 * 1024, maxBytes);
    this.lru = new LRUCache<string, CacheEntry>({
      maxSize: Math.max(1, maxBytes),
      sizeCalculation: (e, k) => e.data.length + k.length + ENTRY_OVERHEAD,
    });
  }

  /** Whether a file of this size is worth caching. */
  accepts(size: number): boolean {
    return size <= this.maxFileBytes;
  }

  /** The entry of `key` at exactly `version` (the one the caller just statted), if held. */
  get(backend: Backend, key: string, version: string): CacheEntry | undefined {
    const k = cacheKey(backend, key);
    const e = this.lru.get(k);
    if (!e) return undefined;
    if (e.version !== version) {
      this.lru.delete(k);
      return undefined;
    }
    return e;
  }

  /** Whether some version of `key` is held (no recency update): whether a request for it may be a hit. */
  holds(backend: Backend, key: string): boolean {
    return this.lru.has(cacheKey(backend, key));
  }

  set(backend: Backend, key: string, data: Buffer, info: BlobInfo): CacheEntry | undefined {
    if (!this.accepts(data.length)) return undefined;
    const e: CacheEntry = { version: info.version, info, data };
    this.lru.set(cacheKey(backend, key), e);
    return e;
  }

  get size(): number {
    return this.lru.calculatedSize;
  }
}

/** Backends may be created per request; their location names the repository. */
function cacheKey(backend: Backend, key: string): string {
  return `${backend.location}\0${key}`;
}
