/**
 * A commit's tree as the operator sees it: one directory, paged; the whole
 * tree below a path in `ostree ls -R` order, as a stream with a cap; and one
 * file's content. Paths are resolved by walking dirtrees only (trees.ts).
 */
import type { Readable } from 'node:stream';
import { CairnError } from '../errors';
import { isSymlink } from '../objects/content';
import { S_IFMT } from '../objects/dirmeta';
import type { Repo } from '../repo/repo';
import type { Xattr } from '../objects/xattrs';
import { HeaderRefused, openContent, readContentHead } from './content';
import { xattrJson, type XattrJson } from './json';
import { joinPath, loadDirMeta, loadDirTree, pathSegments, resolvePath } from './trees';

export type EntryKind = 'file' | 'dir' | 'symlink';

/** One entry of a tree. */
export interface TreeEntry {
  name: string;
  /** Absolute path inside the commit (`/` for the root). */
  path: string;
  kind: EntryKind;
  /** Full st_mode (type bits included), e.g. 0o100644 = 33188. */
  mode: number;
  /** Permission bits only, as octal text, e.g. `0755`. */
  permissions: string;
  uid: number;
  gid: number;
  /** File size in bytes (0 for directories and symlinks, as `ostree ls` shows). */
  size: number;
  /** Bytes of the stored `.filez` (files and symlinks), null for directories. */
  archivedSize: number | null;
  symlinkTarget: string | null;
  xattrs: XattrJson[];
  /** Present (true) when `xattrs` shows only the first of them: at most MAX_XATTRS_SHOWN, MAX_XATTR_BYTES_SHOWN bytes of names and values. */
  xattrsTruncated?: true;
  /** Content checksum (files, symlinks) or dirtree checksum (directories). */
  checksum: string;
  /** Dirmeta checksum of a directory, else null. */
  metaChecksum: string | null;
}

/** Entries one page holds by default, and at most. */
/**
 * Extended attributes shown per entry, and bytes of their names and values.
 * A header may hold up to MAX_ARCHIVE_HEADER (1 MiB) of them, ~80,000 empty
 * ones: shown whole, one such file made ~4.5 MB of JSON per entry, and a
 * directory naming it 1,000 times a page of gigabytes. Real files carry a
 * few (SELinux label, capabilities, IMA signature).
 */
export const MAX_XATTRS_SHOWN = 256;
export const MAX_XATTR_BYTES_SHOWN = 16 * 1024;

function xattrsShown(list: readonly Xattr[]): Pick<TreeEntry, 'xattrs' | 'xattrsTruncated'> {
  const out: XattrJson[] = [];
  let bytes = 0;
  for (const x of list) {
    bytes += Buffer.byteLength(x.name) + x.value.length;
    if (out.length >= MAX_XATTRS_SHOWN || bytes > MAX_XATTR_BYTES_SHOWN) return { xattrs: out, xattrsTruncated: true };
    out.push(xattrJson(x));
  }
  return { xattrs: out };
}

/** Content headers over LARGE_HEADER bytes count, their bytes above it, towards MAX_LARGE_HEADER_BYTES per page (~0.25 s and ~60 MB to decode a 1 MiB one). */
const LARGE_HEADER = 4096;
export const MAX_LARGE_HEADER_BYTES = 8 * 1024 * 1024;

export const DEFAULT_TREE_PAGE = 200;
export const MAX_TREE_PAGE = 1000;

export interface DirectoryPage {
  commit: string;
  /** The directory itself. */
  dir: TreeEntry;
  /** Files first, then directories, each in name (strcmp) order: the order of `ostree ls`. */
  entries: TreeEntry[];
  /** Entries in the directory in all. */
  total: number;
  /** Offset of this page. */
  offset: number;
  /** Cursor of the next page (pass as `cursor`), null at the end. */
  next: string | null;
}

/**
 * One page of directory `path` of `commit`. A commit never changes, so the
 * cursor is an offset into its (sorted, immutable) entries. NOT_FOUND for a
 * path that does not exist, INVALID_ARGUMENT for one that is not a directory.
 */
