// LocalHistogram (server/localHistogram.ts) stands in for prom-client's
// Histogram on the request path; scraped alone or aggregated across cluster
// workers, it must read exactly like the real one fed the same observations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AggregatorRegistry, Histogram, Registry } from 'prom-client';
import { LocalHistogram } from '../../server/localHistogram';
import { mulberry32 } from '../helpers/prng';

const buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1, 1, 10];

function pair(seed: number) {
  const real = new Registry();
  const local = new Registry();
  const h = new Histogram({ name: 'x_seconds', help: 'h', labelNames: ['route', 'method'] as const, buckets, registers: [real] });
  const l = new LocalHistogram({ name: 'x_seconds', help: 'h', labelNames: ['route', 'method'] as const, buckets, registers: [local] });
  const rnd = mulberry32(seed);
  const routes = ['repo_object', 'repo_file', 'api'];
  for (let i = 0; i < 5000; i++) {
    const route = routes[Math.floor(rnd() * routes.length)]!;
    const method = rnd() < 0.8 ? 'GET' : 'HEAD';
    // Values on the bucket bounds too: `le` is inclusive.
    const v = rnd() < 0.1 ? buckets[Math.floor(rnd() * buckets.length)]! : rnd() ** 4 * 20;
    h.observe({ route, method }, v);
    l.observe(route, method, v);
  }
  return { real, local };
}

test('renders the same exposition text as prom-client for the same observations', async () => {
  const { real, local } = pair(1);
  assert.equal(await local.metrics(), await real.metrics());
});

test('aggregates across workers like prom-client', async () => {
  const a = pair(2);
  const b = pair(3);
  const real = AggregatorRegistry.aggregate([await a.real.getMetricsAsJSON(), await b.real.getMetricsAsJSON()]);
  const local = AggregatorRegistry.aggregate([await a.local.getMetricsAsJSON(), await b.local.getMetricsAsJSON()]);
  assert.equal(await local.metrics(), await real.metrics());
});

test('reset empties it', async () => {
  const { local } = pair(4);
  local.resetMetrics();
  assert.doesNotMatch(await local.metrics(), /x_seconds_bucket/);
});
