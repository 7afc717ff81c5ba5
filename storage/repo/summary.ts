import { serialize, Variant, type VarDict } from '../gvariant';
import { CairnError } from '../errors';
import { checksumFromMb64, checksumToBytes, checksumToMb64, sha256Hex } from '../objects/checksum';
import { commitVersion, decodeCommit } from '../objects/commit';
import { bswap64 } from '../objects/endian';
import { OBJECT_GVARIANT_TYPE, ObjectType } from '../objects/types';
import { keyFileBool, keyFileGet, keyFileSet } from './config';
import type { Backend, PreparedWrite } from '../backends/backend';
import { faultPoint } from './faults';
import { JOURNAL_KEY, newJournalId, readJournal, sha256OrNull, type Journal, type JournalChange } from './journal';
import { confirmLocks, withRepoLock } from './mutex';
import { refLogBytes, refLogFileName, refLogKey, type RefLogEntry } from './reflog';
import { compareBytes, type Repo } from './repo';
import { isFlatpakRepo, planFlatpakPublish, indexSignature, sweepSummaries, SUMMARY_INDEX, SUMMARY_INDEX_SIG } from '../flatpak/index';

/** Produces the bytes of summary.sig for given summary bytes (an a{sv} of signatures). */
export type SummarySigner = (summary: Buffer) => Promise<Buffer>;

export interface StaticDeltaEntry {
  /** `FROM-TO` or `TO` in hex, as the summary, the index and the CLI name deltas. */
  name: string;
  from: string | null;
  to: string;
  /** SHA-256 of the superblock file. */
  digest: string;
}

const SUPERBLOCK = /^deltas\/([A-Za-z0-9+_]{2})\/([A-Za-z0-9+_]{41})(?:-([A-Za-z0-9+_]{43}))?\/superblock$/;

/** Every static delta present in `deltas/`, found by its superblock. */
export async function listStaticDeltas(repo: Repo): Promise<StaticDeltaEntry[]> {
  const out: StaticDeltaEntry[] = [];
  for await (const key of repo.backend.list('deltas')) {
    const m = SUPERBLOCK.exec(key);
    if (!m) continue;
    // Without a second part, the path names a from-scratch delta to the first checksum.
    const first = checksumFromMb64(m[1]! + m[2]!);
    const from = m[3] ? first : null;
    const to = m[3] ? checksumFromMb64(m[3]) : first;
    const data = (await repo.backend.read(key))?.data;
    if (!data) continue;
    out.push({ name: from ? `${from}-${to}` : to, from, to, digest: sha256Hex(data) });
  }
  return out.sort((a, b) => compareBytes(a.name, b.name));
}

function deltaDict(entries: StaticDeltaEntry[]): VarDict {
  return entries.map((d) => [d.name, new Variant('ay', checksumToBytes(d.digest))]);
}

/**
 * The summary as `ostree summary -u` makes it: refs sorted by name, each with
 * the exact commit size (little-endian), checksum, and the commit's timestamp
 * ([BE]) and version; then repository metadata and the static deltas.
 */