export async function listDirectory(repo: Repo, commit: string, path: string, opts: { cursor?: string | null; limit?: number } = {}): Promise<DirectoryPage> {
  const limit = clamp(opts.limit ?? DEFAULT_TREE_PAGE, 1, MAX_TREE_PAGE);
  const offset = parseCursor(opts.cursor);
  const r = await resolvePath(repo, commit, path);
  if (r.kind !== 'dir') throw new CairnError('INVALID_ARGUMENT', `${r.path} is not a directory`, { path: r.path });
  const segs = pathSegments(path);
  const dir = await dirEntry(repo, segs, r.treeChecksum, r.metaChecksum);
  const dt = await loadDirTree(repo, r.treeChecksum);
  const total = dt.files.length + dt.dirs.length;
  const entries: TreeEntry[] = [];
  const end = Math.min(total, offset + limit);
  const jobs: Array<() => Promise<TreeEntry>> = [];
  // A directory may name one object many times: its header is read and decoded once per page.
  // Headers over LARGE_HEADER bytes count towards MAX_LARGE_HEADER_BYTES per page: past it the page ends early (`next` goes on).
  const infos = new Map<string, Promise<FileInfo>>();
  let largeHeaderBytes = 0;
  const admit = (headerBytes: number) => {
    const large = Math.max(0, headerBytes - LARGE_HEADER);
    if (large > 0 && largeHeaderBytes > 0 && largeHeaderBytes + large > MAX_LARGE_HEADER_BYTES) return false; // the first is always taken: pages progress
    largeHeaderBytes += large;
    return true;
  };
  const infoOf = (checksum: string) => {
    let p = infos.get(checksum);
    if (!p) infos.set(checksum, (p = fileInfo(repo, checksum, admit)));
    return p;
  };
  for (let i = offset; i < end; i++) {
    if (i < dt.files.length) {
      const f = dt.files[i]!;
      jobs.push(() => fileEntry(repo, [...segs, f.name], f.checksum, infoOf));
    } else {
      const d = dt.dirs[i - dt.files.length]!;
      jobs.push(() => dirEntry(repo, [...segs, d.name], d.treeChecksum, d.metaChecksum));
    }
  }
  // Headers read 32 at a time; the page ends before the first header refused.
  let refused = false;
  for (let i = 0; i < jobs.length && !refused; i += 32) {
    const got = await Promise.allSettled(jobs.slice(i, i + 32).map((j) => j()));
    for (const g of got) {
      if (g.status === 'fulfilled') {
        entries.push(g.value);
        continue;
      }
      if (!(g.reason instanceof HeaderRefused)) throw g.reason;
      refused = true;
      break;
    }
  }
  const stop = offset + entries.length;
  return { commit, dir, entries, total, offset, next: stop < total ? String(stop) : null };
}

function parseCursor(c: string | null | undefined): number {
  if (c === undefined || c === null || c === '') return 0;
  if (!/^[0-9]{1,9}$/.test(c)) throw new CairnError('INVALID_ARGUMENT', 'invalid cursor');
  return Number(c);
}

function clamp(n: number, lo: number, hi: number): number {
  if (!Number.isFinite(n)) return lo;
  return Math.min(hi, Math.max(lo, Math.floor(n)));
}

async function dirEntry(repo: Repo, segs: string[], tree: string, meta: string): Promise<TreeEntry> {
  const m = await loadDirMeta(repo, meta);
  return {
    name: segs.length ? segs[segs.length - 1]! : '/',
    path: joinPath(segs),
    kind: 'dir',
    mode: m.mode,
    permissions: perms(m.mode),
    uid: m.uid,
    gid: m.gid,
    size: 0,
    archivedSize: null,
    symlinkTarget: null,
    ...xattrsShown(m.xattrs),
    checksum: tree,
    metaChecksum: meta,
  };
}

type FileInfo = Omit<TreeEntry, 'name' | 'path'> & { headerBytes: number };

/** What a file's entry shows of its header (the decoded header itself is not kept: it may hold 1 MiB of xattrs). */
async function fileInfo(repo: Repo, checksum: string, admit?: (headerBytes: number) => boolean): Promise<FileInfo> {
  const h = await readContentHead(repo, checksum, { admit });
  const link = isSymlink(h.header);
  return {
    headerBytes: h.bodyOffset,
    kind: link ? 'symlink' : 'file',
    mode: h.header.mode,
    permissions: perms(h.header.mode),
    uid: h.header.uid,
    gid: h.header.gid,
    size: link ? 0 : h.size,
    archivedSize: h.storedSize,
    symlinkTarget: link ? h.header.symlinkTarget : null,
    ...xattrsShown(h.header.xattrs),
    checksum,
    metaChecksum: null,
  };
}

async function fileEntry(repo: Repo, segs: string[], checksum: string, infoOf: (checksum: string) => Promise<FileInfo> = (c) => fileInfo(repo, c)): Promise<TreeEntry> {
  const { headerBytes: _h, ...info } = await infoOf(checksum);
  return { name: segs[segs.length - 1]!, path: joinPath(segs), ...info };
}

