import { type Backend, type BlobInfo, isNow, type Maybe } from '../../storage/backends/backend';
import { CairnError } from '../../storage/errors';
import { MAX_METADATA_SIZE } from '../../storage/objects/types';
import { JOURNAL_KEY, pairMatches, parseJournal, sha256OrNull, type Journal, type PairDigests } from '../../storage/repo/journal';
import type { RepoFileClass } from '../../storage/repo/layout';
import type { CacheEntry } from './cache';
import { answerEntry, type FileAnswer, type FileRequest, type ServeFileOptions } from './serve';

/**
 * `summary` and `summary.sig` are served as a pair (docs/publishing.md).
 *
 * The stock client (libostree 2022.7, ostree-repo-pull.c) fetches
 * summary.sig, then summary, in two requests, one after the other on the
 * same kept-alive connection, and verifies the one with the other; a
 * mismatch is fatal ("BAD signature"). A publish that lands between the two
 * requests must not hand it a new summary for an old signature. So:
 *
 * 1. Per process, each repository's pair is held as one snapshot, read
 *    together and accepted only when the two files belong together: while a
 *    publish renames them one after the other (its journal, storage/repo/journal.ts,
 *    lists the digests of the pair it replaces and of the new one), a
 *    mixed pair is never taken: the previous snapshot goes on being served
 *    until the switch is over, if it is the pair the switch replaces (a
 *    process that did not see the publishes before the switch waits for
 *    its end instead: it must not serve a pair older than the last one
 *    published). Every request still stats both files, so a
 *    change on disk (by Cairn or by the `ostree` CLI) is served at once.
 * 2. Per connection, a GET of summary.sig pins the snapshot it was answered
 *    from: a request for summary on that connection within PIN_MS is
 *    answered from the same snapshot, even when a newer pair was published
 *    in between. The client then always verifies a summary against the
 *    signature made over it. (A summary request on a connection that asked
 *    for no summary.sig gets the current pair.)
 *
 * Files larger than the metadata limit (10 MiB, the client's own) are not
 * snapshotted: they are served as any file.
 *
 * Both kinds of store go through the same code (drive, below): on the
 * filesystem the stats and reads answer at once and so does a summary
 * request; on S3 each is a request to the store (two concurrent HEADs when
 * nothing changed, none for a pinned summary), and a publish's switch takes
 * longer there (each rename is a copy and a delete), which the journal covers
 * just the same.
 */

/** How long a connection's summary.sig pins its pair for the summary request that follows. */
const PIN_MS = 30_000;
/** How long a process with no snapshot yet waits for a switch in progress to finish before serving the files as they are. */
const SWITCH_WAIT_MS = 2_000;
const ATTEMPTS = 3;

export interface PairSnapshot {
  /** Which pair: backend location and the folder of the files. */
  id: string;
  /** The versions (BlobInfo.version) of summary and summary.sig it holds. */
  versions: string;
  summary: CacheEntry | null;
  sig: CacheEntry | null;
  /** The SHA-256 of both files, computed when first needed (digestsOf). */
  digests?: PairDigests;
}

function digestsOf(snap: PairSnapshot): PairDigests {
  return (snap.digests ??= { summary: sha256OrNull(snap.summary?.data), sig: sha256OrNull(snap.sig?.data) });
}

/** Whether `d` is the pair a switch replaces or the one it publishes. */
function isOneOf(d: PairDigests, j: Journal): boolean {
  return [j.prev, j.next].some((p) => p.summary === d.summary && p.sig === d.sig);
}

export type PairFile = 'summary' | 'summary.sig';

/** Whether `key` names a summary or its signature, and the folder it is in (`''` at the top). */
export function pairFileOf(key: string): { base: string; file: PairFile } | null {
  if (key === 'summary' || key === 'summary.sig') return { base: '', file: key };
  if (key.endsWith('/summary')) return { base: key.slice(0, -'summary'.length), file: 'summary' };
  if (key.endsWith('/summary.sig')) return { base: key.slice(0, -'summary.sig'.length), file: 'summary.sig' };
  return null;
}

