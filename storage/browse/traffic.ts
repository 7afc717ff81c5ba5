/**
 * Update traffic, from what the server saw: an in-memory aggregator fed once
 * per served repository file, answering per ref, over a recent window, how
 * many updates went through which static delta (by from-commit) and how many
 * through plain objects, and the bytes of each.
 *
 * The hook (for the serving layer, once per answered GET of a repository file):
 *
 *   traffic.record(repoName, relPath, bytes, status, client?)
 *
 * `relPath` is the path inside the repository (`deltas/…/superblock`,
 * `objects/ab/….filez`, `summary`, …), `bytes` the body bytes sent, `status`
 * the HTTP status, `client` anything stable per host for a few minutes (the
 * remote address): it lets loose objects fetched after a superblock or a
 * commit be counted towards that update. Requests are classified as:
 *
 * - a delta superblock (200): one update to `to` through delta `from→to`
 *   (from scratch when there is no from); its parts add bytes to that pair;
 *   a superblock answered 404 counts as a missed delta for that pair;
 * - a loose `.commit` (200): one update to that commit through plain objects
 *   (the stock client fetches the commit loose only when it uses no delta);
 * - any other loose object: counted for the repository, and for the update
 *   the same client began last (within CLIENT_TTL_MS), if any;
 * - anything else (summary, refs, config, …): other.
 *
 * Memory is bounded: a ring of one-minute buckets (the window), in each at
 * most `maxKeys` distinct pairs or commits per repository (the rest are
 * added up under OTHER) and at most `maxRepos` repositories, plus at most
 * `maxClients` remembered clients. Nothing here reads storage: commits are
 * mapped to refs and versions by the caller (refTraffic's `commits`).
 */
import { parseDeltaKey } from '../deltas/format';

/** The key under which what is over a bucket's limits is added up. */
export const OTHER = 'other';
/** How long a client's last update start is used to attribute its object fetches. */
export const CLIENT_TTL_MS = 10 * 60 * 1000;

export interface CountBytes {
  count: number;
  bytes: number;
}

interface PairStat {
  /** Superblocks served (updates started through this delta). */
  updates: number;
  /** Bytes of the superblock and parts served. */
  bytes: number;
  /** Superblock requests answered 404. */
  missed: number;
}

interface RepoBucket {
  /** `FROM-TO` or `-TO` (from scratch) → stats. */
  deltas: Map<string, PairStat>;
  /** to-commit → loose commit fetches (updates through plain objects). */
  plain: Map<string, CountBytes>;
  /** to-commit → loose objects fetched by clients updating to it (commits and commitmeta excluded). */
  objectsFor: Map<string, CountBytes>;
  objects: CountBytes;
  other: CountBytes;
  /** Requests answered with another status than 200/206 (and 404 superblocks excepted). */
  errors: number;
}

interface Bucket {
  minute: number;
  repos: Map<string, RepoBucket>;
}

export interface TrafficOptions {
  /** Minutes kept (default 60). */
  windowMinutes?: number;
  /** Distinct delta pairs or commits per repository and bucket (default 256). */
  maxKeys?: number;
  /** Repositories per bucket (default 64). */
  maxRepos?: number;
  /** Clients remembered (default 10,000). */
  maxClients?: number;
  /** Clock (tests). */
  now?: () => number;
}

export interface DeltaUpdates {
  /** null: from scratch; OTHER: pairs over the limits. */
  from: string | null;
  fromVersion: string | null;
  to: string;
  toVersion: string | null;
  updates: number;
  bytes: number;
  /** Requests for this delta that found none (404). */
  missed: number;
}

export interface PlainUpdates {
  to: string;
  toVersion: string | null;
  updates: number;
  /** Bytes of the commit objects themselves. */
  bytes: number;
}

export interface RefTraffic {
  ref: string;
  windowMinutes: number;
  /** Updates to the ref's commits through deltas, by pair, most updates first. */
  viaDelta: DeltaUpdates[];
  /** Updates to the ref's commits through plain objects, by target commit. */
  viaObjects: PlainUpdates[];
  /** Loose objects fetched by clients updating to the ref's commits (delta fallbacks included). */
  objects: CountBytes;
  totals: { deltaUpdates: number; deltaBytes: number; plainUpdates: number; objectBytes: number };
}

export interface RepoTraffic {
  repo: string;
  windowMinutes: number;
  /** All loose objects served. */
  objects: CountBytes;
  other: CountBytes;
  errors: number;
  /** Every pair seen, most updates first. */
  deltas: DeltaUpdates[];
  plain: PlainUpdates[];
}

/** One commit of a ref, as the caller knows it (head and recent history). */
export interface RefCommit {
  checksum: string;
  version?: string | null;
}