function perms(mode: number): string {
  return '0' + (mode & ~S_IFMT & 0o7777).toString(8).padStart(3, '0');
}

/** Entries a recursive listing yields by default, and at most. */
export const DEFAULT_WALK_ENTRIES = 100_000;
export const MAX_WALK_ENTRIES = 1_000_000;

export interface WalkOptions {
  /** Most entries to yield (the directory itself counts); default DEFAULT_WALK_ENTRIES. */
  maxEntries?: number;
  /** Read each file's header (mode, owner, size, target, xattrs); default true. Without, files carry kind 'file' and zeros. */
  details?: boolean;
}

/** What walkTree yields: entries, then one final `{ done }` record saying whether the cap cut it short. */
export type WalkItem = { entry: TreeEntry } | { done: true; truncated: boolean; entries: number };

/**
 * Every entry below `path` (which must be a directory) in `ostree ls -R`
 * order: the directory itself, then its files, then each subdirectory
 * followed by what it holds. Depth-first with one dirtree per level held at
 * a time; stops after `maxEntries` (the last item says so). Consumers stream
 * it (the HTTP layer writes lines as they come).
 */
export async function* walkTree(repo: Repo, commit: string, path: string, opts: WalkOptions = {}): AsyncGenerator<WalkItem> {
  const max = clamp(opts.maxEntries ?? DEFAULT_WALK_ENTRIES, 1, MAX_WALK_ENTRIES);
  const details = opts.details ?? true;
  const r = await resolvePath(repo, commit, path);
  if (r.kind !== 'dir') throw new CairnError('INVALID_ARGUMENT', `${r.path} is not a directory`, { path: r.path });
  let n = 0;
  const root = pathSegments(path);
  let truncated = false;
  async function* visit(segs: string[], tree: string, meta: string): AsyncGenerator<WalkItem> {
    if (n >= max) {
      truncated = true;
      return;
    }
    n++;
    yield { entry: await dirEntry(repo, segs, tree, meta) };
    const dt = await loadDirTree(repo, tree);
    for (let i = 0; i < dt.files.length; i += 32) {
      const batch = dt.files.slice(i, i + 32);
      const room = max - n;
      if (room <= 0) {
        truncated = true;
        return;
      }
      const take = batch.slice(0, room);
      const got = await Promise.all(take.map((f) => (details ? fileEntry(repo, [...segs, f.name], f.checksum) : bareFile([...segs, f.name], f.checksum))));
      for (const e of got) {
        n++;
        yield { entry: e };
      }
      if (take.length < batch.length) {
        truncated = true;
        return;
      }
    }
    for (const d of dt.dirs) {
      yield* visit([...segs, d.name], d.treeChecksum, d.metaChecksum);
      if (truncated) return;
    }
  }
  yield* visit(root, r.treeChecksum, r.metaChecksum);
  yield { done: true, truncated, entries: n };
}

function bareFile(segs: string[], checksum: string): TreeEntry {
  return {
    name: segs[segs.length - 1]!,
    path: joinPath(segs),
    kind: 'file',
    mode: 0,
    permissions: '0000',
    uid: 0,
    gid: 0,
    size: 0,
    archivedSize: null,
    symlinkTarget: null,
    xattrs: [],
    checksum,
    metaChecksum: null,
  };
}

export interface OpenedFile {
  entry: TreeEntry;
  /** Bytes of the file (`entry.size` of them), checked against the content checksum at the end. */
  stream: Readable;
}

/**
 * Opens the file at `path` in `commit` for download. Directories and
 * symlinks are refused (INVALID_ARGUMENT; a symlink is not followed: its
 * target is in the error's details), NOT_FOUND when there is no such path.
 */
export async function openFile(repo: Repo, commit: string, path: string): Promise<OpenedFile> {
  const r = await resolvePath(repo, commit, path);
  if (r.kind === 'dir') throw new CairnError('INVALID_ARGUMENT', `${r.path} is a directory`, { path: r.path });
  const entry = await fileEntry(repo, pathSegments(path), r.checksum);
  if (entry.kind === 'symlink') {
    throw new CairnError('INVALID_ARGUMENT', `${r.path} is a symlink to ${entry.symlinkTarget!.slice(0, 200)}`, { path: r.path, symlinkTarget: entry.symlinkTarget });
  }
  const opened = await openContent(repo, r.checksum);
  return { entry, stream: opened.stream };
}
