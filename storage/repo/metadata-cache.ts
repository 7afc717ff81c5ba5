/**
 * Decoded metadata objects (commits, dirtrees, dirmetas), memoised: the one
 * place that reads them for the delta compiler's tree indexes
 * (storage/deltas/tree-index.ts), the browsing API (storage/browse/*) and the
 * Flatpak caches. Objects are named by their hash and immutable, so a decoded
 * object can be kept as long as memory allows. Keys are repository location
 * and checksum (a repository that lacks an object must not see another's
 * copy), and bytes are checked against their checksum before they are decoded
 * and cached: a corrupt object is an error (CHECKSUM_MISMATCH), never an
 * answer. Caches are per process or worker thread (the delta job runner keeps
 * its compile thread warm: server/jobs/worker.ts).
 */
import { LRUCache } from 'lru-cache';
import { CairnError } from '../errors';
import { sha256Hex, validateChecksum } from '../objects/checksum';
import { decodeCommit, type Commit } from '../objects/commit';
import { decodeDirMeta, type DirMeta } from '../objects/dirmeta';
import { decodeDirTree, type DirTree } from '../objects/dirtree';
import { ObjectType } from '../objects/types';
import type { Repo } from './repo';

const trees = new LRUCache<string, DirTree>({
  // Decoded, a dirtree takes about three times its serialized size.
  maxSize: 64 * 1024 * 1024,
  sizeCalculation: (t) => 64 + (t.files.length + t.dirs.length) * 200,
});
// Sized by their serialized bytes: a commit or dirmeta may legally carry megabytes of metadata.
const metas = new LRUCache<string, DirMeta>({ maxSize: 8 * 1024 * 1024 });
const commits = new LRUCache<string, { commit: Commit; bytes: Buffer }>({ maxSize: 32 * 1024 * 1024 });

const keyOf = (repo: Repo, checksum: string) => `${repo.backend.location}\0${checksum}`;

/** The bytes of a metadata object, checked against its checksum; null when absent. */
async function readChecked(repo: Repo, checksum: string, type: ObjectType, what: string): Promise<Buffer | null> {
  const raw = await repo.readMetadata(validateChecksum(checksum), type);
  if (raw && sha256Hex(raw) !== checksum) {
    throw new CairnError('CHECKSUM_MISMATCH', `${what} ${checksum} of repository ${repo.name} is corrupt (its bytes do not match its checksum)`, { object: checksum });
  }
  return raw;
}

/** A commit with its bytes, or null when absent. */
export async function readCommit(repo: Repo, checksum: string): Promise<{ commit: Commit; bytes: Buffer } | null> {
  const k = keyOf(repo, checksum);
  const hit = commits.get(k);
  if (hit) return hit;
  const raw = await readChecked(repo, checksum, ObjectType.Commit, 'commit');
  if (!raw) return null;
  const out = { commit: decodeCommit(raw), bytes: raw };
  commits.set(k, out, { size: 256 + raw.length * 4 });
  return out;
}

/** A dirtree, or null when absent. */
export async function readDirTree(repo: Repo, checksum: string): Promise<DirTree | null> {
  const k = keyOf(repo, checksum);
  const hit = trees.get(k);
  if (hit) return hit;
  const raw = await readChecked(repo, checksum, ObjectType.DirTree, 'dirtree');
  if (!raw) return null;
  const t = decodeDirTree(raw);
  trees.set(k, t);
  return t;
}

/** A dirmeta, or null when absent. */
export async function readDirMeta(repo: Repo, checksum: string): Promise<DirMeta | null> {
  const k = keyOf(repo, checksum);
  const hit = metas.get(k);
  if (hit) return hit;
  const raw = await readChecked(repo, checksum, ObjectType.DirMeta, 'dirmeta');
  if (!raw) return null;
  const m = decodeDirMeta(raw);
  metas.set(k, m, { size: 64 + raw.length * 3 });
  return m;
}

/** Forgets everything (tests that change objects behind the caches' back). */
export function clearMetadataCache(): void {
  trees.clear();
  metas.clear();
  commits.clear();
}

/** How many of each are cached (tests). */
export function metadataCacheStats(): { commits: number; dirTrees: number; dirMetas: number } {
  return { commits: commits.size, dirTrees: trees.size, dirMetas: metas.size };
}