export class SummaryPairs {
  private readonly current = new Map<string, PairSnapshot>();
  private readonly pins = new WeakMap<object, { snap: PairSnapshot; at: number }>();

  /**
   * The entry to answer a GET/HEAD of `base + file` from (null: the file is
   * absent), 'unsupported' when this file is served the ordinary way (a file
   * over the metadata limit), or a promise: on a store that is not blocking
   * (S3), and while a switch in progress is awaited. On a blocking store (the
   * filesystem) the answer is there at once when no switch is in progress.
   */
  entry(
    backend: Backend,
    base: string,
    file: PairFile,
    method: string,
    conn: object | undefined,
    count?: (hit: boolean) => void,
  ): CacheEntry | null | 'unsupported' | Promise<CacheEntry | null | 'unsupported'> {
    const id = `${backend.location}\0${base}`;
    const now = Date.now();
    if (file === 'summary' && conn) {
      const pin = this.pins.get(conn);
      if (pin && pin.snap.id === id && now - pin.at < PIN_MS) {
        count?.(true);
        return pin.snap.summary;
      }
    }
    const pick = (snap: PairSnapshot | 'unsupported'): CacheEntry | null | 'unsupported' => {
      if (snap === 'unsupported') return snap;
      if (file === 'summary.sig' && conn && method === 'GET') this.pins.set(conn, { snap, at: Date.now() });
      return file === 'summary' ? snap.summary : snap.sig;
    };
    const then = (got: PairSnapshot | 'unsupported' | 'wait') => (got !== 'wait' ? pick(got) : this.waitForSwitch(backend, base, id, now + SWITCH_WAIT_MS, count).then(pick));
    const got = drive(this.snapshot(backend, base, id, false, count));
    return got instanceof Promise ? got.then(then) : then(got);
  }

  private async waitForSwitch(backend: Backend, base: string, id: string, deadline: number, count?: (hit: boolean) => void): Promise<PairSnapshot | 'unsupported'> {
    for (;;) {
      await new Promise((r) => setTimeout(r, 10));
      const got = await drive(this.snapshot(backend, base, id, Date.now() >= deadline, count));
      if (got !== 'wait') return got;
    }
  }

  /**
   * The pair as it is in the store, when it is a pair; 'wait' when the files
   * are mid-switch and this process has no earlier snapshot (with `force`:
   * the files as they are). One code path for both kinds of store (see
   * drive): two stats when nothing changed, at once on the filesystem, two
   * concurrent HEADs on S3.
   */
  private *snapshot(backend: Backend, base: string, id: string, force = false, count?: (hit: boolean) => void): Steps<PairSnapshot | 'unsupported' | 'wait'> {
    const sKey = `${base}summary`;
    const gKey = `${base}summary.sig`;
    const jKey = `${base}${JOURNAL_KEY}`;
    const cur = this.current.get(id);
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const [si, gi] = yield* step(both(backend.statFast(sKey), backend.statFast(gKey)));
      if ((si && si.size > MAX_METADATA_SIZE) || (gi && gi.size > MAX_METADATA_SIZE)) return 'unsupported';
      const versions = `${si?.version ?? '-'}|${gi?.version ?? '-'}`;
      if (cur && cur.versions === versions) {
        count?.(true);
        return cur;
      }
      const [s, g] = yield* step(both(si ? backend.readFast(sKey) : null, gi ? backend.readFast(gKey) : null));
      if ((si && s?.info.version !== si.version) || (gi && g?.info.version !== gi.version)) continue;
      // The journal after the reads, the versions again after the journal: a
      // pair read while no switch was recorded, and unchanged since, is one.
      const journal = yield* step(backend.readFast(jKey));
      const [si2, gi2] = yield* step(both(backend.statFast(sKey), backend.statFast(gKey)));
      if (si2?.version !== si?.version || gi2?.version !== gi?.version) continue;
      if (journal && !force) {
        const j = parseJournal(journal.data);
        // Mid-switch: the snapshot this process holds goes on being served only if it is one of
        // the switch's two pairs; an older one (publishes this process did not see came before
        // this switch: another replica's, say) would serve refs older than acknowledged ones, so
        // the request waits for the switch to end.
        if (j && !pairMatches(j, s?.data ?? null, g?.data ?? null)) return cur && isOneOf(digestsOf(cur), j) ? cur : 'wait';
      }
      const snap: PairSnapshot = { id, versions, summary: s ? entryOf(s.data, s.info) : null, sig: g ? entryOf(g.data, g.info) : null };
      if (!cur && this.current.size >= 1024) this.current.clear();
      // A slower read (S3) must not replace a snapshot another request took meanwhile with an older one: the latest read wins only if nothing else was stored since.
      if (this.current.get(id) === cur) this.current.set(id, snap);
      count?.(false);
      return snap;
    }
    throw new CairnError('IO', `${sKey} and ${gKey} kept changing while being read`);
  }
}

