import { LRUCache } from 'lru-cache';
import type { Backend, BlobInfo } from '../../storage/backends/backend';

/**
 * Small hot files (config, refs, summary, metadata objects) kept in memory,
 * bounded by bytes. An entry is only ever used for the exact backend version
 * it was read at, and the caller stats the backend on every request: a file
 * rewritten behind our back (the `ostree` CLI updating a ref or the summary)
 * is a miss on the very next request. The cache saves the open/read/close, not
 * the freshness check.
 */
export interface FileCacheOptions {
  /** Total bytes held (default 64 MiB). */
  maxBytes?: number;
  /** Larger files are always streamed (default 256 KiB). */
  maxFileBytes?: number;
}

interface Entry {
  version: string;
  data: Buffer;
}

const ENTRY_OVERHEAD = 128;

export class FileCache {
  readonly maxFileBytes: number;
  private readonly lru: LRUCache<string, Entry>;

  constructor(opts: FileCacheOptions = {}) {
    const maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
    this.maxFileBytes = Math.min(opts.maxFileBytes ?? 256 * 1024, maxBytes);
    this.lru = new LRUCache<string, Entry>({
      maxSize: Math.max(1, maxBytes),
      sizeCalculation: (e, k) => e.data.length + k.length + ENTRY_OVERHEAD,
    });
  }

  /** Whether a file of this size is worth caching. */
  accepts(size: number): boolean {
    return size <= this.maxFileBytes;
  }

  /** The bytes of `key` at exactly `version`, if held. */
  get(backend: Backend, key: string, version: string): Buffer | undefined {
    const k = cacheKey(backend, key);
    const e = this.lru.get(k);
    if (!e) return undefined;
    if (e.version !== version) {
      this.lru.delete(k);
      return undefined;
    }
    return e.data;
  }

  set(backend: Backend, key: string, data: Buffer, info: BlobInfo): void {
    if (!this.accepts(data.length)) return;
    this.lru.set(cacheKey(backend, key), { version: info.version, data });
  }

  get size(): number {
    return this.lru.calculatedSize;
  }
}

/** Backends are created per request; their location names the repository. */
function cacheKey(backend: Backend, key: string): string {
  return `${backend.location}\0${key}`;
}
