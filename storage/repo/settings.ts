import { promises as fsp, lstatSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CairnError, isNotFoundErrno } from '../errors';
import { fsyncDir } from '../backends/fs';
import { validateRepoName } from './names';
import { parseDuration } from '../maintenance/duration';

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
  /**
   * Scheduled maintenance (server/jobs/maintenance-job.ts), in repositories
   * Cairn owns: prune and gc run as `maintenance` jobs every `every` (a
   * duration: 30m, 6h, 1d; at least 1m), the background scrub verifies objects
   * at `objectsPerSecond` (and at most `bytesPerSecond`); absent: not run.
   */
  maintenance: MaintenanceSettings;
}

export interface MaintenanceSettings {
  prune?: { keep?: number; keepYoungerThan?: string; every: string };
  gc?: { grace?: string; every: string };
  scrub?: { objectsPerSecond: number; bytesPerSecond?: number };
}

export const DEFAULT_SETTINGS: Readonly<RepoSettings> = Object.freeze({ private: false, owned: false, deltas: Object.freeze({ scratch: true, previousCommits: 3 }), maintenance: Object.freeze({}) });

/**
 * What `update` accepts: any subset of the settings; each of `maintenance`'s
 * entries replaces the one stored as a whole, null removes it.
 */
export type SettingsPatch = Partial<{
  private: boolean;
  owned: boolean;
  deltas: Partial<RepoSettings['deltas']>;
  maintenance: { [K in keyof MaintenanceSettings]?: MaintenanceSettings[K] | null };
}>;

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
  return { private: s.private, owned: s.owned, deltas: { ...s.deltas }, maintenance: structuredClone(s.maintenance) };
}

function merge(base: RepoSettings, patch: SettingsPatch): RepoSettings {
  const maintenance: MaintenanceSettings = structuredClone(base.maintenance ?? {});
  const m = patch.maintenance && typeof patch.maintenance === 'object' ? patch.maintenance : {};
  for (const k of ['prune', 'gc', 'scrub'] as const) {
    if (m[k] === null) delete maintenance[k];
    else if (m[k] !== undefined) (maintenance as Record<string, unknown>)[k] = m[k];
  }
  return {
    private: patch.private ?? base.private,
    owned: patch.owned ?? base.owned,
    deltas: { ...base.deltas, ...(patch.deltas ?? {}) },
    maintenance,
  };
}

/** The shortest `every` of scheduled prune and gc. */
export const MIN_MAINTENANCE_EVERY_MS = 60_000;
export const MAX_SCRUB_OBJECTS_PER_SECOND = 100_000;

function validateMaintenance(m: MaintenanceSettings): void {
  const bad = (msg: string): never => {
    throw new CairnError('INVALID_ARGUMENT', `maintenance.${msg}`);
  };
  if (typeof m !== 'object' || m === null || Array.isArray(m)) bad(' must be an object');
  for (const k of Object.keys(m)) if (!['prune', 'gc', 'scrub'].includes(k)) bad(`${k.slice(0, 40)} is not a maintenance task (prune, gc, scrub)`);
  const every = (task: string, v: unknown) => {
    if (typeof v !== 'string') bad(`${task}.every is required (a duration such as 6h)`);
    if (parseDuration(v as string) < MIN_MAINTENANCE_EVERY_MS) bad(`${task}.every must be at least 1m`);
  };
  const only = (task: string, o: object, keys: string[]) => {
    if (typeof o !== 'object' || o === null || Array.isArray(o)) bad(`${task} must be an object`);
    for (const k of Object.keys(o)) if (!keys.includes(k)) bad(`${task}.${k.slice(0, 40)} is not a setting (${keys.join(', ')})`);
  };
  if (m.prune !== undefined) {
    only('prune', m.prune, ['keep', 'keepYoungerThan', 'every']);
    const { keep, keepYoungerThan } = m.prune;
    if (keep === undefined && keepYoungerThan === undefined) bad('prune needs keep and/or keepYoungerThan');
    if (keep !== undefined && (!Number.isInteger(keep) || keep < 1 || keep > 1_000_000)) bad('prune.keep must be an integer from 1 to 1000000');
    if (keepYoungerThan !== undefined && (typeof keepYoungerThan !== 'string' || parseDuration(keepYoungerThan) < 0)) bad('prune.keepYoungerThan must be an age such as 30d');
    every('prune', m.prune.every);
  }
  if (m.gc !== undefined) {
    only('gc', m.gc, ['grace', 'every']);
    if (m.gc.grace !== undefined && typeof m.gc.grace !== 'string') bad('gc.grace must be a duration such as 1h');
    if (m.gc.grace !== undefined) parseDuration(m.gc.grace);
    every('gc', m.gc.every);
  }
  if (m.scrub !== undefined) {
    only('scrub', m.scrub, ['objectsPerSecond', 'bytesPerSecond']);
    const { objectsPerSecond: ops, bytesPerSecond: bps } = m.scrub;
    if (typeof ops !== 'number' || !Number.isFinite(ops) || ops <= 0 || ops > MAX_SCRUB_OBJECTS_PER_SECOND) bad(`scrub.objectsPerSecond must be a number above 0 and at most ${MAX_SCRUB_OBJECTS_PER_SECOND}`);
    if (bps !== undefined && (!Number.isInteger(bps) || bps < 1024)) bad('scrub.bytesPerSecond must be an integer of at least 1024');
  }
}

function validate(s: RepoSettings): void {
  if (typeof s.private !== 'boolean') throw new CairnError('INVALID_ARGUMENT', 'private must be true or false');
  if (typeof s.owned !== 'boolean') throw new CairnError('INVALID_ARGUMENT', 'owned must be true or false');
  if (typeof s.deltas.scratch !== 'boolean') throw new CairnError('INVALID_ARGUMENT', 'deltas.scratch must be true or false');
  const n = s.deltas.previousCommits;
  if (!Number.isInteger(n) || n < 0 || n > 50) throw new CairnError('INVALID_ARGUMENT', 'deltas.previousCommits must be an integer from 0 to 50');
  validateMaintenance(s.maintenance);
}
