import { serialize, Variant, type VarDict } from '../gvariant';
import { CairnError } from '../errors';
import { checksumFromMb64, checksumToBytes, checksumToMb64, sha256Hex } from '../objects/checksum';
import { commitVersion, decodeCommit } from '../objects/commit';
import { bswap64 } from '../objects/endian';
import { OBJECT_GVARIANT_TYPE, ObjectType } from '../objects/types';
import { keyFileBool, keyFileGet, keyFileSet } from './config';
import { withRepoLock } from './mutex';
import { compareBytes, type Repo } from './repo';

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
export async function buildSummary(repo: Repo, opts: { now?: Date; deltas?: StaticDeltaEntry[] } = {}): Promise<Buffer> {
  const config = await repo.readConfig();
  const refs = await repo.listRefs();
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
 * removed first — a client that sees an unchanged summary.sig keeps its cached
 * summary, so a signature must never outlive the summary it signs.
 */
export async function updateSummary(repo: Repo, signer?: SummarySigner): Promise<Buffer> {
  return withRepoLock(repo.backend, 'summary', async () => {
    const deltas = await listStaticDeltas(repo);
    await writeDeltaIndexes(repo, deltas);
    const summary = await buildSummary(repo, { deltas });
    if (signer) {
      const sig = await signer(summary);
      // New signature first: a client that fetches it with the old summary fails
      // verification and retries, rather than silently keeping a stale cache.
      await repo.backend.write('summary.sig', sig);
      await repo.backend.write('summary', summary);
    } else {
      await repo.backend.remove('summary.sig');
      await repo.backend.write('summary', summary);
    }
    return summary;
  });
}