export async function buildSummary(repo: Repo, opts: { now?: Date; deltas?: StaticDeltaEntry[]; refs?: Map<string, string>; extra?: VarDict } = {}): Promise<Buffer> {
  const config = await repo.readConfig();
  const refs = opts.refs ?? (await repo.listRefs());
  const entries: unknown[] = [];
  for (const [name, checksum] of refs) {
    const data = await repo.readMetadata(checksum, ObjectType.Commit);
    if (!data) throw new CairnError('NOT_FOUND', `ref ${name} points to missing commit ${checksum}`, { ref: name, commit: checksum });
    const commit = decodeCommit(data);
    const meta: VarDict = [];
    const version = commitVersion(commit);
    if (version !== undefined) meta.push(['ostree.commit.version', new Variant('s', version)]);
    meta.push(['ostree.commit.timestamp', new Variant('t', bswap64(commit.timestamp))]);
    entries.push([name, [BigInt(data.length), checksumToBytes(checksum), meta]]);
  }

  const deltas = opts.deltas ?? (await listStaticDeltas(repo));
  const now = BigInt(Math.floor((opts.now ?? new Date()).getTime() / 1000));
  const extra: VarDict = [
    ['ostree.summary.mode', new Variant('s', keyFileGet(config, 'core', 'mode') ?? 'archive-z2')],
    ['ostree.summary.last-modified', new Variant('t', bswap64(now))],
    ['ostree.summary.tombstone-commits', new Variant('b', keyFileBool(config, 'core', 'tombstone-commits'))],
  ];
  if (deltas.length > 0) extra.push(['ostree.static-deltas', new Variant('a{sv}', deltaDict(deltas))]);
  extra.push(['ostree.summary.indexed-deltas', new Variant('b', true)]);
  const collectionId = keyFileGet(config, 'core', 'collection-id');
  if (collectionId) {
    // Refs of other collections (refs/mirrors) would go in ostree.summary.collection-map;
    // Cairn publishes only its own collection, and ostree omits an empty map.
    extra.push(['ostree.summary.collection-id', new Variant('s', collectionId)]);
  }
  // A flatpak repository's keys (storage/flatpak/index.ts: xa.cache, remote configuration).
  if (opts.extra) extra.push(...opts.extra);
  return serialize(OBJECT_GVARIANT_TYPE.summary, [entries, extra]);
}

/**
 * Writes `delta-indexes/TT/T….index` for every delta target (what clients ask
 * for when the summary says indexed-deltas), removes indexes whose deltas are
 * gone, and sets `core.indexed-deltas=true` in config.
 */
export async function writeDeltaIndexes(repo: Repo, deltas: StaticDeltaEntry[]): Promise<void> {
  const byTarget = new Map<string, StaticDeltaEntry[]>();
  for (const d of deltas) byTarget.set(d.to, [...(byTarget.get(d.to) ?? []), d]);
  const wanted = new Set<string>();
  for (const [to, list] of byTarget) {
    const mb = checksumToMb64(to);
    const key = `delta-indexes/${mb.slice(0, 2)}/${mb.slice(2)}.index`;
    wanted.add(key);
    const data = serialize(OBJECT_GVARIANT_TYPE.deltaIndex, [['ostree.static-deltas', new Variant('a{sv}', deltaDict(list))]]);
    const old = await repo.backend.read(key);
    if (!old || !old.data.equals(data)) await repo.backend.write(key, data);
  }
  for await (const key of repo.backend.list('delta-indexes')) {
    if (key.endsWith('.index') && !wanted.has(key)) await repo.backend.remove(key);
  }
  const config = await repo.readConfig();
  if (keyFileGet(config, 'core', 'indexed-deltas') !== 'true') {
    keyFileSet(config, 'core', 'indexed-deltas', 'true');
    await repo.writeConfig(config);
  }
}

/**
 * Regenerates summary (and delta indexes) after refs or deltas changed. With a
 * signer, summary.sig is rewritten to match; without one, a stale summary.sig is
 * removed — a client that sees an unchanged summary.sig keeps its cached
 * summary, so a signature must never outlive the summary it signs. The two
 * switch through the publish journal (switchPublished), so a crash or a full
 * disk never leaves them disagreeing for longer than the next start or publish.
 */
export async function updateSummary(repo: Repo, signer?: SummarySigner): Promise<Buffer> {
  return withRepoLock(repo.backend, 'summary', () => switchPublished(repo, { changes: [], signer }));
}

export interface SwitchOptions {
  /** Ref moves to make with this switch (the caller holds the `refs` lock and checked them). */
  changes: RefLogEntry[];
  signer?: SummarySigner;
  /** Internal: this switch finishes one that failed past its commit point (no further attempt). */
  finishing?: boolean;
}

const SUMMARY = 'summary';
const SUMMARY_SIG = 'summary.sig';