const OBJECT_PATH = /^objects\/([0-9a-f]{2})\/([0-9a-f]{62})\.([a-z-]+)$/;

export class TrafficRecorder {
  private readonly ring: Array<Bucket | null>;
  private readonly window: number;
  private readonly maxKeys: number;
  private readonly maxRepos: number;
  private readonly maxClients: number;
  private readonly now: () => number;
  /** client → the update it began last (Map order = least recently used first). */
  private readonly clients = new Map<string, { repo: string; to: string; at: number }>();

  constructor(opts: TrafficOptions = {}) {
    this.window = Math.min(24 * 60, Math.max(1, Math.floor(opts.windowMinutes ?? 60)));
    this.maxKeys = Math.max(1, Math.floor(opts.maxKeys ?? 256));
    this.maxRepos = Math.max(1, Math.floor(opts.maxRepos ?? 64));
    this.maxClients = Math.max(0, Math.floor(opts.maxClients ?? 10_000));
    this.now = opts.now ?? Date.now;
    this.ring = new Array<Bucket | null>(this.window).fill(null);
  }

  /** Feeds one served request (see the module comment). Never throws. */
  record(repo: string, relPath: string, bytes: number, status: number, client?: string): void {
    try {
      this.classify(repo, relPath, bytes, status, client);
    } catch {
      // Accounting must never fail a request.
    }
  }

  private classify(repo: string, relPath: string, bytes: number, status: number, client?: string): void {
    const now = this.now();
    const b = this.repoBucket(repo, Math.floor(now / 60_000));
    const n = Number.isFinite(bytes) && bytes > 0 ? bytes : 0;
    const ok = status === 200 || status === 206;
    if (relPath.startsWith('deltas/')) {
      const k = parseDeltaKey(relPath);
      if (k) {
        if (!ok && !(status === 404 && k.file === 'superblock')) {
          b.errors++;
          return;
        }
        const pair = this.key(b.deltas, `${k.from ?? ''}-${k.to}`);
        let s = b.deltas.get(pair);
        if (!s) b.deltas.set(pair, (s = { updates: 0, bytes: 0, missed: 0 }));
        if (!ok) {
          s.missed++;
          return;
        }
        s.bytes += n;
        if (k.file === 'superblock') {
          s.updates++;
          this.remember(client, repo, k.to, now);
        }
        return;
      }
    }
    if (!ok) {
      b.errors++;
      return;
    }
    const m = OBJECT_PATH.exec(relPath);
    if (m) {
      const checksum = m[1]! + m[2]!;
      const ext = m[3]!;
      add(b.objects, n);
      if (ext === 'commit') {
        add(getOr(b.plain, this.key(b.plain, checksum)), n);
        this.remember(client, repo, checksum, now);
        return;
      }
      if (ext === 'commitmeta') return;
      const target = this.target(client, repo, now);
      if (target) add(getOr(b.objectsFor, this.key(b.objectsFor, target)), n);
      return;
    }
    add(b.other, n);
  }

  /**
   * Traffic of one ref over the last `minutes` (default: the whole window):
   * updates whose target is one of `commits` (the caller passes the ref's
   * head and recent history, with versions to show).
   */
  refTraffic(repo: string, ref: string, commits: RefCommit[], minutes?: number): RefTraffic {
    const versions = new Map<string, string | null>();
    for (const c of commits) versions.set(c.checksum, c.version ?? null);
    const all = this.repoTraffic(repo, minutes, (to) => versions.has(to));
    const objects: CountBytes = { count: 0, bytes: 0 };
    for (const bucket of this.buckets(minutes)) {
      const rb = bucket.repos.get(repo);
      if (!rb) continue;
      for (const [to, cb] of rb.objectsFor) {
        if (!versions.has(to)) continue;
        objects.count += cb.count;
        objects.bytes += cb.bytes;
      }
    }
    const withVersions = <T extends { from?: string | null; fromVersion?: string | null; to: string; toVersion: string | null }>(x: T): T => {
      x.toVersion = versions.get(x.to) ?? null;
      if (x.from !== undefined && x.from !== null && x.from !== OTHER) x.fromVersion = versions.get(x.from) ?? null;
      return x;
    };
    const viaDelta = all.deltas.map(withVersions);
    const viaObjects = all.plain.map(withVersions);
    return {
      ref,
      windowMinutes: all.windowMinutes,
      viaDelta,
      viaObjects,
      objects,
      totals: {
        deltaUpdates: viaDelta.reduce((s, d) => s + d.updates, 0),
        deltaBytes: viaDelta.reduce((s, d) => s + d.bytes, 0),
        plainUpdates: viaObjects.reduce((s, p) => s + p.updates, 0),
        objectBytes: objects.bytes,
      },
    };
  }

