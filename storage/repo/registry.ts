import { backendFor, childLocation, childNames, stateStore } from '../backends/factory';
import { full } from '../backends/full';
import { isNow } from '../backends/backend';
import { CairnError } from '../errors';
import { validateRepoName } from './names';
import { Repo, type InitOptions } from './repo';
import { SettingsStore } from './settings';
import { recoverRepo, type RecoveryReport } from './recovery';
import { ensureRepoKeys, loadRepoKeys, type RepoKeys } from '../signing/keys';
import { createRepoSigner, ED25519_SIGS_KEY, GPG_SIGS_KEY } from '../signing/signer';
import { ed25519Verify } from '../signing/ed25519';
import { gpgVerifyDetached, readGpgPublicKeys } from '../signing/gpg';
import { parse, Variant, type VarDict } from '../gvariant';

/**
 * The repositories of a data folder: every archive repo at DATA/repos/NAME
 * (a real folder or a symlink), including ones that appear while we run.
 * Each repository's store comes from the driver factory
 * (storage/backends/factory.ts: `backendFor` of the data location's
 * `repos/NAME`). Nothing is cached that could go stale: each lookup checks
 * the store.
 *
 * That check runs on every request to a repository's files, so on a
 * blocking store (a folder) it is one synchronous stat of NAME/config (a dentry-cache lookup of a microsecond or
 * two, cheaper than a thread-pool round trip; an absent repository costs no
 * exception). The read fast path may accept a repository confirmed up to
 * `maxAgeMs` ago (it passes 1 s) without a new stat: that is safe because a Repo is only a name and a folder path, and
 * every mutable file under it is still statted per request, so a deleted or
 * replaced repository answers 404s / new bytes at once all the same (only
 * content-addressed objects already in the file cache may outlive it, for
 * the cache's own bound). Absence is never remembered: a repository that
 * appears is served on the very next request.
 */
export class RepoRegistry {
  /** Where the repositories are: the data location's `repos`. */
  readonly reposDir: string;
  private readonly opened = new Map<string, { repo: Repo; checkedAt: number }>();
  /** Checks in flight on a store that is not blocking, by name, that callers accepting an older answer share. */
  private readonly checking = new Map<string, { at: number; check: Promise<Repo | null> }>();

  /** Symlinks inside a repository that lead out of it are followed (see FsBackendOptions.confine; default: not). */
  readonly followSymlinks: boolean;

  constructor(
    readonly dataDir: string,
    opts: { followSymlinks?: boolean } = {},
  ) {
    this.reposDir = childLocation(dataDir, 'repos');
    this.followSymlinks = opts.followSymlinks === true;
  }

  /**
   * The repository called `name`, or null when there is none (or the name is
   * illegal). `maxAgeMs`: a positive answer confirmed that recently is good
   * enough (default 0: always check).
   */
  async open(name: string, maxAgeMs = 0): Promise<Repo | null> {
    const got = this.check(name, maxAgeMs);
    return isNow(got) ? got : await got;
  }

  /**
   * `open` without a promise, for the read fast path: the check is
   * synchronous on a blocking store (a folder); on another store, the
   * repository as last confirmed (open() confirms it), else null.
   */
  openNow(name: string, maxAgeMs = 0): Repo | null {
    const got = this.check(name, maxAgeMs);
    if (isNow(got)) return got;
    got.catch(() => undefined);
    return this.opened.get(name)?.repo ?? null;
  }

  /**
   * `open` at once where the store can answer at once (a folder: always; the
   * read path's call), else a promise.
   */
  openFast(name: string, maxAgeMs = 0): Repo | null | Promise<Repo | null> {
    return this.check(name, maxAgeMs);
  }

  private check(name: string, maxAgeMs: number): Repo | null | Promise<Repo | null> {
    try {
      validateRepoName(name);
    } catch {
      return null;
    }
    const known = this.opened.get(name);
    const now = Date.now();
    if (known && now - known.checkedAt < maxAgeMs) return known.repo;
    // A Repo holds no state of its own (name + backend), so sharing one is safe.
    const repo = known?.repo ?? new Repo(name, this.storeOf(name));
    // A store that is not blocking: requests that accept an answer up to maxAgeMs old (the read path)
    // share a check in flight begun within that time; one that wants it fresh (maxAgeMs 0: the API)
    // makes its own. So an answer always comes from a check begun at most maxAgeMs before the request.
    const pending = repo.backend.blocking || maxAgeMs === 0 ? undefined : this.checking.get(name);
    if (pending && now - pending.at < maxAgeMs) return pending.check;
    const settle = (config: { size: number } | null): Repo | null => {
      if (!config) {
        if (this.opened.get(name)?.repo === repo) this.opened.delete(name);
        return null;
      }
      if (!this.opened.has(name) && this.opened.size >= 1024) this.opened.clear();
      this.opened.set(name, { repo, checkedAt: now });
      return repo;
    };
    const fail = (e: unknown): never => {
      this.opened.delete(name);
      throw e;
    };
    let config;
    try {
      config = repo.backend.statFast('config');
    } catch (e) {
      return fail(e);
    }
    if (isNow(config)) return settle(config);
    // A store that is not blocking: its settings are read with it (SettingsStore.current answers from what was read).
    const checked = config
      .then(async (c) => {
        // Settings first: a request taking the repository as checked (settle) then finds them read.
        if (c) await new SettingsStore(this.dataDir).get(name);
        return settle(c);
      }, fail)
      .finally(() => {
        if (this.checking.get(name)?.check === checked) this.checking.delete(name);
      });
    if (maxAgeMs > 0) this.checking.set(name, { at: now, check: checked });
    return checked;
  }