/**
 * One switch of what a repository publishes: ref moves, the ref log, the
 * summary (with the delta indexes) and its signature, as one. The caller
 * holds the `summary` lock (and the `refs` lock when there are ref moves).
 *
 * 1. A switch left unfinished by a process that died or failed (its journal
 *    is still there) is rolled forward first: refs and ref-log entries as
 *    its journal says; the summary is regenerated below anyway.
 * 2. Everything that needs space is done before anything switches: delta
 *    indexes, then the new summary (from the refs as they will be) and its
 *    signature, the ref files and the ref-log entries, each written and
 *    fsynced aside (Backend.prepare). A full disk fails here, and the staged
 *    files are removed: nothing changed.
 * 3. The journal (one atomic write) records the moves, the ref-log file
 *    names and the digests of the old and new summary pairs: the commit point.
 * 4. Renames only (no space needed): refs (deletions first), summary, then
 *    summary.sig, then the ref-log entries; the journal is removed.
 * A flatpak repository (storage/flatpak/index.ts) also gets its
 * content-addressed summaries/ files written before step 3 (nothing names
 * them yet) and summary.idx + summary.idx.sig renamed after summary.sig, so
 * an index never names a subsummary that is not there.
 * A failure after 3 rolls forward at once (as after a crash); if that fails
 * too, the journal stays for the next start or publish and the error goes
 * to the caller. Readers keep serving the old pair while the files switch
 * (server/files/summary-pair.ts, using the journal's digests).
 */
export async function switchPublished(repo: Repo, opts: SwitchOptions): Promise<Buffer> {
  await rollForwardJournal(repo);
  const b = repo.backend;
  const deltas = await listStaticDeltas(repo);
  await writeDeltaIndexes(repo, deltas);
  const refs = await repo.listRefs();
  for (const c of opts.changes) {
    if (c.new === null) refs.delete(c.ref);
    else refs.set(c.ref, c.new);
  }
  const sorted = new Map([...refs].sort(([a], [z]) => compareBytes(a, z)));
  // A flatpak repository also publishes an index of per-architecture summaries (storage/flatpak/).
  const config = await repo.readConfig();
  const flatpak = (await isFlatpakRepo(repo, config)) ? await planFlatpakPublish(repo, { refs: sorted, config, sign: opts.signer }) : null;
  const summary = await buildSummary(repo, { deltas, refs: sorted, extra: flatpak?.summaryMetadata });
  const sig = opts.signer ? await opts.signer(summary) : null;
  const prev = { summary: sha256OrNull((await b.read(SUMMARY))?.data), sig: sha256OrNull((await b.read(SUMMARY_SIG))?.data) };

  const id = newJournalId();
  const changes: JournalChange[] = opts.changes.map((c, i) => ({ ...c, file: refLogFileName(c, `${id}:${i}`) }));
  // Deletions first: they may free the paths that creations need (a/b goes, a comes).
  const order = [...changes.filter((c) => c.new === null), ...changes.filter((c) => c.new !== null)];
  const staged: Array<{ key: string; write: PreparedWrite | null }> = [];
  try {
    // Content-addressed summaries/ files first: nothing names them until the index switches.
    for (const f of flatpak?.files ?? []) {
      faultPoint(`write ${f.key}`);
      await b.write(f.key, f.data);
    }
    for (const c of order) staged.push({ key: refKey(c.ref), write: c.new === null ? null : await stage(b, refKey(c.ref), Buffer.from(c.new + '\n')) });
    staged.push({ key: SUMMARY, write: await stage(b, SUMMARY, summary) });
    staged.push({ key: SUMMARY_SIG, write: sig ? await stage(b, SUMMARY_SIG, sig) : null });
    if (flatpak) {
      const idxSig = indexSignature(flatpak);
      staged.push({ key: SUMMARY_INDEX, write: await stage(b, SUMMARY_INDEX, flatpak.index) });
      staged.push({ key: SUMMARY_INDEX_SIG, write: idxSig ? await stage(b, SUMMARY_INDEX_SIG, idxSig) : null });
    }
    for (const c of changes) staged.push({ key: refLogKey(c.file), write: await stage(b, refLogKey(c.file), refLogBytes(c)) });
    const journal: Journal = { version: 1, id, time: new Date().toISOString(), changes, next: { summary: sha256OrNull(summary), sig: sha256OrNull(sig) }, prev };
    // The commit point: only while the locks read under are still ours (a replica that stalled past
    // its lease and was taken over must not switch refs and a summary from what it read before).
    await confirmLocks();
    faultPoint('write journal');
    await b.write(JOURNAL_KEY, Buffer.from(JSON.stringify(journal) + '\n'));
  } catch (e) {
    for (const s of staged) await s.write?.discard().catch(() => undefined);
    throw e;
  }
  let i = 0;
  try {
    for (; i < staged.length; i++) {
      const s = staged[i]!;
      faultPoint(`${s.write ? 'rename' : 'remove'} ${s.key}`);
      if (s.write) await s.write.commit();
      else await b.remove(s.key);
    }
    faultPoint('remove journal');
    await b.remove(JOURNAL_KEY);
  } catch (e) {
    for (const s of staged.slice(i + 1)) await s.write?.discard().catch(() => undefined);
    // Past the commit point: finish it from the journal now, as the next start would.
    if (opts.finishing) throw e;
    try {
      return await switchPublished(repo, { changes: [], signer: opts.signer, finishing: true });
    } catch {
      throw e;
    }
  }
  // Subsummaries, deltas and index signatures neither this index nor the one it replaced names.
  if (flatpak) await sweepSummaries(repo, flatpak.keep).catch(() => undefined);
  return summary;
}

