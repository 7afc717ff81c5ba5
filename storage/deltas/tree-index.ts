/**
 * The compiler's view of a commit: every dirtree and dirmeta with the first
 * path that uses it, every content object with its paths, and path → content.
 *
 * Commits and dirtrees are content-addressed and immutable, so what was read
 * once stays true: decoded dirtrees and whole indexes are kept in two bounded
 * LRU caches of this module (per process or worker thread; the job runner
 * keeps its compile thread warm, server/jobs/worker.ts). The delta from a ref's
 * previous head then indexes only the folders the push changed: the previous
 * head was indexed when its own deltas were made. Bytes are checked against
 * their checksum before anything read is cached (and used), so a corrupt
 * object in one repository can never stand for a good one in another.
 */

import { LRUCache } from 'lru-cache';
import { CairnError } from '../errors';
import { sha256Hex } from '../objects/checksum';
import { decodeCommit } from '../objects/commit';
import { decodeDirTree, type DirTree } from '../objects/dirtree';
import { ObjectType } from '../objects/types';
import type { Repo } from '../repo/repo';
import type { DeltaObjectRef } from './format';
import { readMetadataObject } from './objects-io';

export interface TreeIndex {
  /** dirtree and dirmeta checksums, keyed `type:checksum`, with the first path that uses them. */
  metadata: Map<string, { ref: DeltaObjectRef; path: string }>;
  /** content checksum → paths using it (sorted walk order). */
  files: Map<string, string[]>;
  /** path → content checksum. */
  byPath: Map<string, string>;
}

export interface IndexedCommit {
  index: TreeIndex;
  /** The commit object's bytes (checked). */
  commitBytes: Buffer;
}

/** Dirtrees read at once per batch while indexing (the walk itself stays sequential and ordered). */
const DIRTREE_READ_CONCURRENCY = 32;

/** Decoded dirtrees, weighed by their encoded size (decoded objects take a few times more). */
const dirTrees = new LRUCache<string, DirTree>({ maxSize: 16 << 20, sizeCalculation: (t) => 64 + 96 * (t.files.length + t.dirs.length) });
/** Whole indexes of recent commits, weighed by their entries. */
const indexes = new LRUCache<string, IndexedCommit>({ max: 8, maxSize: 64 << 20, sizeCalculation: (c) => 1024 + 160 * (c.index.byPath.size + c.index.metadata.size) });

/** Forgets what was cached (tests that corrupt objects behind the compiler's back). */
export function clearTreeIndexCache(): void {
  dirTrees.clear();
  indexes.clear();
}

/** What the caches hold (tests). */
export function treeIndexCacheStats(): { dirTrees: number; indexes: number } {
  return { dirTrees: dirTrees.size, indexes: indexes.size };
}

function checked(bytes: Buffer, checksum: string, what: string): Buffer {
  if (sha256Hex(bytes) !== checksum) throw new CairnError('CHECKSUM_MISMATCH', `${what} ${checksum} is corrupt (its bytes do not match its checksum)`, { object: checksum });
  return bytes;
}

/**
 * Every dirtree under `root`, read level by level with bounded concurrency:
 * one backend round trip after another made the index of a large tree the
 * biggest cost of a small delta.
 */
async function loadDirTrees(repo: Repo, commit: string, root: string): Promise<Map<string, DirTree>> {
  const trees = new Map<string, DirTree>();
  let level = [root];
  while (level.length > 0) {
    const todo: string[] = [];
    for (const t of new Set(level)) {
      if (trees.has(t)) continue;
      const hit = dirTrees.get(t);
      if (hit) trees.set(t, hit);
      else todo.push(t);
    }
    for (let i = 0; i < todo.length; i += DIRTREE_READ_CONCURRENCY) {
      const batch = todo.slice(i, i + DIRTREE_READ_CONCURRENCY);
      const raws = await Promise.all(batch.map((t) => readMetadataObject(repo, t, ObjectType.DirTree)));
      batch.forEach((t, k) => {
        const raw = raws[k];
        if (!raw) throw new CairnError('MISSING_OBJECTS', `dirtree ${t} of commit ${commit} is missing`, { object: t });
        const tree = decodeDirTree(checked(raw, t, 'dirtree'));
        trees.set(t, tree);
        dirTrees.set(t, tree);
      });
    }
    level = [...new Set(level)].flatMap((t) => trees.get(t)!.dirs.map((d) => d.treeChecksum));
  }
  return trees;
}

/** The index of `commit` (from the cache when it was indexed lately). */
export async function indexCommit(repo: Repo, commit: string): Promise<IndexedCommit> {
  const hit = indexes.get(commit);
  if (hit) return hit;
  const raw = await repo.readMetadata(commit, ObjectType.Commit);
  if (!raw) throw new CairnError('NOT_FOUND', `commit ${commit} is not in repository ${repo.name}`, { commit });
  const commitBytes = checked(raw, commit, 'commit');
  const c = decodeCommit(commitBytes);
  const trees = await loadDirTrees(repo, commit, c.rootTree);
  const index: TreeIndex = { metadata: new Map(), files: new Map(), byPath: new Map() };
  const visit = (tree: string, meta: string, dir: string): void => {
    const mk = `${ObjectType.DirMeta}:${meta}`;
    if (!index.metadata.has(mk)) index.metadata.set(mk, { ref: { type: ObjectType.DirMeta, checksum: meta }, path: dir });
    const tk = `${ObjectType.DirTree}:${tree}`;
    if (!index.metadata.has(tk)) index.metadata.set(tk, { ref: { type: ObjectType.DirTree, checksum: tree }, path: dir });
    const dt = trees.get(tree)!;
    for (const f of dt.files) {
      const p = `${dir}/${f.name}`;
      index.byPath.set(p, f.checksum);
      const paths = index.files.get(f.checksum);
      if (paths) paths.push(p);
      else index.files.set(f.checksum, [p]);
    }
    for (const d of dt.dirs) visit(d.treeChecksum, d.metaChecksum, `${dir}/${d.name}`);
  };
  visit(c.rootTree, c.rootMeta, '');
  const out = { index, commitBytes };
  indexes.set(commit, out);
  return out;
}
