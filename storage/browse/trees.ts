/**
 * Reading a commit's tree: paths resolved through dirtrees only. Commits,
 * dirtrees and dirmetas come decoded, checked and memoised from
 * storage/repo/metadata-cache.ts (shared with the delta compiler).
 */
import { CairnError } from '../errors';
import type { Commit } from '../objects/commit';
import type { DirMeta } from '../objects/dirmeta';
import type { DirTree } from '../objects/dirtree';
import { readCommit, readDirMeta, readDirTree } from '../repo/metadata-cache';
import type { Repo } from '../repo/repo';

/** A commit; NOT_FOUND when absent. */
export async function loadCommit(repo: Repo, checksum: string): Promise<Commit> {
  const c = await findCommit(repo, checksum);
  if (!c) throw new CairnError('NOT_FOUND', `commit ${checksum} is not in repository ${repo.name}`, { commit: checksum });
  return c;
}

/** A commit, or null when absent. */
export async function findCommit(repo: Repo, checksum: string): Promise<Commit | null> {
  return (await readCommit(repo, checksum))?.commit ?? null;
}

/** A dirtree; NOT_FOUND when absent (a shallow or broken repository). */
export async function loadDirTree(repo: Repo, checksum: string): Promise<DirTree> {
  const t = await readDirTree(repo, checksum);
  if (!t) throw new CairnError('NOT_FOUND', `dirtree ${checksum} is not in repository ${repo.name}`, { object: `${checksum}.dirtree` });
  return t;
}

/** A dirmeta; NOT_FOUND when absent. */
export async function loadDirMeta(repo: Repo, checksum: string): Promise<DirMeta> {
  const m = await readDirMeta(repo, checksum);
  if (!m) throw new CairnError('NOT_FOUND', `dirmeta ${checksum} is not in repository ${repo.name}`, { object: `${checksum}.dirmeta` });
  return m;
}

/** Longest path accepted, in bytes, and most segments (PATH_MAX; no real tree is deeper). */
export const MAX_PATH_BYTES = 4096;
export const MAX_PATH_DEPTH = 256;

/**
 * The segments of a path inside a commit: `''` or `/` is the root; one
 * leading `/` is allowed; `.`, `..`, empty segments (`a//b`, a trailing `/`),
 * NUL bytes and backslashes are refused (INVALID_PATH), as are paths over
 * MAX_PATH_BYTES or MAX_PATH_DEPTH segments. The segments are then looked up
 * by name in dirtrees, so no path can lead anywhere but into the commit.
 */
export function pathSegments(path: string): string[] {
  const bad = (why: string): never => {
    throw new CairnError('INVALID_PATH', `invalid path: ${why}`, { path: path.slice(0, 200) });
  };
  if (typeof path !== 'string') bad('not a string');
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) bad('too long');
  const p = path.startsWith('/') ? path.slice(1) : path;
  if (p === '') return [];
  const segs = p.split('/');
  if (segs.length > MAX_PATH_DEPTH) bad('too deep');
  for (const s of segs) {
    if (s === '') bad('empty segment');
    if (s === '.' || s === '..') bad(`illegal segment "${s}"`);
    if (s.includes('\0')) bad('NUL byte');
    if (s.includes('\\')) bad('backslash');
    if (Buffer.byteLength(s) > 255) bad('segment too long');
  }
  return segs;
}

/** `/a/b` for segments ['a', 'b'], `/` for none. */
export function joinPath(segs: readonly string[]): string {
  return '/' + segs.join('/');
}

/** What a path names in a commit. */
export type Resolved =
  | { kind: 'dir'; path: string; treeChecksum: string; metaChecksum: string }
  | { kind: 'content'; path: string; checksum: string };

/**
 * Resolves `path` in `commit` by walking dirtrees from the root, one segment
 * at a time (so at most MAX_PATH_DEPTH dirtree reads). NOT_FOUND when a
 * segment does not exist or a file is in the way.
 */
export async function resolvePath(repo: Repo, commit: string, path: string): Promise<Resolved> {
  const segs = pathSegments(path);
  const c = await loadCommit(repo, commit);
  let tree = c.rootTree;
  let meta = c.rootMeta;
  for (let i = 0; i < segs.length; i++) {
    const name = segs[i]!;
    const dt = await loadDirTree(repo, tree);
    const d = findByName(dt.dirs, name);
    if (d) {
      tree = d.treeChecksum;
      meta = d.metaChecksum;
      continue;
    }
    const f = findByName(dt.files, name);
    if (f && i === segs.length - 1) return { kind: 'content', path: joinPath(segs), checksum: f.checksum };
    throw new CairnError('NOT_FOUND', `${joinPath(segs.slice(0, i + 1))} does not exist in commit ${commit}`, { path: joinPath(segs) });
  }
  return { kind: 'dir', path: joinPath(segs), treeChecksum: tree, metaChecksum: meta };
}

/** Binary search by strcmp order (dirtree entries are sorted so, and checked to be when decoded). */
export function findByName<T extends { name: string }>(list: readonly T[], name: string): T | undefined {
  const key = Buffer.from(name, 'utf8');
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const cmp = Buffer.compare(Buffer.from(list[mid]!.name, 'utf8'), key);
    if (cmp === 0) return list[mid];
    if (cmp < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return undefined;
}