function refKey(ref: string): string {
  return `refs/heads/${ref}`;
}

/** A staged write (Backend.prepare). */
async function stage(b: Backend, key: string, data: Buffer): Promise<PreparedWrite> {
  faultPoint(`stage ${key}`);
  return b.prepare(key, data);
}

/** What rolling a journal forward did, for the recovery report. */
export interface RollForward {
  journal: string;
  refsSet: string[];
  entriesWritten: number;
  damaged?: boolean;
}

/** Listeners told when a leftover journal is rolled forward (recovery.ts reports it). */
const rollForwardListeners = new Set<(repo: Repo, r: RollForward) => void>();
export function onRollForward(fn: (repo: Repo, r: RollForward) => void): () => void {
  rollForwardListeners.add(fn);
  return () => rollForwardListeners.delete(fn);
}

/**
 * Finishes the ref moves and ref-log entries of a switch whose journal is
 * still there (its summary is regenerated by the switch that follows; the
 * journal is replaced by that switch's own). Idempotent. Caller holds the
 * `summary` lock. A journal that cannot be read is reported and left for
 * the next switch to replace (refs stay as they are on disk).
 */
export async function rollForwardJournal(repo: Repo): Promise<RollForward | null> {
  const { journal, present } = await readJournal(repo.backend);
  if (!present) return null;
  let r: RollForward;
  if (!journal) r = { journal: 'damaged', refsSet: [], entriesWritten: 0, damaged: true };
  else {
    r = { journal: journal.id, refsSet: [], entriesWritten: 0 };
    const deletionsFirst = [...journal.changes.filter((c) => c.new === null), ...journal.changes.filter((c) => c.new !== null)];
    for (const c of deletionsFirst) {
      const now = await repo.readRef(c.ref).catch(() => 'damaged');
      if (now === c.new) continue;
      await repo.setRef(c.ref, c.new);
      r.refsSet.push(c.ref);
    }
    for (const c of journal.changes) {
      if (await repo.backend.stat(refLogKey(c.file))) continue;
      await repo.backend.write(refLogKey(c.file), refLogBytes(c));
      r.entriesWritten++;
    }
  }
  for (const fn of rollForwardListeners) fn(repo, r);
  return r;
}
