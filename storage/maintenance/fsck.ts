import { CairnError } from '../errors';
import { isChecksum } from '../objects/checksum';
import { DEFAULT_INGEST_LIMITS } from '../repo/ingest';
import type { ObjectType } from '../objects/types';
import type { Repo } from '../repo/repo';
import { verifyStored } from '../repo/verify';
import { MarkSet } from './markset';
import { mapLimit, Marker, objectLabel, parallelism, parseObjectKey } from './reach';

/**
 * fsck: every object of the repository checked against its name with the
 * verification uploads go through (storage/repo/verify.ts: metadata in
 * normal form hashing to its name; a `.filez` inflated under its declared
 * size, its content checksum recomputed; large ones streamed), detached
 * metadata and tombstones parsed; then every ref's closure (tree and present
 * history) walked for objects that are missing or cannot be decoded.
 *
 * With `repair`, each corrupt object is moved out of objects/ into the
 * repository's local-only `state/cairn/quarantine/` (never served, not
 * looked at by `ostree fsck`): from then on it answers 404 instead of bad
 * bytes, and since an upload is skipped only when the object is present,
 * the next push of a commit that holds it uploads it again.
 */

export interface FsckOptions {
  repair?: boolean;
  onProgress?(line: string): void;
  /** Largest file a `.filez` may declare (the upload limit by default). */
  maxFileSize?: number;
}

export interface FsckProblem {
  object: string;
  error: string;
}

export interface FsckReport {
  repo: string;
  objects: number;
  bytes: number;
  refs: number;
  /** Objects whose bytes are not what their name says (first MAX_LISTED). */
  corrupt: FsckProblem[];
  corruptCount: number;
  /** Objects a ref's closure needs that are not there (first MAX_LISTED), with the commit that needs them. */
  missing: Array<{ object: string; commit: string }>;
  missingCount: number;
  /** Ref files that hold no checksum. */
  damagedRefs: string[];
  /**
   * Commits of ref closures marked partial (`state/C.commitpartial`, as ostree's fsck marks a
   * damaged commit): a served commit must be whole. With `repair`, the marker of a commit found
   * whole is removed (`partialCleared`); the others stay damage until a push completes them.
   */
  partialCommits: string[];
  partialCleared: string[];
  /** Where each corrupt object went (`repair`). */
  quarantined: Array<{ object: string; to: string }>;
  ok: boolean;
  seconds: number;
}

export const MAX_LISTED = 10_000;
export const QUARANTINE_PREFIX = 'state/cairn/quarantine';
/** `.filez` up to this size are read whole and verified in one piece; larger ones stream. */

