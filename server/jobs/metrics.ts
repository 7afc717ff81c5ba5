import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ClaimOutcome, DeltaJobs, OnDemandResult } from './deltas';
import type { Job } from './queue';

/**
 * Prometheus metrics of the job queue and of on-demand deltas, registered on
 * an app's registry (see server/metrics.ts: one registry per app, never the
 * global one). Labels are bounded: kinds, states and result names only.
 */
export function instrumentDeltaJobs(registry: Registry, deltas: DeltaJobs): void {
  const queue = deltas.queue;
  new Gauge({
    name: 'cairn_jobs_queued',
    help: 'Jobs waiting in the background queue',
    registers: [registry],
    collect() {
      this.set(queue.stats().queued);
    },
  });
  new Gauge({
    name: 'cairn_jobs_running',
    help: 'Jobs running (each in a worker thread)',
    registers: [registry],
    collect() {
      this.set(queue.stats().running);
    },
  });
  new Gauge({
    name: 'cairn_jobs_queue_limit',
    help: 'Most jobs that may wait; beyond it new jobs are refused',
    registers: [registry],
    collect() {
      this.set(queue.stats().maxQueued);
    },
  });
  new Gauge({
    name: 'cairn_jobs_by_state',
    help: 'Jobs the queue holds, by kind and state: queued, running, and done or failed within the last hour (finished records are kept that long)',
    labelNames: ['kind', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const j of queue.list()) this.inc({ kind: j.kind, state: j.state });
    },
  });
  const finished = new Counter({
    name: 'cairn_jobs_total',
    help: 'Jobs finished, by kind and final state (done, failed)',
    labelNames: ['kind', 'state'] as const,
    registers: [registry],
  });
  const refused = new Counter({
    name: 'cairn_jobs_refused_total',
    help: 'Jobs not queued because the queue was full or closed',
    labelNames: ['kind', 'reason'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'cairn_job_duration_seconds',
    help: 'Time a job ran, by kind and final state',
    labelNames: ['kind', 'state'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600],
    registers: [registry],
  });
  const onDemand = new Counter({
    name: 'cairn_delta_ondemand_total',
    help: 'Requests for a missing from→to delta superblock, by what Cairn did: queued, duplicate (already queued), exists, full (queue refused), ineligible (unknown commit, not a ref head, not a version the ref held or a recent parent, or a repository Cairn does not own), limited (the repository\'s on-demand rate limit), busy (too many decisions at once), error',
    labelNames: ['result'] as const,
    registers: [registry],
  });

  const claims = new Counter({
    name: 'cairn_delta_job_claims_total',
    help: "Delta jobs started here, by what their durable record decided: claimed (run here), taken-over (run here, another replica's lease had run out), exists (the delta was there), elsewhere (another replica runs or ran it), cancelled (obsolete), failed (its run failed on another replica)",
    labelNames: ['outcome'] as const,
    registers: [registry],
  });

  queue.on('finished', (job: Job, ms: number) => {
    finished.inc({ kind: job.kind, state: job.state });
    duration.observe({ kind: job.kind, state: job.state }, ms / 1000);
  });
  queue.on('refused', (kind: string, reason: string) => refused.inc({ kind, reason }));
  deltas.on('ondemand', (result: OnDemandResult) => onDemand.inc({ result }));
  deltas.on('claim', (outcome: ClaimOutcome) => claims.inc({ outcome }));
}
