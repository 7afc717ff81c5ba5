import { decodeCommit } from '../objects/commit';
import { decodeDirTree } from '../objects/dirtree';
import { ObjectType, ARCHIVE_EXTENSION } from '../objects/types';
import type { Repo } from './repo';

export interface ObjectRef {
  checksum: string;
  type: ObjectType;
}

export function objectName(o: ObjectRef): string {
  return `${o.checksum}.${ARCHIVE_EXTENSION[o.type]}`;
}

export interface TreeWalk {
  /** Every object the commit's tree needs, the commit first; each once. */
  objects: ObjectRef[];
  /** The ones not in the repository (or, for metadata, unreadable/invalid). */
  missing: ObjectRef[];
}

/**
 * Walks the whole tree of `commit`: commit, every dirtree and dirmeta, every
 * content object. Metadata is read and validated (a dirtree must parse to be
 * walked); content objects are only checked for presence. A missing dirtree's
 * children cannot be known and are therefore not listed.
 */
export async function walkCommitTree(repo: Repo, commit: string, opts: { concurrency?: number } = {}): Promise<TreeWalk> {
  const seen = new Set<string>();
  const objects: ObjectRef[] = [];
  const missing: ObjectRef[] = [];
  const add = (o: ObjectRef): boolean => {
    const k = objectName(o);
    if (seen.has(k)) return false;
    seen.add(k);
    objects.push(o);
    return true;
  };

  add({ checksum: commit, type: ObjectType.Commit });
  const data = await repo.readMetadata(commit, ObjectType.Commit).catch(() => null);
  if (!data) {
    missing.push({ checksum: commit, type: ObjectType.Commit });
    return { objects, missing };
  }
  const c = decodeCommit(data);
  const queue: Array<{ tree: string; meta: string }> = [{ tree: c.rootTree, meta: c.rootMeta }];
  const contentChecks: ObjectRef[] = [];

  while (queue.length > 0) {
    const batch = queue.splice(0, opts.concurrency ?? 32);
    await Promise.all(
      batch.map(async ({ tree, meta }) => {
        if (add({ checksum: meta, type: ObjectType.DirMeta })) {
          if (!(await repo.hasObject(meta, ObjectType.DirMeta))) missing.push({ checksum: meta, type: ObjectType.DirMeta });
        }
        if (!add({ checksum: tree, type: ObjectType.DirTree })) return;
        const raw = await repo.readMetadata(tree, ObjectType.DirTree).catch(() => null);
        if (!raw) {
          missing.push({ checksum: tree, type: ObjectType.DirTree });
          return;
        }
        const dt = decodeDirTree(raw);
        for (const f of dt.files) {
          const o = { checksum: f.checksum, type: ObjectType.File };
          if (add(o)) contentChecks.push(o);
        }
        for (const d of dt.dirs) queue.push({ tree: d.treeChecksum, meta: d.metaChecksum });
      }),
    );
  }
  for (let i = 0; i < contentChecks.length; i += 64) {
    const batch = contentChecks.slice(i, i + 64);
    const present = await Promise.all(batch.map((o) => repo.hasObject(o.checksum, o.type)));
    batch.forEach((o, j) => {
      if (!present[j]) missing.push(o);
    });
  }
  return { objects, missing };
}
