import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Variant, type VarDict } from '../gvariant';
import { CairnError } from '../errors';
import { encodeCommit } from '../objects/commit';
import { S_IFLNK, S_IFMT, S_IFREG, encodeDirMeta } from '../objects/dirmeta';
import { encodeDirTree, type DirTree } from '../objects/dirtree';
import { ObjectType } from '../objects/types';
import type { Xattr } from '../objects/xattrs';
import type { Repo } from '../repo/repo';
import { readTreeXattrs } from './xattrs';

export interface CommitFolderOptions {
  subject?: string;
  body?: string;
  /** Seconds since the epoch; defaults to now. */
  timestamp?: bigint;
  /** Parent commit; defaults to what `branch` points at now (null for none). */
  parent?: string | null;
  /** Extra commit metadata (e.g. `version`). */
  metadata?: VarDict;
  /** Add `ostree.ref-binding` = [branch], as `ostree commit -b` does by default. */
  bindRef?: boolean;
  /** Record extended attributes (on by default, like ostree for archive repos). */
  xattrs?: boolean;
  onProgress?: (files: number, bytes: number) => void;
}

export interface CommittedTree {
  commit: string;
  rootTree: string;
  rootMeta: string;
  files: number;
  bytes: number;
}

/**
 * Writes the folder `dir` into `repo` as a new commit, exactly as `ostree commit`
 * would record it (owners, modes, symlinks, xattrs), then returns the commit
 * checksum. It does not move any ref: callers publish with setRef + summary.
 */
export async function commitFolder(repo: Repo, dir: string, branch: string | null, opts: CommitFolderOptions = {}): Promise<CommittedTree> {
  const root = path.resolve(dir);
  const xattrs = opts.xattrs === false ? new Map<string, Xattr[]>() : await readTreeXattrs(root);
  const counters = { files: 0, bytes: 0 };

  const writeDir = async (abs: string): Promise<{ tree: string; meta: string }> => {
    const st = await fsp.lstat(abs);
    const meta = await repo.writeMetadata(ObjectType.DirMeta, encodeDirMeta({ uid: st.uid, gid: st.gid, mode: st.mode, xattrs: xattrs.get(abs) ?? [] }));
    const tree: DirTree = { files: [], dirs: [] };
    for (const name of await fsp.readdir(abs)) {
      const child = path.join(abs, name);
      const cst = await fsp.lstat(child);
      if (cst.isDirectory()) {
        const sub = await writeDir(child);
        tree.dirs.push({ name, treeChecksum: sub.tree, metaChecksum: sub.meta });
      } else if (cst.isFile() || cst.isSymbolicLink()) {
        const isLink = cst.isSymbolicLink();
        const header = {
          uid: cst.uid,
          gid: cst.gid,
          mode: (cst.mode & ~S_IFMT) | (isLink ? S_IFLNK : S_IFREG),
          symlinkTarget: isLink ? await fsp.readlink(child) : '',
          xattrs: xattrs.get(child) ?? [],
        };
        const size = isLink ? 0 : cst.size;
        const checksum = await repo.writeContent(header, size, isLink ? null : () => createReadStream(child, { highWaterMark: 1024 * 1024 }));
        tree.files.push({ name, checksum });
        counters.files++;
        counters.bytes += size;
        opts.onProgress?.(counters.files, counters.bytes);
      } else {
        throw new CairnError('UNSUPPORTED', `cannot commit special file ${child}: only regular files, symlinks and folders`);
      }
    }
    return { tree: await repo.writeMetadata(ObjectType.DirTree, encodeDirTree(tree)), meta };
  };

  const st = await fsp.stat(root).catch(() => null);
  if (!st?.isDirectory()) throw new CairnError('NOT_FOUND', `${dir} is not a folder`);
  const rootObjs = await writeDir(root);

  const metadata: VarDict = [...(opts.metadata ?? [])];
  if (branch && opts.bindRef !== false && !metadata.some(([k]) => k === 'ostree.ref-binding')) {
    metadata.push(['ostree.ref-binding', new Variant('as', [branch])]);
  }
  const parent = opts.parent !== undefined ? opts.parent : branch ? await repo.readRef(branch) : null;
  const commitBytes = encodeCommit({
    metadata,
    parent,
    subject: opts.subject ?? '',
    body: opts.body ?? '',
    timestamp: opts.timestamp ?? BigInt(Math.floor(Date.now() / 1000)),
    rootTree: rootObjs.tree,
    rootMeta: rootObjs.meta,
  });
  const commit = await repo.writeMetadata(ObjectType.Commit, commitBytes);
  return { commit, rootTree: rootObjs.tree, rootMeta: rootObjs.meta, ...counters };
}
