import type { RepoRegistry } from '../storage/repo/registry';
import { setVerifyProcesses } from '../storage/repo/verify-pool';
import { createApp, type Mount } from './app';
import { createServerContext } from './bootstrap';
import { isClusterWorker, startPrimary, workerChannel } from './cluster';
import { listen } from './listen';
import type { Logger } from './logging';
import { createMetrics } from './metrics';
import { instrumentDeltaJobs } from './jobs/metrics';
import { remoteDeltaJobService, serveDeltaJobCalls } from './jobs/service';
import { prewarmWorkers } from './jobs/worker';
import { remoteTraffic, serveTrafficCalls } from './api/traffic';
import { remoteWebhooks, serveWebhookCalls } from './api/webhooks';
import { instrumentScrub } from './jobs/maintenance-job';
import type { ServerContext } from './context';
import type { S3RedirectOptions } from './files/redirect';

export interface ServeOptions {
  dataDir: string;
  registry: RepoRegistry;
  port: number;
  host: string;
  mounts: Mount[];
  /** Processes answering requests; 1: everything in this process. */
  workers: number;
  logger: Logger;
  /** `--s3-redirect`: reads of content-addressed files on S3 redirected to presigned URLs. */
  s3Redirect?: S3RedirectOptions;
}

/**
 * `cairn serve`: the one way a process that answers requests is assembled —
 * context, metrics, app, HTTP/1.1 front, listen, stop on SIGTERM/SIGINT — in
 * single-process mode and in each `--workers` worker alike (they differ only
 * in where delta jobs run and where metric totals come from, server/cluster.ts).
 * The primary of a cluster answers no request: it forks the workers, runs the
 * job queue and adds up metrics. Resolves with the exit status once stopped.
 */
export async function serve(opts: ServeOptions): Promise<number> {
  const { logger } = opts;
  if (isClusterWorker()) {
    // Each of the N workers verifies uploads: the verification pool's size follows CPUs / N.
    setVerifyProcesses(opts.workers);
    return serveRequests(opts, 'worker');
  }
  await opts.registry.ensureDefault();
  if (opts.workers <= 1) return serveRequests(opts, 'single');

  // The primary: jobs and metric totals for the workers, no HTTP.
  const context = await createServerContext(opts.dataDir, opts.registry);
  const metrics = createMetrics();
  const jobs = context.deltaJobs!;
  jobs.setLogger(logger);
  prewarmWorkers(); // the delta compiles' thread, warm before the first push
  instrumentDeltaJobs(metrics.registry, jobs);
  startBackground(context, metrics, logger);
  const running = await startPrimary({
    workers: opts.workers,
    logger,
    metrics,
    onCall: serveWebhookCalls(context.webhooks!, serveTrafficCalls(context.traffic!, serveDeltaJobCalls(context.jobs!, opts.registry))),
  });
  logger.always('listening', listeningFields(opts, running.port, await opts.registry.list()));
  await onSignal(logger);
  await running.stop();
  await context.background?.close();
  await context.deltaJobs?.close();
  logger.info('stopped');
  return 0;
}

async function serveRequests(opts: ServeOptions, role: 'single' | 'worker'): Promise<number> {
  const { logger } = opts;
  const metrics = createMetrics();
  let stop: () => void = () => {};
  const channel = role === 'worker' ? workerChannel({ metrics, stop: () => stop() }) : undefined;
  // A worker's delta jobs run in the primary: the same service, as messages.
  // …and so is update traffic (one recorder for every worker: server/api/traffic.ts).
  const context = await createServerContext(opts.dataDir, opts.registry, channel ? { deltas: { remote: remoteDeltaJobService(channel.call) }, traffic: remoteTraffic(channel.call), webhooks: remoteWebhooks(channel.call) } : {});
  const app = createApp({ registry: opts.registry, mounts: opts.mounts, logger, context, metrics, s3Redirect: opts.s3Redirect });
  if (role === 'single') {
    prewarmWorkers(); // the delta compiles' thread, warm before the first push
    startBackground(context, metrics, logger);
  }
  let server;
  try {
    server = await listen(app, { port: opts.port, host: opts.host, front: app.locals.cairn.front });
  } catch (e) {
    channel?.listenFailed(e instanceof Error ? e.message : String(e));
    throw e;
  }
  const stopped = new Promise<void>((done) => {
    let closing: Promise<void> | undefined;
    stop = () => void (closing ??= server.close().then(done));
  });
  if (channel) channel.listening(server.port);
  else logger.always('listening', listeningFields(opts, server.port, await opts.registry.list()));
  if (role === 'single') void onSignal(logger).then(() => stop());
  await stopped;
  // Delta jobs stop here (a running compile is stopped: its writes are crash-safe) and wait in the
  // store as queued records for the next replica or start (server/jobs/durable.ts). The scrub saves its position.
  await context.background?.close();
  await context.deltaJobs?.close();
  if (role === 'single') logger.info('stopped');
  return 0;
}

/** Scheduled maintenance, the scrub and webhook deliveries, in the process that runs the job queue. */
function startBackground(context: ServerContext, metrics: ReturnType<typeof createMetrics>, logger: Logger): void {
  if (!context.background) return;
  instrumentScrub(metrics.registry, context.background.scheduler);
  context.background.start(logger);
}

function listeningFields(opts: ServeOptions, port: number, repos: string[]) {
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return { host: opts.host, port, url: `http://${host}:${port}`, data: opts.dataDir, repos, mounts: opts.mounts, workers: Math.max(1, opts.workers) };
}

/** Resolves on the first SIGTERM or SIGINT; a second one while stopping ends the process at once. */
function onSignal(logger: Logger): Promise<void> {
  return new Promise((done) => {
    const on = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      process.once(signal, () => process.exit(1));
      logger.info('stopping', { signal });
      done();
    };
    process.once('SIGTERM', on);
    process.once('SIGINT', on);
  });
}