/**
 * A computation over a store's statFast/readFast answers, written once for
 * both kinds of store: each `yield* step(x)` takes a value now (a blocking
 * store's) or a promise (S3's). drive() runs it synchronously for as long as
 * every answer is there at once, and goes on asynchronously from the first
 * promise.
 */
type Steps<T> = Generator<unknown, T, unknown>;

function* step<T>(v: Maybe<T>): Generator<unknown, T, unknown> {
  return (yield v) as T;
}

function both<A, B>(a: Maybe<A>, b: Maybe<B>): Maybe<[A, B]> {
  return isNow(a) && isNow(b) ? [a, b] : Promise.all([a, b]);
}

function drive<T>(g: Steps<T>): Maybe<T> {
  let r = g.next();
  while (!r.done) {
    if (r.value instanceof Promise) return driveAsync(g, r.value);
    r = g.next(r.value);
  }
  return r.value;
}

async function driveAsync<T>(g: Steps<T>, pending: Promise<unknown>): Promise<T> {
  for (;;) {
    let settled: { ok: true; value: unknown } | { ok: false; error: unknown };
    try {
      settled = { ok: true, value: await pending };
    } catch (error) {
      settled = { ok: false, error };
    }
    // A failed step is thrown into the computation, where it ends it (nothing there catches).
    let r = settled.ok ? g.next(settled.value) : g.throw(settled.error);
    while (!r.done && !(r.value instanceof Promise)) r = g.next(r.value);
    if (r.done) return r.value;
    pending = r.value as Promise<unknown>;
  }
}

function entryOf(data: Buffer, info: BlobInfo): CacheEntry {
  return { version: info.version, info, data };
}

/**
 * The answer for a GET/HEAD of a summary or summary.sig from its pair
 * (null: absent, 404), or undefined when `key` is not one of them or is
 * served the ordinary way.
 */
export function answerPairFile(
  pairs: SummaryPairs | undefined,
  req: FileRequest,
  conn: object | undefined,
  backend: Backend,
  key: string,
  cls: RepoFileClass,
  opts: ServeFileOptions,
): FileAnswer | null | undefined | Promise<FileAnswer | null | undefined> {
  const which = pairs ? pairFileOf(key) : null;
  if (!which) return undefined;
  // Counted as the file cache's hits and misses (a snapshot is that cache for these two files).
  const count = opts.metrics ? (hit: boolean) => (hit ? opts.metrics!.cacheHit('files') : opts.metrics!.cacheMiss('files')) : undefined;
  const got = pairs!.entry(backend, which.base, which.file, req.method, conn, count);
  const toAnswer = (e: CacheEntry | null | 'unsupported'): FileAnswer | null | undefined => (e === 'unsupported' ? undefined : e ? answerEntry(req, cls, e, opts) : null);
  return got instanceof Promise ? got.then(toAnswer) : toAnswer(got);
}
