/**
 * The difference between two commits' trees, as `ostree diff A B` reports it
 * (libostree's ostree_diff_dirs): modified, removed and added paths, each
 * list in the order ostree prints it. What counts as modified is what ostree
 * counts: a file whose content checksum differs (bytes, mode, owner, xattrs
 * or symlink target), a directory whose dirmeta differs, an entry whose kind
 * changed. A removed directory is one entry; an added one is listed with
 * everything below it. Subtrees with the same dirtree checksum are not
 * entered. Each entry says what changed (sizes, checksums, mode, owner,
 * xattrs); small text files can carry a unified diff (text-diff.ts).
 */
import { CairnError } from '../errors';
import { isSymlink, type FileHeader } from '../objects/content';
import type { DirTree } from '../objects/dirtree';
import type { Xattr } from '../objects/xattrs';
import type { Repo } from '../repo/repo';
import { readContentHead } from './content';
import { bytesJson, type BytesJson } from './json';
import type { EntryKind } from './listing';
import { unifiedFileDiff, type TextDiff } from './text-diff';
import { findByName, joinPath, loadCommit, loadDirMeta, loadDirTree } from './trees';

/** One side of a changed entry. */
export interface DiffSide {
  kind: EntryKind;
  /** Content checksum (files, symlinks) or dirmeta checksum (directories: what ostree compares). */
  checksum: string;
  /** Dirtree checksum of a directory, else null. */
  treeChecksum: string | null;
  /** File size (0 for directories and symlinks). */
  size: number;
  mode: number;
  uid: number;
  gid: number;
  symlinkTarget: string | null;
}

export interface XattrChange {
  name: string;
  /** null: absent on that side. */
  old: BytesJson | null;
  new: BytesJson | null;
}

export interface DiffModified {
  path: string;
  old: DiffSide;
  new: DiffSide;
  kindChanged: boolean;
  sizeChanged: boolean;
  modeChanged: boolean;
  ownerChanged: boolean;
  targetChanged: boolean;
  xattrChanges: XattrChange[];
  /** For the first `textDiffs` modified regular files: the unified diff or why there is none. */
  text?: TextDiff;
}

export interface DiffEntry {
  path: string;
  kind: EntryKind;
  /** Content checksum, or dirtree checksum for directories. */
  checksum: string;
  /** File size (0 for directories and symlinks). */
  size: number;
}

export interface CommitDiff {
  from: string;
  to: string;
  modified: DiffModified[];
  removed: DiffEntry[];
  added: DiffEntry[];
  /** The walk stopped at `maxEntries` entries: the lists are incomplete. */
  truncated: boolean;
}

export const DEFAULT_DIFF_ENTRIES = 10_000;
export const MAX_DIFF_ENTRIES = 100_000;
export const MAX_TEXT_DIFFS = 100;
/**
 * Wall-clock time all the text diffs of one diff may take together (jsdiff
 * blocks the event loop while it works): past it, the remaining modified
 * files get `too-complex` without being read. Without it, one request for
 * 100 text diffs of dissimilar files held the server for 100 × the per-file limit.
 */
export const TEXT_DIFF_BUDGET_MS = 1000;
/**
 * Content headers over LARGE_HEADER bytes (real ones are a few hundred; up
 * to 1 MiB of xattrs is possible, ~0.25 s and ~60 MB to decode) count
 * towards MAX_LARGE_HEADER_BYTES per diff, their bytes above LARGE_HEADER;
 * past it the diff stops there (`truncated`), as at `maxEntries`.
 */
const LARGE_HEADER = 4096;
export const MAX_LARGE_HEADER_BYTES = 8 * 1024 * 1024;

export interface DiffOptions {
  /** Most entries in all three lists together (default DEFAULT_DIFF_ENTRIES, at most MAX_DIFF_ENTRIES). */
  maxEntries?: number;
  /** Attach a unified diff to the first N modified regular files (default 0, at most MAX_TEXT_DIFFS). */
  textDiffs?: number;
}

class Full extends Error {}

type Child = { kind: 'content'; checksum: string } | { kind: 'dir'; tree: string; meta: string };

