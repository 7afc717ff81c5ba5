import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { LocalHistogram } from './localHistogram';

/**
 * Prometheus metrics. Each app owns its Registry (never prom-client's global
 * one) so that tests and embedders can build several apps in one process.
 * Labels are bounded: routes are named by the handler that served them
 * (`repo_object`, `healthz`, …), never by the raw path.
 */

export interface RequestObservation {
  route: string;
  method: string;
  status: number;
  bytes: number;
  durationMs: number;
}

export interface Metrics {
  readonly registry: Registry;
  observeRequest(o: RequestObservation): void;
  cacheHit(cache: string): void;
  cacheMiss(cache: string): void;
  /** A connection the HTTP/1.1 front gave to node's server. */
  frontHandOver(): void;
  /** A connection the HTTP/1.1 front refused at its limit of open connections. */
  frontRefused(): void;
  /** `n` refs moved in a repository (its metric label: see repoLabel). */
  refsUpdated(repo: string, n: number): void;
  /** An uploaded object refused, by reason (the error code: INVALID_OBJECT, CHECKSUM_MISMATCH, TOO_LARGE, …). */
  objectRefused(reason: string): void;
  /**
   * Where repository sizes come from (`cairn_repository_bytes`,
   * `cairn_repository_objects`): asked on a scrape when its last answer is
   * older than repoSizesMaxAgeMs (a minute); concurrent scrapes share one
   * computation, and a failed one keeps the last figures.
   */
  setRepositorySizes(source: RepoSizeSource): void;
}

/** The sizes of the repositories, labelled (see repoLabel). */
export type RepoSizeSource = () => Promise<Array<{ repo: string; bytes: number; objects: number }>>;

/** How old repository sizes may be before a scrape asks again. */
export const REPO_SIZES_MAX_AGE_MS = 60_000;

/**
 * The `repo` label of a repository: its name, or `_private` for every private
 * one together (/metrics is anonymous; private repositories' names are not
 * for anyone to see). Repository names cannot start with `_`.
 */
export function repoLabel(name: string, isPrivate: boolean): string {
  return isPrivate ? '_private' : name;
}

