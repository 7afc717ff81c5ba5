import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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
}

export interface MetricsOptions {
  /** Process metrics (CPU, memory, event loop…); on by default. */
  defaultMetrics?: boolean;
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'cairn_' });

  const requests = new Counter({
    name: 'cairn_http_requests_total',
    help: 'HTTP requests answered, by route, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'cairn_http_request_duration_seconds',
    help: 'Time from request to the end of the response',
    labelNames: ['route', 'method'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers: [registry],
  });
  const bytes = new Counter({
    name: 'cairn_http_response_bytes_total',
    help: 'Response body bytes sent, by route',
    labelNames: ['route'] as const,
    registers: [registry],
  });
  const hits = new Counter({
    name: 'cairn_cache_hits_total',
    help: 'In-memory cache hits (entry present and still current)',
    labelNames: ['cache'] as const,
    registers: [registry],
  });
  const misses = new Counter({
    name: 'cairn_cache_misses_total',
    help: 'In-memory cache misses (absent or out of date)',
    labelNames: ['cache'] as const,
    registers: [registry],
  });

  return {
    registry,
    observeRequest(o) {
      const method = METHODS.has(o.method) ? o.method : 'OTHER';
      requests.inc({ route: o.route, method, status: String(o.status) });
      duration.observe({ route: o.route, method }, o.durationMs / 1000);
      if (o.bytes > 0) bytes.inc({ route: o.route }, o.bytes);
    },
    cacheHit: (cache) => hits.inc({ cache }),
    cacheMiss: (cache) => misses.inc({ cache }),
  };
}
