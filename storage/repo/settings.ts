import { CairnError } from '../errors';
import { type Backend, type BlobInfo, isNow } from '../backends/backend';
import { stateStore } from '../backends/factory';
import { validateRepoName } from './names';
import { parseDuration } from '../maintenance/duration';

/**
 * Cairn's own per-repository settings: server state, not OSTree data, so it
 * lives beside the repositories in DATA/settings/NAME.json (the key
 * `settings/NAME.json` of the data location's state store,
 * storage/backends/factory.ts), never in a served folder.
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
 * settings are cached, keyed by the stored file's version: each lookup does
 * one statFast of `settings/NAME.json` in the state store (on a folder a
 * synchronous stat: a microsecond or two in the dentry cache, less than a
 * thread-pool round trip) and re-reads the file only when its version
 * (inode, size, modification and change time) changed. That keeps every
 * change visible on the very next request, whoever made it (this process,
 * another worker, an editor). An absent file (the usual case: default
 * settings) costs no exception; a file that cannot be read (a dangling
 * symlink, `settings` not a folder, invalid JSON) fails closed, never
 * "public". On a store that is not blocking (S3) `current` answers the
 * settings last read, refreshed in the background at most REMOTE_TTL_MS
 * apart, and fails closed until they were read once (`get` reads them).
 * Updates are compare-and-swap (read, merge, swap against the version
 * read), so concurrent updates from several processes never lose one.
 */
export class SettingsStore {
  private readonly cache: Map<string, CachedSettings>;
  readonly store: Backend;

  constructor(readonly dataDir: string) {
    this.store = stateStore(dataDir);
    // One cache per store: every SettingsStore of a data location in this process sees what one read.
    let c = caches.get(this.store);
    if (!c) caches.set(this.store, (c = new Map()));
    this.cache = c;
  }

  private key(name: string): string {
    return `settings/${validateRepoName(name)}.json`;
  }

  async get(name: string): Promise<RepoSettings> {
    if (!this.store.blocking) return copy(await this.load(name));
    return copy(this.current(name));
  }

  /**
   * The settings in force, without a copy or a promise: for the read fast path,
   * which asks on every request. The value is shared, never to be modified.
   */
  current(name: string): Readonly<RepoSettings> {
    const key = this.key(name);
    if (!this.store.blocking) return this.remembered(name);
    let info: BlobInfo | null;
    try {
      info = this.store.statFast(key) as BlobInfo | null;
    } catch (e) {
      throw unreadable(name, e);
    }
    if (!info) {
      this.cache.delete(name);
      return DEFAULT_SETTINGS;
    }
    const hit = this.cache.get(name);
    if (hit && hit.version === info.version) return hit.value;
    let got;
    try {
      // A few hundred bytes, read only when the file changed.
      got = this.store.readFast(key) as { data: Buffer; info: BlobInfo } | null;
    } catch (e) {
      throw unreadable(name, e);
    }
    // If the file changed between the stat and the read, the read's version is the one remembered.
    return this.remember(name, got);
  }

  /** The parsed settings of `got` (defaults when absent), remembered by version. */
  private remember(name: string, got: { data: Buffer; info: BlobInfo } | null): RepoSettings {
    if (!got) {
      // Absence remembered too (a store that is not blocking answers from here).
      this.cache.set(name, { version: '-', value: DEFAULT_SETTINGS, at: Date.now() });
      return DEFAULT_SETTINGS;
    }
    let value: RepoSettings;
    try {
      value = merge(DEFAULT_SETTINGS, JSON.parse(got.data.toString('utf8')) as Partial<RepoSettings>);
    } catch (e) {
      this.cache.delete(name);
      if (e instanceof SyntaxError) throw new CairnError('INVALID_ARGUMENT', `settings of ${name} are not valid JSON`);
      throw e;
    }
    if (!this.cache.has(name) && this.cache.size >= 1024) this.cache.clear();
    this.cache.set(name, { version: got.info.version, value, at: Date.now() });
    return value;
  }

  /** The settings as stored now (any store). */
  private async load(name: string): Promise<RepoSettings> {
    let got;
    try {
      const r = this.store.readFast(this.key(name));
      got = isNow(r) ? r : await r;
    } catch (e) {
      throw unreadable(name, e);
    }
    return this.remember(name, got);
  }

  /** A non-blocking store's settings as last read (refreshed in the background when older than REMOTE_TTL_MS); unread: fail closed. */
  private remembered(name: string): RepoSettings {
    const hit = this.cache.get(name);
    if (hit && Date.now() - hit.at > REMOTE_TTL_MS && !hit.refreshing) {
      hit.refreshing = true;
      void this.load(name).then(
        () => undefined,
        () => this.cache.delete(name),
      );
    }
    if (hit) return hit.value;
    void this.load(name).catch(() => undefined);
    throw new CairnError('IO', `settings of ${name} not read yet`);
  }

  /** Whether Cairn owns `name` (one stat, as `current`). */
  owned(name: string): boolean {
    return this.current(name).owned === true;
  }

  async update(name: string, patch: SettingsPatch): Promise<RepoSettings> {
    const key = this.key(name);
    for (;;) {
      let got;
      try {
        got = await this.store.read(key);
      } catch (e) {
        throw unreadable(name, e);
      }
      const base = got ? this.remember(name, got) : DEFAULT_SETTINGS;
      const next = merge(copy(base), patch);
      validate(next);
      const version = await this.store.compareAndSwap(key, Buffer.from(JSON.stringify(next, null, 2) + '\n'), got?.info.version ?? null);
      if (version !== null) {
        // What this process wrote is what it answers from now on (a non-blocking store's current() reads the cache).
        if (!this.cache.has(name) && this.cache.size >= 1024) this.cache.clear();
        this.cache.set(name, { version, value: copy(next), at: Date.now() });
        return next;
      }
      // Another writer changed them meanwhile: merge into theirs.
    }
  }
}

interface CachedSettings {
  /** The stored file's version ('-': absent). */
  version: string;
  value: RepoSettings;
  at: number;
  refreshing?: boolean;
}

const caches = new WeakMap<Backend, Map<string, CachedSettings>>();

/** How stale a non-blocking store's settings may be answered (the replicas' bound for a settings change). */
export const REMOTE_TTL_MS = 1000;

function unreadable(name: string, e: unknown): CairnError {
  // ENOTDIR (DATA/settings is not a folder), a dangling symlink and the like: unreadable, never "public".
  return new CairnError('IO', `settings of ${name} cannot be read: ${e instanceof Error ? e.message : String(e)}`);
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
