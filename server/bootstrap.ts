import { DEFAULT_INGEST_LIMITS } from '../storage/repo/ingest';
import type { RepoSigner } from '../storage/repo/publish';
import type { RepoRegistry } from '../storage/repo/registry';
import type { Repo } from '../storage/repo/repo';
import { SettingsStore } from '../storage/repo/settings';
import { ensureRepoKeys } from '../storage/signing/keys';
import { createRepoSigner } from '../storage/signing/signer';
import { RevocationList } from './auth/revocations';
import { loadTokenSecret } from './auth/tokens';
import { CairnError } from '../storage/errors';
import { requireOwned, type ServerContext } from './context';
import { DeltaJobs, deltaJobsOptionsFromEnv, type DeltaJobsOptions } from './jobs/deltas';
import { localDeltaJobService, type DeltaJobService } from './jobs/service';
import { localTraffic, type TrafficService } from './api/traffic';
import { localWebhooks, type WebhookService } from './api/webhooks';
import { DELTA_JOB, type DeltaJobParams, type DeltaJobResult } from './jobs/delta-job';
import { MaintenanceScheduler, schedulerOptionsFromEnv } from './jobs/maintenance-job';
import type { Job } from './jobs/queue';
import type { Logger } from './logging';
import type { ScrubFinding } from '../storage/maintenance/scrub';
import { WebhookStore } from '../storage/webhooks/config';
import { dispatcherOptionsFromEnv, WebhookDispatcher } from '../storage/webhooks/dispatcher';

/**
 * The ServerContext of a data folder: token secret (env or generated),
 * revocations, settings, and per-repository signing keys — generated on first
 * use unless an operator placed keys in DATA/keys/NAME/, and only for a
 * repository Cairn owns (RepoSettings.owned): signerFor throws NOT_OWNED and
 * publicKeysFor NOT_FOUND (its keys answer 404) for any other, without
 * touching DATA/keys/.
 */
export async function createServerContext(
  dataDir: string,
  registry: RepoRegistry,
  opts: {
    signing?: boolean;
    /** The queue's options, false for no delta jobs, or the service of a queue in another process (cluster workers). */
    deltas?: DeltaJobsOptions | false | { remote: DeltaJobService };
    /** Where update traffic is recorded: by default in this process (a cluster worker passes the primary's). */
    traffic?: TrafficService;
    /** Where webhook events go: by default a dispatcher in this process (a cluster worker passes the primary's). */
    webhooks?: WebhookService;
  } = {},
): Promise<ServerContext> {
  const signers = new Map<string, Promise<RepoSigner>>();
  const keysOf = (repo: Repo) => ensureRepoKeys(dataDir, repo.name);
  const ctx: ServerContext = {
    dataDir,
    registry,
    settings: new SettingsStore(dataDir),
    auth: { secret: await loadTokenSecret(dataDir), revocations: new RevocationList(dataDir) },
    ingestLimits: DEFAULT_INGEST_LIMITS,
    traffic: opts.traffic ?? localTraffic(),
    webhookStore: new WebhookStore(dataDir),
    async signerFor(repo) {
      if (opts.signing === false) return undefined;
      // Never undefined ("publish unsigned") for an unowned repository: a caller
      // that forgot its own check must fail, not write an unsigned summary.
      requireOwned(ctx, repo);
      let s = signers.get(repo.name);
      if (!s) {
        s = keysOf(repo).then((k) => createRepoSigner(k));
        signers.set(repo.name, s);
        s.catch(() => signers.delete(repo.name));
      }
      return s;
    },
    async publicKeysFor(repo) {
      if (opts.signing === false) return {};
      if (!ctx.settings.owned(repo.name)) throw new CairnError('NOT_FOUND', `repository ${repo.name} has no keys: Cairn does not publish it (cairn adopt ${repo.name})`);
      const k = await keysOf(repo);
      return { gpgArmored: k.gpgPublicFile, ed25519Base64: k.ed25519PublicFile.trim() };
    },
  };
  if (opts.deltas && 'remote' in opts.deltas) {
    ctx.jobs = opts.deltas.remote;
  } else if (opts.deltas !== false) {
    const deltaJobs = new DeltaJobs({ dataDir, registry, settings: ctx.settings, summarySigner: async (r) => (await ctx.signerFor(r))?.signSummary }, opts.deltas ?? deltaJobsOptionsFromEnv());
    ctx.deltaJobs = deltaJobs;
    ctx.jobs = localDeltaJobService(deltaJobs);
  }
  if (opts.webhooks) ctx.webhooks = opts.webhooks;
  else if (ctx.deltaJobs) {
    // Where the queue runs: the webhook dispatcher, scheduled maintenance and the scrub.
    const deltaJobs = ctx.deltaJobs;
    let log: Logger | undefined;
    const dispatcher = new WebhookDispatcher(ctx.webhookStore, {
      ...dispatcherOptionsFromEnv(),
      onFinished: (repo, d) => {
        if (d.state === 'delivered') log?.info('webhook delivered', { repo, webhook: d.webhook, event: d.event, delivery: d.id, attempts: d.attempts });
        else log?.warn(`webhook ${d.state}`, { repo, webhook: d.webhook, event: d.event, delivery: d.id, attempts: d.attempts, status: d.responseCode, err: d.error });
      },
    });
    const webhooks = localWebhooks(dispatcher);
    ctx.webhooks = webhooks;
    const scheduler = new MaintenanceScheduler(
      { registry, settings: ctx.settings, summarySigner: async (r) => (await ctx.signerFor(r))?.signSummary, maxFileSize: ctx.ingestLimits.maxFileSize },
      deltaJobs.queue,
      schedulerOptionsFromEnv(),
    );
    deltaJobs.queue.on('finished', (job: Job) => {
      if (job.kind !== DELTA_JOB || !job.repo) return;
      const p = job.params as DeltaJobParams;
      const r = job.result as DeltaJobResult | undefined;
      if (r?.ranBy) return; // another replica ran it: its webhook event is that replica's
      webhooks.emit({ event: 'delta.finished', repo: job.repo, data: { job: job.id, state: job.state, delta: r?.name ?? null, from: p.from, to: p.to, existed: r?.existed ?? null, size: r?.totalSize ?? null, error: job.error ?? null } });
    });
    scheduler.on('corrupt', (repo: string, f: ScrubFinding) => webhooks.emit({ event: 'scrub.corrupt', repo, data: { object: f.object, error: f.error, quarantinedTo: f.quarantinedTo, at: f.at } }));
    ctx.background = {
      scheduler,
      dispatcher,
      start(l) {
        log = l;
        scheduler.setLogger(l);
        scheduler.start();
      },
      async close() {
        await scheduler.close();
        dispatcher.close();
      },
    };
  }
  // Deltas and webhooks follow publishing: when refs move, queue the policy's deltas
  // (server/jobs/deltas.ts) and tell the repository's webhooks.
  const jobs = ctx.jobs;
  const hooks = ctx.webhooks;
  if (jobs || hooks) {
    ctx.onPublished = async (repo, changes) => {
      hooks?.emit({ event: 'ref.updated', repo: repo.name, data: { changes: changes.map((c) => ({ ref: c.ref, old: c.old, new: c.new, time: c.time, actor: c.actor })) } });
      if (jobs) await jobs.onPublished(repo, changes);
    };
  }
  return ctx;
}