export interface MetricsOptions {
  /** Process metrics (CPU, memory, event loop…); on by default. */
  defaultMetrics?: boolean;
  /** How old repository sizes may be before a scrape computes them again (default REPO_SIZES_MAX_AGE_MS). */
  repoSizesMaxAgeMs?: number;
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'cairn_' });

  // Per request, only plain local counts are kept (one Map lookup by a joined
  // string); prom-client's label validation and hashing run only when the
  // registry is read (/metrics, or a worker's answer to the primary), in the
  // counters' collect hooks, which prom-client calls before every read. Safe:
  // nothing reads these counters but the registry, and every read goes through
  // get() → collect() first, so a scrape always sees every request answered
  // before it (exact values, as before).
  const pendingRequests = new Map<string, { route: string; method: string; status: string; n: number }>();
  const pendingBytes = new Map<string, number>();
  const pendingHits = new Map<string, number>();
  const pendingMisses = new Map<string, number>();

  new Counter({
    name: 'cairn_http_requests_total',
    help: 'HTTP requests answered, by route, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [registry],
    collect() {
      for (const p of pendingRequests.values()) {
        if (p.n > 0) this.inc({ route: p.route, method: p.method, status: p.status }, p.n);
        p.n = 0;
      }
    },
  });
  const duration = new LocalHistogram({
    name: 'cairn_http_request_duration_seconds',
    help: 'Time from request to the end of the response',
    labelNames: ['route', 'method'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers: [registry],
  });
  const flushInto = (pending: Map<string, number>, label: 'route' | 'cache') =>
    function (this: Counter<string>) {
      for (const [k, n] of pending) if (n > 0) this.inc({ [label]: k }, n);
      pending.clear();
    };
  new Counter({
    name: 'cairn_http_response_bytes_total',
    help: 'Response body bytes sent, by route',
    labelNames: ['route'] as const,
    registers: [registry],
    collect: flushInto(pendingBytes, 'route'),
  });
  new Counter({
    name: 'cairn_cache_hits_total',
    help: 'In-memory cache hits (entry present and still current)',
    labelNames: ['cache'] as const,
    registers: [registry],
    collect: flushInto(pendingHits, 'cache'),
  });
  new Counter({
    name: 'cairn_cache_misses_total',
    help: 'In-memory cache misses (absent or out of date)',
    labelNames: ['cache'] as const,
    registers: [registry],
    collect: flushInto(pendingMisses, 'cache'),
  });
  const add = (m: Map<string, number>, k: string, n: number) => m.set(k, (m.get(k) ?? 0) + n);
  const handOvers = new Counter({
    name: 'cairn_front_handovers_total',
    help: 'Connections the HTTP/1.1 front handed to the full HTTP server (a request it does not answer itself)',
    registers: [registry],
  });
  const refused = new Counter({
    name: 'cairn_front_refused_total',
    help: 'Connections refused with 503 because the server held its limit of open connections',
    registers: [registry],
  });

  const refUpdates = new Counter({
    name: 'cairn_ref_updates_total',
    help: 'Refs moved (created, moved, deleted) through the API, by repository (private ones together as _private)',
    labelNames: ['repo'] as const,
    registers: [registry],
  });
  const objectsRefused = new Counter({
    name: 'cairn_objects_refused_total',
    help: 'Uploaded objects refused, by reason (the error code answered: INVALID_OBJECT, CHECKSUM_MISMATCH, INVALID_GVARIANT, TOO_LARGE, INVALID_ARGUMENT, …)',
    labelNames: ['reason'] as const,
    registers: [registry],
  });

  // Repository sizes: computed from the storage (a listing and a stat per object), so at most once a minute.
  let sizeSource: RepoSizeSource | undefined;
  let sizes: Awaited<ReturnType<RepoSizeSource>> | undefined;
  let sizesAt = -Infinity;
  let refreshing: Promise<void> | undefined;
  const sizesMaxAge = opts.repoSizesMaxAgeMs ?? REPO_SIZES_MAX_AGE_MS;
  const currentSizes = async () => {
    if (sizeSource && !refreshing && Date.now() - sizesAt >= sizesMaxAge) {
      const source = sizeSource;
      refreshing = source()
        .then(
          (s) => void (sizes = s),
          () => undefined, // keep the last figures; try again after maxAge
        )
        .finally(() => {
          sizesAt = Date.now();
          refreshing = undefined;
        });
    }
    if (refreshing) await refreshing;
    return sizes ?? [];
  };
  // With --workers every process reports the same figures: the cluster's total takes one, not their sum.
  new Gauge({
    name: 'cairn_repository_bytes',
    help: 'Bytes of a repository\'s objects and deltas as stored (refreshed at most once a minute), by repository (private ones together as _private)',
    labelNames: ['repo'] as const,
    registers: [registry],
    aggregator: 'max',
    async collect() {
      this.reset();
      for (const s of await currentSizes()) this.inc({ repo: s.repo }, s.bytes);
    },
  });
  new Gauge({
    name: 'cairn_repository_objects',
    help: 'Objects in a repository (refreshed at most once a minute), by repository (private ones together as _private)',
    labelNames: ['repo'] as const,
    registers: [registry],
    aggregator: 'max',
    async collect() {
      this.reset();
      for (const s of await currentSizes()) this.inc({ repo: s.repo }, s.objects);
    },
  });

  return {
    registry,
    observeRequest(o) {
      const method = METHODS.has(o.method) ? o.method : 'OTHER';
      const status = String(o.status);
      // Labels are bounded (route names, methods, statuses), so is this map.
      const k = o.route + '\0' + method + '\0' + status;
      const p = pendingRequests.get(k);
      if (p) p.n++;
      else pendingRequests.set(k, { route: o.route, method, status, n: 1 });
      duration.observe(o.route, method, o.durationMs / 1000);
      if (o.bytes > 0) add(pendingBytes, o.route, o.bytes);
    },
    cacheHit: (cache) => add(pendingHits, cache, 1),
    cacheMiss: (cache) => add(pendingMisses, cache, 1),
    frontHandOver: () => handOvers.inc(),
    frontRefused: () => refused.inc(),
    refsUpdated: (repo, n) => {
      if (n > 0) refUpdates.inc({ repo }, n);
    },
    objectRefused: (reason) => objectsRefused.inc({ reason }),
    setRepositorySizes(source) {
      sizeSource = source;
      sizesAt = -Infinity;
    },
  };
}