  /** Everything recorded for `repo` over the last `minutes` (default: the whole window). */
  repoTraffic(repo: string, minutes?: number, toFilter?: (to: string) => boolean): RepoTraffic {
    const out: RepoTraffic = { repo, windowMinutes: this.minutes(minutes), objects: { count: 0, bytes: 0 }, other: { count: 0, bytes: 0 }, errors: 0, deltas: [], plain: [] };
    const deltas = new Map<string, DeltaUpdates>();
    const plain = new Map<string, PlainUpdates>();
    for (const bucket of this.buckets(minutes)) {
      const rb = bucket.repos.get(repo);
      if (!rb) continue;
      add(out.objects, rb.objects.bytes, rb.objects.count);
      add(out.other, rb.other.bytes, rb.other.count);
      out.errors += rb.errors;
      for (const [pair, s] of rb.deltas) {
        const [fromPart, to] = pair === OTHER ? [OTHER, OTHER] : (pair.split('-') as [string, string]);
        if (toFilter && !toFilter(to)) continue;
        let d = deltas.get(pair);
        if (!d) deltas.set(pair, (d = { from: fromPart === '' ? null : fromPart, fromVersion: null, to, toVersion: null, updates: 0, bytes: 0, missed: 0 }));
        d.updates += s.updates;
        d.bytes += s.bytes;
        d.missed += s.missed;
      }
      for (const [to, cb] of rb.plain) {
        if (toFilter && !toFilter(to)) continue;
        let p = plain.get(to);
        if (!p) plain.set(to, (p = { to, toVersion: null, updates: 0, bytes: 0 }));
        p.updates += cb.count;
        p.bytes += cb.bytes;
      }
    }
    out.deltas = [...deltas.values()].sort((x, y) => y.updates - x.updates || y.bytes - x.bytes);
    out.plain = [...plain.values()].sort((x, y) => y.updates - x.updates || y.bytes - x.bytes);
    return out;
  }

  /** Distinct keys held now (for tests and metrics: bounded by window × repos × keys). */
  size(): { buckets: number; keys: number; clients: number } {
    let keys = 0;
    let buckets = 0;
    for (const b of this.ring) {
      if (!b) continue;
      buckets++;
      for (const rb of b.repos.values()) keys += rb.deltas.size + rb.plain.size + rb.objectsFor.size;
    }
    return { buckets, keys, clients: this.clients.size };
  }

  private minutes(m: number | undefined): number {
    return Math.min(this.window, Math.max(1, Math.floor(m ?? this.window)));
  }

  private *buckets(minutes: number | undefined): Iterable<Bucket> {
    const m = this.minutes(minutes);
    const current = Math.floor(this.now() / 60_000);
    for (const b of this.ring) if (b && b.minute > current - m && b.minute <= current) yield b;
  }

  private repoBucket(repo: string, minute: number): RepoBucket {
    const slot = ((minute % this.window) + this.window) % this.window;
    let b = this.ring[slot];
    if (!b || b.minute !== minute) this.ring[slot] = b = { minute, repos: new Map() };
    let name = repo;
    if (!b.repos.has(name) && b.repos.size >= this.maxRepos) name = OTHER;
    let rb = b.repos.get(name);
    if (!rb) {
      rb = { deltas: new Map(), plain: new Map(), objectsFor: new Map(), objects: { count: 0, bytes: 0 }, other: { count: 0, bytes: 0 }, errors: 0 };
      b.repos.set(name, rb);
    }
    return rb;
  }

  /** `k` if the map has it or room for it, else OTHER (room for OTHER itself is always made: one key over). */
  private key(m: Map<string, unknown>, k: string): string {
    return m.has(k) || m.size < this.maxKeys ? k : OTHER;
  }

  private remember(client: string | undefined, repo: string, to: string, at: number): void {
    if (client === undefined || this.maxClients === 0) return;
    const k = `${repo}\0${client}`;
    this.clients.delete(k);
    this.clients.set(k, { repo, to, at });
    while (this.clients.size > this.maxClients) this.clients.delete(this.clients.keys().next().value!);
  }

  private target(client: string | undefined, repo: string, now: number): string | null {
    if (client === undefined) return null;
    const c = this.clients.get(`${repo}\0${client}`);
    if (!c) return null;
    if (now - c.at > CLIENT_TTL_MS) {
      this.clients.delete(`${repo}\0${client}`);
      return null;
    }
    return c.to;
  }
}

function add(x: CountBytes, bytes: number, count = 1): void {
  x.count += count;
  x.bytes += bytes;
}

function getOr(m: Map<string, CountBytes>, k: string): CountBytes {
  let v = m.get(k);
  if (!v) m.set(k, (v = { count: 0, bytes: 0 }));
  return v;
}