export async function fsck(repo: Repo, opts: FsckOptions = {}): Promise<FsckReport> {
  const started = performance.now();
  const progress = opts.onProgress ?? (() => undefined);
  const maxFileSize = opts.maxFileSize ?? DEFAULT_INGEST_LIMITS.maxFileSize;
  const report: FsckReport = { repo: repo.name, objects: 0, bytes: 0, refs: 0, corrupt: [], corruptCount: 0, missing: [], missingCount: 0, damagedRefs: [], partialCommits: [], partialCleared: [], quarantined: [], ok: false, seconds: 0 };
  const corruptNames = new Set<string>();
  const addCorrupt = (object: string, error: string) => {
    if (corruptNames.has(object)) return;
    report.corruptCount++;
    if (report.corrupt.length < MAX_LISTED) {
      report.corrupt.push({ object, error });
      corruptNames.add(object);
    }
  };
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');

  // 1. Every object against its name (several at once on a remote store: each is a round trip),
  // remembering which are present so that the closure walk asks the store only about the others.
  progress(`checking the objects of ${repo.name}`);
  let last = performance.now();
  const width = parallelism(repo);
  const present = width > 1 ? new MarkSet() : undefined; // a local store answers the walk's stats at once: no need to hold them
  let batch: Array<{ key: string; checksum: string; type: ObjectType }> = [];
  const checkBatch = async () => {
    const results = await mapLimit(batch, width, async (o) => {
      try {
        const r = await checkObject(repo, o.key, o.checksum, o.type, maxFileSize);
        return r === null ? null : { size: r, error: null };
      } catch (e) {
        return { size: 0, error: e instanceof CairnError ? e.message : (e as Error).message };
      }
    });
    for (let i = 0; i < batch.length; i++) {
      const o = batch[i]!;
      const r = results[i];
      if (!r) continue; // removed meanwhile (gc, prune)
      const name = objectLabel(o.checksum, o.type);
      report.objects++;
      report.bytes += r.size;
      if (r.error === null) {
        present?.add(o.checksum, o.type);
        continue;
      }
      addCorrupt(name, r.error);
      progress(`corrupt: ${name}: ${r.error}`);
      if (opts.repair) {
        const to = `${QUARANTINE_PREFIX}/${stamp}/${name}`;
        await quarantine(repo, o.key, to);
        report.quarantined.push({ object: name, to });
        progress(`quarantined ${name} -> ${to}`);
      }
    }
    batch = [];
    if (performance.now() - last > 2000) {
      progress(`checked ${report.objects} objects (${(report.bytes / 1048576).toFixed(0)} MiB), ${report.corruptCount} corrupt`);
      last = performance.now();
    }
  };
  for await (const key of repo.backend.list('objects')) {
    const o = parseObjectKey(key);
    if (!o) continue;
    batch.push({ key, ...o });
    if (batch.length >= width * 4) await checkBatch();
  }
  await checkBatch();

  // 2. Every ref's closure, with its present history.
  const refs = new Map<string, string>();
  for await (const key of repo.backend.list('refs')) {
    const got = await repo.backend.read(key);
    if (!got) continue;
    const c = got.data.toString('utf8').trim();
    if (isChecksum(c)) refs.set(key.slice('refs/'.length), c);
    else report.damagedRefs.push(key);
  }
  report.refs = refs.size;
  progress(`walking the closures of ${refs.size} refs`);
  const incomplete = new Set<string>();
  const marker = new Marker(repo, new MarkSet(), {
    checkContent: true,
    present,
    onPartial: (commit) => report.partialCommits.length < MAX_LISTED && report.partialCommits.push(commit),
    onMissing: (object, commit) => {
      if (incomplete.size < MAX_LISTED) incomplete.add(commit);
      report.missingCount++;
      if (report.missing.length < MAX_LISTED) report.missing.push({ object, commit });
    },
    onCorrupt: (object, error) => addCorrupt(object, error),
  });
  for (const [, commit] of refs) await marker.markCommit(commit, true);
  if (opts.repair && report.corruptCount === 0) {
    for (const c of report.partialCommits) {
      if (incomplete.has(c)) continue;
      await repo.backend.remove(`state/${c}.commitpartial`);
      report.partialCleared.push(c);
      progress(`commit ${c} is whole: removed its partial marker`);
    }
  }

  const partialLeft = report.partialCommits.length - report.partialCleared.length;
  report.ok = report.corruptCount === 0 && report.missingCount === 0 && report.damagedRefs.length === 0 && partialLeft === 0;
  report.seconds = (performance.now() - started) / 1000;
  progress(
    `${repo.name}: ${report.objects} objects, ${report.refs} refs: ${report.corruptCount} corrupt, ${report.missingCount} missing, ${report.damagedRefs.length} damaged refs, ${partialLeft} partial commits` +
      (opts.repair ? `, ${report.quarantined.length} quarantined` : ''),
  );
  return report;
}

/** Checks one object; its size, or null when it is gone. Throws what is wrong with it (storage/repo/verify.ts verifyStored). */
export const checkObject = verifyStored;

/** Moves an object aside, through the backend: copied into `to`, then removed from objects/. */
export async function quarantine(repo: Repo, key: string, to: string): Promise<void> {
  const opened = await repo.backend.openRead(key);
  if (!opened) return;
  await repo.backend.write(to, opened.stream);
  await repo.backend.remove(key);
}
