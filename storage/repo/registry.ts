import { promises as fsp, statSync } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../backends/fs';
import { CairnError, isNotFoundErrno } from '../errors';
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
 * Nothing is cached that could go stale: each lookup checks the disk.
 *
 * That check runs on every request to a repository's files, so it is one
 * synchronous stat of NAME/config (a dentry-cache lookup of a microsecond or
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
  readonly reposDir: string;
  private readonly opened = new Map<string, { repo: Repo; checkedAt: number }>();

  /** Symlinks inside a repository that lead out of it are followed (see FsBackendOptions.confine; default: not). */
  readonly followSymlinks: boolean;

  constructor(
    readonly dataDir: string,
    opts: { followSymlinks?: boolean } = {},
  ) {
    this.reposDir = path.join(dataDir, 'repos');
    this.followSymlinks = opts.followSymlinks === true;
  }

  /**
   * The repository called `name`, or null when there is none (or the name is
   * illegal). `maxAgeMs`: a positive answer confirmed that recently is good
   * enough (default 0: always check).
   */
  async open(name: string, maxAgeMs = 0): Promise<Repo | null> {
    return this.openNow(name, maxAgeMs);
  }

  /** `open` without a promise, for the read fast path (the check is synchronous anyway). */
  openNow(name: string, maxAgeMs = 0): Repo | null {
    try {
      validateRepoName(name);
    } catch {
      return null;
    }
    const known = this.opened.get(name);
    const now = Date.now();
    if (known && now - known.checkedAt < maxAgeMs) return known.repo;
    const dir = path.join(this.reposDir, name);
    try {
      const st = statSync(path.join(dir, 'config'), { throwIfNoEntry: false });
      if (!st?.isFile()) {
        this.opened.delete(name);
        return null;
      }
    } catch (e) {
      this.opened.delete(name);
      if (isNotFoundErrno(e)) return null;
      throw e;
    }
    // A Repo holds no state of its own (name + backend), so sharing one is safe.
    const repo = known?.repo ?? new Repo(name, new FsBackend(dir, { confine: !this.followSymlinks }));
    if (!known && this.opened.size >= 1024) this.opened.clear();
    this.opened.set(name, { repo, checkedAt: now });
    return repo;
  }

  async list(): Promise<string[]> {
    let entries: string[];
    try {
      entries = await fsp.readdir(this.reposDir);
    } catch (e) {
      if (isNotFoundErrno(e)) return [];
      throw e;
    }
    const names: string[] = [];
    for (const n of entries.sort()) if (await this.open(n)) names.push(n);
    return names;
  }

  /**
   * Creates an empty archive repository, owned by Cairn from birth (settings
   * `owned: true`, see RepoSettings.owned): Cairn publishes into it.
   */
  async create(name: string, opts: InitOptions = {}): Promise<Repo> {
    validateRepoName(name);
    const dir = path.join(this.reposDir, name);
    if (await this.open(name)) throw new CairnError('ALREADY_EXISTS', `repository ${name} already exists`);
    await fsp.mkdir(dir, { recursive: true });
    const repo = await Repo.init(name, new FsBackend(dir), opts);
    await new SettingsStore(this.dataDir).update(name, { owned: true });
    return repo;
  }

  /**
   * At the start of `cairn serve`, before anything is answered: on first
   * start with no repository at all, Cairn creates `main`; then every
   * repository Cairn owns is recovered (recoverAll).
   */
  async ensureDefault(): Promise<void> {
    await fsp.mkdir(this.reposDir, { recursive: true });
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
