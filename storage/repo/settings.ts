import { promises as fsp, lstatSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CairnError, isNotFoundErrno } from '../errors';
import { fsyncDir } from '../backends/fs';
import { validateRepoName } from './names';

/**
 * Cairn's own per-repository settings: server state, not OSTree data, so it
 * lives beside the repositories in DATA/settings/NAME.json, never in a served folder.
 */
export interface RepoSettings {
  /** Reads need a token with `read` scope. */
  private: boolean;
  /**
   * Cairn owns the repository: it created it (registry.create, `cairn
   * init-repo`, POST /api/repos) or an operator adopted it (`cairn adopt`,
   * PATCH settings `{"owned": true}`). Only then does Cairn write into it
   * (objects, refs, summary and its signature, deltas, signing keys).
   * Repositories without settings (made by `ostree`, `flatpak`…) are not owned.
   */
  owned: boolean;
  /** Static deltas generated when a ref moves. */
  deltas: {
    /** Also build a from-scratch delta to each new head. */
    scratch: boolean;
    /** Deltas from this many previous commits of the ref. */
    previousCommits: number;
  };
}

export const DEFAULT_SETTINGS: Readonly<RepoSettings> = Object.freeze({ private: false, owned: false, deltas: Object.freeze({ scratch: true, previousCommits: 3 }) });

/** What `update` accepts: any subset of the settings. */
export type SettingsPatch = Partial<{ private: boolean; owned: boolean; deltas: Partial<RepoSettings['deltas']> }>;

/**
 * The one ownership check of every write path: throws NOT_OWNED (HTTP 403)
 * unless Cairn owns repository `name` (see RepoSettings.owned).
 */
export function assertOwned(settings: Readonly<Pick<RepoSettings, 'owned'>>, name: string): void {
  if (settings.owned !== true) {
    throw new CairnError('NOT_OWNED', `repository ${name} was not created by Cairn; run \`cairn adopt ${name}\` to let Cairn publish into it`, { repo: name });
  }
}

/**
 * Read on every request to a repository's files (is it private?), so parsed
 * settings are cached, keyed by the file's identity: each lookup does one
 * synchronous stat of DATA/settings/NAME.json and re-reads the file only when
 * its inode, size or mtime changed. That keeps every change visible on the
 * very next request, whoever made it (this process, another worker, an
 * editor): the API replaces the file by rename (a new inode). The stat is
 * synchronous on purpose: a metadata lookup in the dentry cache takes a
 * microsecond or two, far less than a thread-pool round trip, and an absent
 * file (the usual case: default settings) costs no exception
 * (`throwIfNoEntry: false`). Only an in-place rewrite of the same size within
 * the filesystem's timestamp granularity (a few ms) could go unseen.
 */
export class SettingsStore {
  private readonly cache = new Map<string, { sig: FileSignature; value: RepoSettings }>();
  private readonly files = new Map<string, string>();

  constructor(readonly dataDir: string) {}

  private file(name: string): string {
    let file = this.files.get(name);
    if (file === undefined) {
      file = path.join(this.dataDir, 'settings', `${validateRepoName(name)}.json`);
      if (this.files.size >= 1024) this.files.clear();
      this.files.set(name, file);
    }
    return file;
  }

  async get(name: string): Promise<RepoSettings> {
    return copy(this.current(name));
  }

  /**
   * The settings in force, without a copy or a promise: for the read fast path,
   * which asks on every request. The value is shared, never to be modified.
   */
  current(name: string): Readonly<RepoSettings> {
    const file = this.file(name);
    let sig: FileSignature;
    try {
      const st = statSync(file, { throwIfNoEntry: false });
      if (!st) {
        // Defaults (public) only for a file that truly is not there: a dangling
        // symlink is settings that cannot be read, and those fail closed.
        if (lstatSync(file, { throwIfNoEntry: false })) throw new CairnError('IO', `settings of ${name} are a dangling symlink`);
        this.cache.delete(name);
        return DEFAULT_SETTINGS;
      }
      sig = { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
    } catch (e) {
      // ENOTDIR (DATA/settings is not a folder) and the like: unreadable, never "public".
      throw e instanceof CairnError ? e : new CairnError('IO', `settings of ${name} cannot be read: ${(e as Error).message}`);
    }
    const hit = this.cache.get(name);
    if (hit && sameFile(hit.sig, sig)) return hit.value;
    try {
      // A few hundred bytes, read only when the file changed.
      const raw = JSON.parse(readFileSync(file, 'utf8')) as Partial<RepoSettings>;
      const value = merge(DEFAULT_SETTINGS, raw);
      // If the file changed between the stat and the read, the next stat differs from `sig`: re-read then.
      this.cache.set(name, { sig, value });
      return value;
    } catch (e) {
      this.cache.delete(name);
      if (isNotFoundErrno(e)) return DEFAULT_SETTINGS;
      if (e instanceof SyntaxError) throw new CairnError('INVALID_ARGUMENT', `settings of ${name} are not valid JSON`);
      throw e;
    }
  }

  /** Whether Cairn owns `name` (one stat, as `current`). */
  owned(name: string): boolean {
    return this.current(name).owned === true;
  }

  async update(name: string, patch: SettingsPatch): Promise<RepoSettings> {
    const next = merge(await this.get(name), patch);
    validate(next);
    const file = this.file(name);
    await fsp.mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    const fh = await fsp.open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(JSON.stringify(next, null, 2) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
    await fsyncDir(path.dirname(file));
    return next;
  }
}

/** A file's identity and version; the times are fractional milliseconds (sub-microsecond resolution). */
interface FileSignature {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

function sameFile(a: FileSignature, b: FileSignature): boolean {
  return a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

/** Callers may modify what they get; the cache keeps its own. */
function copy(s: RepoSettings): RepoSettings {
  return { private: s.private, owned: s.owned, deltas: { ...s.deltas } };
}

function merge(base: RepoSettings, patch: SettingsPatch): RepoSettings {
  return {
    private: patch.private ?? base.private,
    owned: patch.owned ?? base.owned,
    deltas: { ...base.deltas, ...(patch.deltas ?? {}) },
  };
}

function validate(s: RepoSettings): void {
  if (typeof s.private !== 'boolean') throw new CairnError('INVALID_ARGUMENT', 'private must be true or false');
  if (typeof s.owned !== 'boolean') throw new CairnError('INVALID_ARGUMENT', 'owned must be true or false');
  if (typeof s.deltas.scratch !== 'boolean') throw new CairnError('INVALID_ARGUMENT', 'deltas.scratch must be true or false');
  const n = s.deltas.previousCommits;
  if (!Number.isInteger(n) || n < 0 || n > 50) throw new CairnError('INVALID_ARGUMENT', 'deltas.previousCommits must be an integer from 0 to 50');
}