/** files first, then dirs: ostree_repo_file_tree_find_child looks a name up in that order. */
function lookup(t: DirTree, name: string): Child | null {
  const f = findByName(t.files, name);
  if (f) return { kind: 'content', checksum: f.checksum };
  const d = findByName(t.dirs, name);
  if (d) return { kind: 'dir', tree: d.treeChecksum, meta: d.metaChecksum };
  return null;
}

/** The diff from commit `from` to commit `to` (NOT_FOUND if either, or a dirtree it needs, is absent). */
export async function diffCommits(repo: Repo, from: string, to: string, opts: DiffOptions = {}): Promise<CommitDiff> {
  const max = Math.min(MAX_DIFF_ENTRIES, Math.max(1, Math.floor(opts.maxEntries ?? DEFAULT_DIFF_ENTRIES)));
  let texts = Math.min(MAX_TEXT_DIFFS, Math.max(0, Math.floor(opts.textDiffs ?? 0)));
  const a = await loadCommit(repo, from);
  const b = await loadCommit(repo, to);
  const out: CommitDiff = { from, to, modified: [], removed: [], added: [], truncated: false };
  let count = 0;
  const room = () => {
    if (count >= max) throw new Full();
    count++;
  };
  let lastYield = performance.now();
  let textBudgetEnd: number | undefined;
  const pace = async () => {
    if (performance.now() - lastYield < 4) return;
    await new Promise<void>((r) => setImmediate(r));
    lastYield = performance.now();
  };

  let largeHeaderBytes = 0;
  const contentSide = async (checksum: string): Promise<{ side: DiffSide; header: FileHeader }> => {
    const h = await readContentHead(repo, checksum);
    largeHeaderBytes += Math.max(0, h.bodyOffset - LARGE_HEADER);
    if (largeHeaderBytes > MAX_LARGE_HEADER_BYTES) throw new Full();
    const link = isSymlink(h.header);
    return {
      header: h.header,
      side: { kind: link ? 'symlink' : 'file', checksum, treeChecksum: null, size: link ? 0 : h.size, mode: h.header.mode, uid: h.header.uid, gid: h.header.gid, symlinkTarget: link ? h.header.symlinkTarget : null },
    };
  };
  const dirSide = async (tree: string, meta: string): Promise<{ side: DiffSide; xattrs: Xattr[] }> => {
    const m = await loadDirMeta(repo, meta);
    return { xattrs: m.xattrs, side: { kind: 'dir', checksum: meta, treeChecksum: tree, size: 0, mode: m.mode, uid: m.uid, gid: m.gid, symlinkTarget: null } };
  };
  const side = async (c: Child) => (c.kind === 'dir' ? dirSide(c.tree, c.meta).then((d) => ({ side: d.side, xattrs: d.xattrs })) : contentSide(c.checksum).then((f) => ({ side: f.side, xattrs: f.header.xattrs })));

  const modified = async (path: string, ca: Child, cb: Child) => {
    room();
    const [sa, sb] = await Promise.all([side(ca), side(cb)]);
    const m: DiffModified = {
      path,
      old: sa.side,
      new: sb.side,
      kindChanged: sa.side.kind !== sb.side.kind,
      sizeChanged: sa.side.size !== sb.side.size,
      modeChanged: sa.side.mode !== sb.side.mode,
      ownerChanged: sa.side.uid !== sb.side.uid || sa.side.gid !== sb.side.gid,
      targetChanged: sa.side.symlinkTarget !== sb.side.symlinkTarget,
      xattrChanges: xattrChanges(sa.xattrs, sb.xattrs),
    };
    if (texts > 0 && sa.side.kind === 'file' && sb.side.kind === 'file') {
      texts--;
      textBudgetEnd ??= performance.now() + TEXT_DIFF_BUDGET_MS;
      const left = textBudgetEnd - performance.now();
      if (left < 1) m.text = { status: 'too-complex', unified: null };
      else {
        m.text = await unifiedFileDiff(repo, sa.side.checksum, sb.side.checksum, { oldPath: path, newPath: path, timeoutMs: left });
        await new Promise<void>((r) => setImmediate(r)); // let other requests run between two diffs
        lastYield = performance.now();
      }
    }
    out.modified.push(m);
  };
  // Added and removed files need only kind and size: one header read per object, however many names it has.
  const kindSize = new Map<string, { kind: EntryKind; size: number }>();
  const entry = async (path: string, c: Child): Promise<DiffEntry> => {
    if (c.kind === 'dir') return { path, kind: 'dir', checksum: c.tree, size: 0 };
    let s = kindSize.get(c.checksum);
    if (!s) {
      const side = (await contentSide(c.checksum)).side;
      kindSize.set(c.checksum, (s = { kind: side.kind, size: side.size }));
    }
    return { path, kind: s.kind, checksum: c.checksum, size: s.size };
  };
  const addAll = async (segs: string[], tree: string): Promise<void> => {
    const t = await loadDirTree(repo, tree);
    for (const f of t.files) {
      room();
      out.added.push(await entry(joinPath([...segs, f.name]), { kind: 'content', checksum: f.checksum }));
    }
    for (const d of t.dirs) {
      room();
      out.added.push({ path: joinPath([...segs, d.name]), kind: 'dir', checksum: d.treeChecksum, size: 0 });
      await addAll([...segs, d.name], d.treeChecksum);
    }
    await pace();
  };
  const diffDirs = async (segs: string[], ta: string, tb: string): Promise<void> => {
    if (ta === tb) return; // same contents (ostree's fast path on the contents checksum)
    const [A, B] = await Promise.all([loadDirTree(repo, ta), loadDirTree(repo, tb)]);
    const aChildren: Array<[string, Child]> = [
      ...A.files.map((f): [string, Child] => [f.name, { kind: 'content', checksum: f.checksum }]),
      ...A.dirs.map((d): [string, Child] => [d.name, { kind: 'dir', tree: d.treeChecksum, meta: d.metaChecksum }]),
    ];
    for (const [name, ca] of aChildren) {
      const path = joinPath([...segs, name]);
      const cb = lookup(B, name);
      if (!cb) {
        room();
        out.removed.push(await entry(path, ca));
        continue;
      }
      if (ca.kind === 'dir' && cb.kind === 'dir') {
        if (ca.meta !== cb.meta) await modified(path, ca, cb);
        await diffDirs([...segs, name], ca.tree, cb.tree);
      } else if (ca.kind === 'content' && cb.kind === 'content') {
        // Same checksum: same bytes and metadata, so the same kind. Different: modified (a kind change included).
        if (ca.checksum !== cb.checksum) await modified(path, ca, cb);
      } else {
        await modified(path, ca, cb);
      }
    }
    await pace();
    const bChildren: Array<[string, Child]> = [
      ...B.files.map((f): [string, Child] => [f.name, { kind: 'content', checksum: f.checksum }]),
      ...B.dirs.map((d): [string, Child] => [d.name, { kind: 'dir', tree: d.treeChecksum, meta: d.metaChecksum }]),
    ];
    for (const [name, cb] of bChildren) {
      if (lookup(A, name)) continue;
      const path = joinPath([...segs, name]);
      room();
      out.added.push(await entry(path, cb));
      if (cb.kind === 'dir') await addAll([...segs, name], cb.tree);
    }
  };
  try {
    await diffDirs([], a.rootTree, b.rootTree);
  } catch (e) {
    if (!(e instanceof Full)) throw e;
    out.truncated = true;
  }
  return out;
}

function xattrChanges(a: Xattr[], b: Xattr[]): XattrChange[] {
  const out: XattrChange[] = [];
  const bm = new Map(b.map((x) => [x.name, x.value]));
  const am = new Map(a.map((x) => [x.name, x.value]));
  for (const x of a) {
    const nv = bm.get(x.name);
    if (!nv) out.push({ name: x.name, old: bytesJson(x.value, 1024), new: null });
    else if (!nv.equals(x.value)) out.push({ name: x.name, old: bytesJson(x.value, 1024), new: bytesJson(nv, 1024) });
  }
  for (const x of b) if (!am.has(x.name)) out.push({ name: x.name, old: null, new: bytesJson(x.value, 1024) });
  return out.slice(0, 256);
}

/** The lines `ostree diff A B` prints for `d` (`M    /path`, then `D`, then `A`), for comparisons and plain-text answers. */
export function ostreeDiffLines(d: CommitDiff): string[] {
  if (d.truncated) throw new CairnError('INVALID_ARGUMENT', 'a truncated diff does not print as ostree diff would');
  return [...d.modified.map((m) => `M    ${m.path}`), ...d.removed.map((r) => `D    ${r.path}`), ...d.added.map((x) => `A    ${x.path}`)];
}
