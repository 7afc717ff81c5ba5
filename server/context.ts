import type { Request } from 'express';
import type { IngestLimits } from '../storage/repo/ingest';
import type { RepoSigner } from '../storage/repo/publish';
import type { RefLogEntry } from '../storage/repo/reflog';
import type { RepoRegistry } from '../storage/repo/registry';
import type { Repo } from '../storage/repo/repo';
import { assertOwned, type SettingsStore } from '../storage/repo/settings';
import { updateSummary } from '../storage/repo/summary';
import type { Authenticator } from './auth/middleware';
import { noSuchRepository } from './errors';
import type { DeltaJobs } from './jobs/deltas';
import type { DeltaJobService } from './jobs/service';
import type { TrafficService } from './api/traffic';
import type { WebhookService } from './api/webhooks';
import type { MaintenanceScheduler } from './jobs/maintenance-job';
import type { Logger } from './logging';
import type { WebhookStore } from '../storage/webhooks/config';
import type { WebhookDispatcher } from '../storage/webhooks/dispatcher';

/**
 * What the API routes work with: the repositories, their settings and keys,
 * authentication, and hooks for work that follows a publish (delta jobs).
 * Built once by `cairn serve` (or a test) and handed to createApp.
 */
export interface ServerContext {
  dataDir: string;
  registry: RepoRegistry;
  settings: SettingsStore;
  auth: Authenticator;
  /** The signer of a repository's commits and summary, or undefined to publish unsigned. */
  signerFor(repo: Repo): Promise<RepoSigner | undefined>;
  /** Public keys of a repository, for /repo/NAME/keys/. */
  publicKeysFor?(repo: Repo): Promise<{ gpgArmored?: string; ed25519Base64?: string }>;
  /** Called after refs moved (e.g. to queue static deltas). */
  onPublished?(repo: Repo, changes: RefLogEntry[]): Promise<void>;
  /** The delta job queue, when it runs in this process (not in a cluster worker); see server/jobs/deltas.ts. */
  deltaJobs?: DeltaJobs;
  /** Background static deltas (policy, on demand, API), wherever the queue runs: what routes and hooks use. */
  jobs?: DeltaJobService;
  /** Update traffic: what the read path served, per ref (server/api/traffic.ts; in a cluster, the primary's recorder). */
  traffic?: TrafficService;
  ingestLimits: IngestLimits;
  /** Webhooks of each repository (DATA/webhooks/NAME.json), readable by any process. */
  webhookStore: WebhookStore;
  /** Where webhook events go: this process's dispatcher, or the cluster primary's (server/api/webhooks.ts). */
  webhooks?: WebhookService;
  /**
   * Scheduled maintenance, the background scrub and the webhook dispatcher, when
   * they run in this process (where the job queue runs); `start.ts` starts them.
   */
  background?: Background;
}

export interface Background {
  scheduler: MaintenanceScheduler;
  dispatcher: WebhookDispatcher;
  start(log: Logger): void;
  close(): Promise<void>;
}

/** The repository named by `:repo`, or NOT_FOUND. */
export async function repoParam(ctx: ServerContext, req: Request): Promise<Repo> {
  const name = String(req.params.repo ?? '');
  const repo = await ctx.registry.open(name);
  if (!repo) throw noSuchRepository(name);
  return repo;
}

/**
 * The ownership check every write path calls (object uploads, ref updates,
 * delta requests, delta jobs, signing keys): NOT_OWNED (403) unless Cairn
 * created or an operator adopted the repository. A repository made by
 * `ostree` or `flatpak build-update-repo` is served as it is, never written.
 */
export function requireOwned(ctx: Pick<ServerContext, 'settings'>, repo: Repo | string): void {
  const name = typeof repo === 'string' ? repo : repo.name;
  assertOwned(ctx.settings.current(name), name);
}

/**
 * Adoption (`cairn adopt NAME`, PATCH settings `{"owned": true}`): Cairn owns
 * the repository from now on, and regenerates its summary once, signed with
 * the repository's keys (generated now unless an operator placed some), so
 * that the summary matches the refs at once. The summary Cairn writes replaces
 * the publisher's (keys Cairn does not write, such as flatpak's `xa.*`, go).
 */
export async function adoptRepo(ctx: Pick<ServerContext, 'settings' | 'signerFor'>, repo: Repo): Promise<void> {
  await repo.checkMode();
  await ctx.settings.update(repo.name, { owned: true });
  const signer = await ctx.signerFor(repo);
  await updateSummary(repo, signer?.signSummary);
}