  /** Repository `name`'s store, from the driver factory. */
  private storeOf(name: string) {
    return full(backendFor(childLocation(this.reposDir, name), { fs: { confine: !this.followSymlinks } }));
  }

  async list(): Promise<string[]> {
    const names: string[] = [];
    for (const n of await childNames(this.dataDir, 'repos')) if (await this.open(n)) names.push(n);
    return names;
  }

  /**
   * Creates an empty archive repository, owned by Cairn from birth (settings
   * `owned: true`, see RepoSettings.owned): Cairn publishes into it.
   */
  async create(name: string, opts: InitOptions = {}): Promise<Repo> {
    validateRepoName(name);
    if (await this.open(name)) throw new CairnError('ALREADY_EXISTS', `repository ${name} already exists`);
    const repo = await Repo.init(name, full(backendFor(childLocation(this.reposDir, name))), opts);
    await new SettingsStore(this.dataDir).update(name, { owned: true });
    return repo;
  }

  /**
   * At the start of `cairn serve`, before anything is answered: on first
   * start with no repository at all, Cairn creates `main`; then every
   * repository Cairn owns is recovered (recoverAll).
   */
  async ensureDefault(): Promise<void> {
    const state = stateStore(this.dataDir);
    await state.ensurePrefixes(['repos']);
    await state.sweep(); // temporary files and lock files of dead processes (server state: secrets among them)
    if ((await this.list()).length === 0) await this.create('main');
    await this.recoverAll();
  }

  /**
   * Start-up recovery (storage/repo/recovery.ts) of every repository Cairn
   * owns: temporary files and stale locks of dead processes swept, an
   * unfinished publish rolled forward, damaged refs restored from the ref
   * log or reported, and a summary that disagrees with the refs or whose
   * signature does not verify regenerated and signed with the repository's
   * keys (DATA/keys/NAME). Repositories Cairn does not own are never written.
   */
  async recoverAll(): Promise<RecoveryReport[]> {
    const settings = new SettingsStore(this.dataDir);
    const reports: RecoveryReport[] = [];
    for (const name of await this.list()) {
      let owned: boolean;
      try {
        owned = settings.owned(name);
      } catch {
        continue; // unreadable settings: not known to be ours, so not written (the server reports them on use)
      }
      const repo = owned ? this.openNow(name) : null;
      if (!repo) continue;
      let keys: Promise<RepoKeys> | undefined;
      const ensureKeys = () => (keys ??= ensureRepoKeys(this.dataDir, name));
      reports.push(
        await recoverRepo(repo, {
          signer: async (summary) => createRepoSigner(await ensureKeys()).signSummary(summary),
          verify: async (summary, sig) => verifySummarySig(await loadRepoKeys(this.dataDir, name), summary, sig),
        }),
      );
    }
    return reports;
  }
}

/**
 * Whether summary.sig holds a valid signature over `summary` for each scheme
 * Cairn signs with (GPG and ed25519), by the repository's own keys.
 */
async function verifySummarySig(keys: RepoKeys, summary: Buffer, sig: Buffer): Promise<boolean> {
  let dict: VarDict;
  try {
    dict = parse('a{sv}', sig) as VarDict;
  } catch {
    return false;
  }
  const list = (key: string): Buffer[] => {
    const v = dict.find(([k]) => k === key)?.[1];
    return v instanceof Variant && v.type === 'aay' ? (v.value as Buffer[]) : [];
  };
  const ed = list(ED25519_SIGS_KEY);
  if (!ed.some((s) => s.length === 64 && ed25519Verify(keys.ed25519.publicKey, summary, s))) return false;
  const gpg = list(GPG_SIGS_KEY);
  if (gpg.length === 0) return false;
  const result = await gpgVerifyDetached(summary, gpg, await readGpgPublicKeys(keys.gpgPublicFile)).catch(() => ({ validKeyIds: [] as string[] }));
  return result.validKeyIds.length > 0;
}
