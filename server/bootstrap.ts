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
  // Deltas follow publishing: when refs move, queue the policy's deltas (server/jobs/deltas.ts).
  const jobs = ctx.jobs;
  if (jobs) ctx.onPublished = (repo, changes) => jobs.onPublished(repo, changes);
  return ctx;
}
