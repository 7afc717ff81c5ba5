/**
 * The compiler's view of a commit: every dirtree and dirmeta with the first
 * path that uses it, every content object with its paths, and path → content.
 *
 * Commits and dirtrees are content-addressed and immutable, so what was read
 * once stays true: decoded commits and dirtrees come from the shared metadata
 * cache (storage/repo/metadata-cache.ts: checked against their checksums,
 * keyed by repository), and whole indexes are kept in a bounded LRU cache of
 * this module (per process or worker thread; the job runner keeps its compile
 * thread warm, server/jobs/worker.ts). The delta from a ref's previous head
 * then indexes only the folders the push changed: the previous head was
 * indexed when its own deltas were made.
 */

import { LRUCache } from 'lru-cache';
import { CairnError } from '../errors';
import type { DirTree } from '../objects/dirtree';
import { ObjectType } from '../objects/types';
import { clearMetadataCache, metadataCacheStats, readCommit, readDirTree } from '../repo/metadata-cache';
import type { Repo } from '../repo/repo';
import type { DeltaObjectRef } from './format';

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

/** Whole indexes of recent commits (keyed by repository location and commit), weighed by their entries. */
const indexes = new LRUCache<string, IndexedCommit>({ max: 8, maxSize: 64 << 20, sizeCalculation: (c) => 1024 + 160 * (c.index.byPath.size + c.index.metadata.size) });

/** Forgets what was cached, indexes and decoded objects (tests that corrupt objects behind the compiler's back). */
export function clearTreeIndexCache(): void {
  indexes.clear();
  clearMetadataCache();
}

/** What the caches hold (tests). */
export function treeIndexCacheStats(): { dirTrees: number; indexes: number } {
  return { dirTrees: metadataCacheStats().dirTrees, indexes: indexes.size };
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
    const todo = [...new Set(level)].filter((t) => !trees.has(t));
    for (let i = 0; i < todo.length; i += DIRTREE_READ_CONCURRENCY) {
      const batch = todo.slice(i, i + DIRTREE_READ_CONCURRENCY);
      const got = await Promise.all(batch.map((t) => readDirTree(repo, t)));
      batch.forEach((t, k) => {
        const tree = got[k];
        if (!tree) throw new CairnError('MISSING_OBJECTS', `dirtree ${t} of commit ${commit} is missing`, { object: t });
        trees.set(t, tree);
      });
    }
    level = todo.flatMap((t) => trees.get(t)!.dirs.map((d) => d.treeChecksum));
  }
  return trees;
}

/** The index of `commit` (from the cache when it was indexed lately). */
export async function indexCommit(repo: Repo, commit: string): Promise<IndexedCommit> {
  const key = `${repo.backend.location}\0${commit}`;
  const hit = indexes.get(key);
  if (hit) return hit;
  const read = await readCommit(repo, commit);
  if (!read) throw new CairnError('NOT_FOUND', `commit ${commit} is not in repository ${repo.name}`, { commit });
  const { commit: c, bytes: commitBytes } = read;
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
  indexes.set(key, out);
  return out;
}
