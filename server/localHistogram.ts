import type { Registry } from 'prom-client';

/**
 * A Prometheus histogram with a fixed pair of labels, updated with one Map
 * lookup and two array writes per observation.
 *
 * prom-client's Histogram validates and hashes the label object on every
 * observe(), which was a few percent of a cached object's whole cost on the
 * read fast path. This one keeps plain counts per label pair and builds
 * prom-client's metric JSON only when the registry is read (/metrics, or a
 * worker's answer to the primary's aggregation), so it renders and aggregates
 * exactly like a prom-client histogram: `_bucket{le=…}` (cumulative, then
 * `+Inf`), `_sum`, `_count`.
 */

interface Series {
  labels: Record<string, string>;
  /** Observations per bucket, not cumulative; the last slot is above every bound. */
  counts: number[];
  sum: number;
  count: number;
}

export interface LocalHistogramOptions<L extends string> {
  name: string;
  help: string;
  labelNames: readonly [L, L];
  buckets: readonly number[];
  registers: Registry[];
}

export class LocalHistogram<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly labelNames: readonly [L, L];
  private readonly bounds: readonly number[];
  private series = new Map<string, Series>();

  constructor(opts: LocalHistogramOptions<L>) {
    this.name = opts.name;
    this.help = opts.help;
    this.labelNames = opts.labelNames;
    this.bounds = [...opts.buckets].sort((a, b) => a - b);
    for (const r of opts.registers) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** Label values must come from a bounded set (route names, methods). */
  observe(a: string, b: string, value: number): void {
    const k = a + '\0' + b;
    let s = this.series.get(k);
    if (!s) {
      s = { labels: { [this.labelNames[0]]: a, [this.labelNames[1]]: b }, counts: new Array<number>(this.bounds.length + 1).fill(0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]!) i++;
    s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  /** prom-client's metric JSON (what Registry and AggregatorRegistry read). */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: { labels: Record<string, string | number>; value: number; metricName: string }[] }> {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += s.counts[i]!;
        values.push({ labels: { le, ...s.labels }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.series = new Map();
  }
}
