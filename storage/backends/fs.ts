import { promises as fsp, constants as fsc, closeSync, fstatSync, lstatSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { CairnError, insufficientStorage, isNoSpaceErrno, isNotFoundErrno } from '../errors';
import { type Backend, type BlobInfo, type BlobReader, type ByteRange, eachLimit, type HeldLock, type PreparedWrite, REMOVE_PARALLEL, type WriteSource, validateKey } from './backend';
import { acquireLockFile, breakIfStale } from './lockfile';
import { lockedCompareAndSwap } from './full';

/** Where temporary files go: inside the repo (same filesystem, so rename is atomic); OSTree clients never fetch it. */
const TMP_DIR = 'tmp';
/** Temporary files of writes: `tmp/cairn-<pid>-<16 hex>.tmp` (sweepTempFiles recognises them by this shape). */
const TEMP_PREFIX = 'cairn-';
const TEMP_SUFFIX = '.tmp';
const TEMP_NAME = /^cairn-(\d{1,10})-[0-9a-f]{16}\.tmp$/;
/** A temporary file whose process is gone is swept once this old (another host's writer sharing the folder is still writing into it, so it is younger). */
const DEAD_TEMP_GRACE_MS = 60_000;

/**
 * A file's info from plain (number) stats: they cost less than bigint ones on
 * the read path, which stats on every request. The times are fractional
 * milliseconds (sub-microsecond resolution today).
 */
function infoOf(st: import('node:fs').Stats): BlobInfo {
  return {
    size: st.size,
    mtimeMs: Math.floor(st.mtimeMs),
    // The change time too: it moves on every write and cannot be set back
    // (an in-place repair that restores the size and the mtime still shows).
    // Decimal: V8 caches number-to-string conversions in base 10 (not in base 36, ~0.4 µs a version).
    version: `${st.ino}-${st.size}-${st.mtimeMs}-${st.ctimeMs}`,
  };
}

export interface FsBackendOptions {
  /**
   * Never read through a symbolic link that leads out of the root (default
   * false): a file whose real path (of the descriptor actually opened, so no
   * swap between a check and the open gets round it) is not inside the root's
   * is treated as absent. Symlinks that stay inside are fine; the root itself
   * may be a symlink. For the data folder's repositories (an operator's stray
   * `x -> ../../secrets/token-secret` is not served). A stat (HEAD, 304)
   * checks the final component and the folder, whose real path is
   * remembered for DIR_CHECK_MS: a folder swapped for a symlink within that
   * second can show an outside file's size and date, never its bytes.
   */
  confine?: boolean;
  /**
   * Folders (relative to the root) that `remove` never deletes even when it
   * leaves them empty, nor their parents; default REPO_LAYOUT_FOLDERS. The
   * root is never deleted, and neither is a folder given to ensurePrefixes.
   */
  keepFolders?: readonly string[];
  /**
   * The mode of every file written (default 0o644), set on the open file
   * (whatever the umask): 0o600 for server state, which holds secrets.
   */
  fileMode?: number | ((key: string) => number);
  /**
   * The mode of folders made for writes (default: mkdir's, 0o777 less the
   * umask); 0o700 for server state. Folders given to ensurePrefixes or
   * keepFolders keep the default (a data folder's repos/ stays readable).
   */
  dirMode?: number;
  /**
   * A key that is a dangling symlink, or whose folder is a file, is an IO
   * error, not absent (default false): for server state, where "absent"
   * means defaults (a public repository), so unreadable must fail closed.
   */
  failClosed?: boolean;
}

/**
 * The folders of an OSTree repository's layout (those `ostree init` creates,
 * and the delta folders): ostree's own tools expect them to exist, so
 * removing the last file in one keeps the folder.
 */
export const REPO_LAYOUT_FOLDERS: readonly string[] = [
  'objects',
  'refs',
  'refs/heads',
  'refs/mirrors',
  'refs/remotes',
  'tmp',
  'tmp/cache',
  'state',
  'extensions',
  'deltas',
  'delta-indexes',
];

/** How long a folder's real path is trusted (folders of a repository are re-pointed by hand, if ever). */
const DIR_CHECK_MS = 1000;

/** The filesystem driver: keys are paths below `root`, the repository folder itself. */
export class FsBackend implements Backend {
  private readonly confine: boolean;
  private readonly fileMode: number | ((key: string) => number);
  private readonly dirMode: number | undefined;
  private readonly failClosed: boolean;
  /** Folders below the root whose real path was checked: confined or not, and when. */
  private readonly dirs = new Map<string, { inside: boolean; at: number }>();
  private rootReal?: { path: string; at: number };
  /** The root, absolute and normalised: where pruning stops. */
  private readonly rootPath: string;
  /** Absolute paths of the folders remove() must keep (see keepFolders), with their parents. */
  private readonly keep = new Set<string>();

  constructor(
    readonly root: string,
    opts: FsBackendOptions = {},
  ) {
    this.confine = opts.confine === true;
    this.fileMode = opts.fileMode ?? 0o644;
    this.dirMode = opts.dirMode;
    this.failClosed = opts.failClosed === true;
    this.rootPath = path.resolve(root);
    for (const f of opts.keepFolders ?? REPO_LAYOUT_FOLDERS) this.keepFolder(validateKey(f));
  }

  /** Marks `rel` and every folder above it (below the root) as kept. */
  private keepFolder(rel: string): void {
    for (let p = path.resolve(this.rootPath, rel); p.startsWith(this.rootPath + path.sep); p = path.dirname(p)) this.keep.add(p);
  }

  get location(): string {
    return this.root;
  }

  /** The file of a key: the absolute root, a separator, the key (validated: no `.`, `..` or empty segment, so no normalising is needed). */
  private resolve(key: string): string {
    return this.rootPath + path.sep + validateKey(key);
  }

  /** The root's real path, re-read at most every DIR_CHECK_MS (or on demand: `fresh`); the root itself may be a symlink an operator re-points. */
  private realRoot(fresh = false): string {
    const now = Date.now();
    if (fresh || !this.rootReal || now - this.rootReal.at >= DIR_CHECK_MS) this.rootReal = { path: realpathSync.native(this.rootPath), at: now };
    return this.rootReal.path;
  }

  private underRoot(real: string, root: string): boolean {
    return real === root || real.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
  }

  /** Whether the real path of `p` lies inside the root's; 'absent' when `p` does not exist (reading it finds nothing). */
  private inside(p: string): boolean | 'absent' {
    let real: string;
    try {
      real = realpathSync.native(p);
    } catch (e) {
      if (isNotFoundErrno(e) || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return 'absent';
      throw e;
    }
    return this.underRoot(real, this.realRoot()) || this.underRoot(real, this.realRoot(true));
  }

  /**
   * A confined read's check of the descriptor actually opened (so no swap of
   * a file or folder between a check and the open can get round it): its
   * real path must lie inside the root's.
   */
  private openedInside(fd: number): boolean {
    let real: string;
    try {
      real = realpathSync.native(`/proc/self/fd/${fd}`);
    } catch {
      return true; // no /proc: the folder and final-symlink checks before the open stand alone
    }
    return this.underRoot(real, this.realRoot()) || this.underRoot(real, this.realRoot(true));
  }

  /**
   * For a confined backend's stat (metadata only: reads check the opened
   * descriptor itself): whether the folder of `key` (whose file is `file`)
   * stays inside the root. A folder found inside is remembered by the key's
   * folder part (short: `objects/ab`) for DIR_CHECK_MS; an absent one is not.
   */
  private dirInside(key: string, file: string): boolean {
    const slash = key.lastIndexOf('/');
    if (slash === -1) return true;
    const dirKey = key.slice(0, slash);
    const now = Date.now();
    const hit = this.dirs.get(dirKey);
    if (hit && now - hit.at < DIR_CHECK_MS) return hit.inside;
    const inside = this.inside(file.slice(0, file.length - (key.length - slash)));
    if (inside === 'absent') return true;
    if (this.dirs.size >= 4096) this.dirs.clear();
    this.dirs.set(dirKey, { inside, at: now });
    return inside;
  }

  /** A confined stat's check of a file that is a symlink. */
  private linkInside(file: string): boolean {
    return this.inside(file) === true;
  }

  async stat(key: string): Promise<BlobInfo | null> {
    const file = this.resolve(key); // outside the try: INVALID_PATH must not become IO
    try {
      if (this.confine && !(this.dirInside(key, file) && (!(await fsp.lstat(file)).isSymbolicLink() || this.linkInside(file)))) return null;
      const st = await fsp.stat(file);
      return st.isFile() ? infoOf(st) : null;
    } catch (e) {
      if (this.failClosed) return this.absentOrFail(e, key, file);
      if (isNotFoundErrno(e)) return null;
      throw ioError(e, key);
    }
  }

  async touch(key: string): Promise<void> {
    const file = this.resolve(key);
    try {
      const now = new Date();
      await fsp.utimes(file, now, now);
    } catch (e) {
      if (isNotFoundErrno(e)) return;
      throw ioError(e, key);
    }
  }

  /** Local storage: statFast/readFast answer at once (statNow/readNow). */
  readonly blocking = true;

  statFast(key: string): BlobInfo | null {
    return this.statNow(key);
  }

  readFast(key: string): { data: Buffer; info: BlobInfo } | null {
    return this.readNow(key);
  }

  statNow(key: string): BlobInfo | null {
    const file = this.resolve(key);
    try {
      if (!this.confine) {
        const st = statSync(file, { throwIfNoEntry: false });
        if (!st && this.failClosed && lstatSync(file, { throwIfNoEntry: false })) throw dangling(key);
        return st?.isFile() ? infoOf(st) : null;
      }
      if (!this.dirInside(key, file)) return null;
      let st = lstatSync(file, { throwIfNoEntry: false });
      if (st?.isSymbolicLink()) st = this.linkInside(file) ? statSync(file, { throwIfNoEntry: false }) : undefined;
      return st?.isFile() ? infoOf(st) : null;
    } catch (e) {
      if (this.failClosed) return this.absentOrFail(e, key, file);
      if (isNotFoundErrno(e)) return null;
      throw ioError(e, key);
    }
  }

  /** failClosed: only a key that truly is not there is absent (no dangling symlink, no file where a folder should be). */
  private absentOrFail(e: unknown, key: string, file: string): null {
    if (e instanceof CairnError) throw e;
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(e, key);
    if (lstatSync(file, { throwIfNoEntry: false })) throw dangling(key);
    return null;
  }

  readNow(key: string): { data: Buffer; info: BlobInfo } | null {
    const file = this.resolve(key);
    let fd: number;
    try {
      fd = openSync(file, fsc.O_RDONLY);
      if (this.confine && !this.openedInside(fd)) {
        closeSync(fd);
        return null;
      }
    } catch (e) {
      if (isNotFoundErrno(e) || (e as NodeJS.ErrnoException).code === 'EISDIR') return null;
      throw ioError(e, key);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) return null;
      const size = Number(st.size);
      const data = Buffer.allocUnsafe(size);
      let off = 0;
      while (off < size) {
        const n = readSync(fd, data, off, size - off, off);
        if (n === 0) break;
        off += n;
      }
      // Shrank under us (an in-place rewrite): report it as changed, the caller retries.
      if (off < size) return { data: data.subarray(0, off), info: { ...infoOf(st), version: `${infoOf(st).version}-short` } };
      return { data, info: infoOf(st) };
    } catch (e) {
      throw ioError(e, key);
    } finally {
      closeSync(fd);
    }
  }

  async read(key: string): Promise<{ data: Buffer; info: BlobInfo } | null> {
    const fh = await this.openFile(key);
    if (!fh) return null;
    try {
      const st = await fh.stat();
      if (!st.isFile()) return null;
      // One read of the size fstat gave (FileHandle.readFile would fstat again
      // and read until a second, empty read): fewer thread-pool round trips per
      // small file, which is most of a pull. A file that shrank under us (an
      // in-place rewrite; ostree and Cairn replace by rename) is read again whole.
      const size = Number(st.size);
      const data = Buffer.allocUnsafe(size);
      let off = 0;
      while (off < size) {
        const { bytesRead } = await fh.read(data, off, size - off, off);
        if (bytesRead === 0) break;
        off += bytesRead;
      }
      if (off < size) return { data: await fh.readFile(), info: infoOf(await fh.stat()) };
      return { data, info: infoOf(st) };
    } finally {
      await fh.close();
    }
  }

  async openRead(key: string, range?: ByteRange): Promise<{ stream: Readable; info: BlobInfo } | null> {
    const fh = await this.openFile(key);
    if (!fh) return null;
    let st: import('node:fs').Stats;
    try {
      st = await fh.stat();
    } catch (e) {
      await fh.close();
      throw ioError(e, key);
    }
    if (!st.isFile()) {
      await fh.close();
      return null;
    }
    // Streaming from the already-open descriptor means a concurrent replace
    // (rename over the path) cannot mix old and new bytes in one response.
    // The FileHandle's own stream owns the descriptor and closes it exactly
    // once: at the end, on error, or when destroyed (client gone). A raw-fd
    // stream with autoClose:false never emits 'close' at the end (leaking
    // the handle until GC), and destroying it closes the fd behind the
    // FileHandle's back (a double close that can hit a reused fd number).
    const stream = fh.createReadStream({ start: range?.start, end: range?.end, highWaterMark: 256 * 1024 });
    return { stream, info: infoOf(st) };
  }

  async openReader(key: string): Promise<BlobReader | null> {
    const fh = await this.openFile(key);
    if (!fh) return null;
    try {
      const st = await fh.stat();
      if (!st.isFile()) {
        await fh.close();
        return null;
      }
      return {
        info: infoOf(st),
        read: async (buffer, length, position) => (await fh.read(buffer, 0, length, position)).bytesRead,
        close: () => fh.close(),
      };
    } catch (e) {
      await fh.close();
      throw ioError(e, key);
    }
  }

  private async openFile(key: string): Promise<fsp.FileHandle | null> {
    const file = this.resolve(key); // outside the try: INVALID_PATH must not become IO
    try {
      const fh = await fsp.open(file, fsc.O_RDONLY);
      if (this.confine && !this.openedInside(fh.fd)) {
        await fh.close();
        return null;
      }
      return fh;
    } catch (e) {
      if (isNotFoundErrno(e) || (e as NodeJS.ErrnoException).code === 'EISDIR') return null;
      throw ioError(e, key);
    }
  }

  /**
   * Crash-safe: a temp file in tmp/, written and fsynced, renamed over the
   * target, the target's folder fsynced. The common case costs no mkdir: tmp/
   * is made once per backend (again if an open finds it gone), the target's
   * folder only when the rename finds it missing.
   */
  /**
   * Write-once: the bytes go to a temporary file (written, fsynced), which
   * is then link()ed to the key: the link fails with EEXIST when the key
   * exists, whoever wrote it (atomic against every writer, in any process).
   */
  async create(key: string, data: WriteSource): Promise<boolean> {
    const target = this.resolve(key);
    const dir = path.dirname(target);
    const tmp = path.join(this.rootPath, TMP_DIR, `${TEMP_PREFIX}${process.pid}-${randomBytes(8).toString('hex')}${TEMP_SUFFIX}`);
    let fh: fsp.FileHandle | undefined;
    try {
      fh = await this.openTemp(tmp, key);
      if (Buffer.isBuffer(data)) await fh.writeFile(data);
      else for await (const chunk of data) await writeAll(fh, chunk);
      await fh.sync();
      await fh.close();
      fh = undefined;
      for (let attempt = 0; ; attempt++) {
        try {
          await this.ensureDir(dir);
          await fsp.link(tmp, target);
          break;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'EEXIST') return false;
          if (attempt > 1 || code !== 'ENOENT') throw e; // ENOENT: a concurrent remove() pruned the folder
        }
      }
      await fsyncDir(dir).catch((e: unknown) => {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      });
      return true;
    } catch (e) {
      throw e instanceof CairnError ? e : ioError(e, key);
    } finally {
      if (fh) await fh.close().catch(() => {});
      await fsp.rm(tmp, { force: true }).catch(() => {});
    }
  }

  /** Under the lock file `cas` (every process sharing the folder): stat, compare the version, write, stat. */
  compareAndSwap(key: string, data: Buffer, expected: string | null): Promise<string | null> {
    return lockedCompareAndSwap(this, key, data, expected);
  }

  async write(key: string, data: WriteSource): Promise<void> {
    const p = await this.stage(key, data, false);
    await p.commit();
  }

  /**
   * The two halves of write() apart: everything that needs space now (the
   * temporary file written and fsynced, the target's folder made), the
   * rename into place at commit() (no space needed). See Backend.prepare.
   */
  prepare(key: string, data: WriteSource): Promise<PreparedWrite> {
    return this.stage(key, data, true);
  }

  private async stage(key: string, data: WriteSource, makeDir: boolean): Promise<PreparedWrite> {
    const target = this.resolve(key);
    const dir = path.dirname(target);
    const tmp = path.join(this.rootPath, TMP_DIR, `${TEMP_PREFIX}${process.pid}-${randomBytes(8).toString('hex')}${TEMP_SUFFIX}`);
    let fh: fsp.FileHandle | undefined;
    try {
      fh = await this.openTemp(tmp, key);
      if (Buffer.isBuffer(data)) {
        await fh.writeFile(data);
      } else {
        for await (const chunk of data) await writeAll(fh, chunk);
      }
      await fh.sync();
      await fh.close();
      fh = undefined;
      // A folder that cannot be made yet (a file of that name that the same switch removes first:
      // ref `a` goes, `a/b` comes) is made by commit() when the rename finds it missing.
      if (makeDir) await this.ensureDir(dir).catch((e: unknown) => {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST' && code !== 'ENOTDIR') throw e;
      });
    } catch (e) {
      if (fh) await fh.close().catch(() => {});
      await fsp.rm(tmp, { force: true }).catch(() => {});
      throw e instanceof CairnError ? e : ioError(e, key);
    }
    let done = false;
    return {
      commit: async () => {
        if (done) throw new CairnError('INVALID_ARGUMENT', `write of ${key} already committed or discarded`);
        done = true;
        try {
          // The target's folder is made only now (when the rename finds it
          // missing), so a refused write leaves no trace. A concurrent remove()
          // may prune that folder (empty until the rename) between the mkdir and
          // the rename: the rename then fails with ENOENT again; make it again, once.
          for (let attempt = 0; ; attempt++) {
            try {
              if (attempt > 0) await this.ensureDir(dir);
              await fsp.rename(tmp, target);
              break;
            } catch (e) {
              if (attempt > 1 || (e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
            }
          }
          // Gone only if the new file was removed (and its folder pruned) meanwhile: nothing to sync.
          await fsyncDir(dir).catch((e: unknown) => {
            if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
          });
        } catch (e) {
          await fsp.rm(tmp, { force: true }).catch(() => {});
          throw e instanceof CairnError ? e : ioError(e, key);
        }
      },
      discard: async () => {
        if (done) return;
        done = true;
        await fsp.rm(tmp, { force: true }).catch(() => {});
      },
    };
  }

  /** Whether tmp/ was made (or found) by this backend: writes then skip the mkdir. */
  private tmpReady = false;

  /** Creates the temp file `tmp` (exclusive), making tmp/ first if it is not known to exist or has gone. */
  private async openTemp(tmp: string, key: string): Promise<fsp.FileHandle> {
    if (!this.tmpReady) {
      await fsp.mkdir(path.dirname(tmp), { recursive: true, mode: this.dirMode });
      this.tmpReady = true;
    }
    try {
      return await this.openMode(tmp, key);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await fsp.mkdir(path.dirname(tmp), { recursive: true, mode: this.dirMode }); // removed since: once more
      return await this.openMode(tmp, key);
    }
  }

  private async openMode(tmp: string, key: string): Promise<fsp.FileHandle> {
    const mode = typeof this.fileMode === 'number' ? this.fileMode : this.fileMode(key);
    const fh = await fsp.open(tmp, 'wx', mode);
    if (mode !== 0o644) {
      try {
        await fh.chmod(mode); // open()'s mode is filtered by the umask
      } catch (e) {
        await fh.close().catch(() => undefined);
        throw e;
      }
    }
    return fh;
  }

  /** mkdir -p, then fsync the parents of what was created so the new entries survive a crash. */
  private async ensureDir(dir: string): Promise<void> {
    const first = await fsp.mkdir(dir, { recursive: true, mode: this.keep.has(dir) ? undefined : this.dirMode });
    if (first === undefined) return;
    let d = dir;
    const synced: string[] = [];
    while (d.length >= first.length) {
      synced.push(path.dirname(d));
      d = path.dirname(d);
    }
    for (const p of synced) await fsyncDir(p);
  }

  /**
   * Unlinks `key`, then removes the folders it leaves empty, innermost first,
   * so a removed key leaves no folder behind (deleting ref `a/b` frees the
   * name `a`). Stops at the first folder that is not empty, is the root, is
   * kept (keepFolders, ensurePrefixes) or cannot be removed (a symlink, say):
   * a writer that just put a file into a folder wins (rmdir fails ENOTEMPTY),
   * and a writer whose fresh, still empty folder vanished makes it again
   * (write's retry).
   */
  async remove(key: string): Promise<void> {
    const target = this.resolve(key);
    try {
      await fsp.unlink(target);
    } catch (e) {
      if (isNotFoundErrno(e)) return;
      throw ioError(e, key);
    }
    let dir = path.resolve(path.dirname(target));
    while (dir.startsWith(this.rootPath + path.sep) && !this.keep.has(dir)) {
      try {
        await fsp.rmdir(dir);
      } catch {
        break; // ENOTEMPTY/EEXIST (not empty, or just written into), ENOENT (pruned by another), ENOTDIR (a symlink), …
      }
      dir = path.dirname(dir);
    }
    // The folder whose entry changed last: the file's own, or the parent of the last folder removed.
    try {
      await fsyncDir(dir);
    } catch (e) {
      if (!isNotFoundErrno(e)) throw ioError(e, key);
    }
  }

  /** remove() of each key (validated first), REMOVE_PARALLEL at once: each unlink and folder sync is a thread-pool job, and concurrent syncs share the journal's commits. */
  async removeMany(keys: readonly string[]): Promise<void> {
    for (const k of keys) validateKey(k);
    await eachLimit(keys, REMOVE_PARALLEL, (k) => this.remove(k));
  }

  /** Also marks the folders as kept: remove() never prunes them. */
  async ensurePrefixes(prefixes: string[]): Promise<void> {
    for (const p of prefixes) {
      const dir = this.resolve(p);
      this.keepFolder(p);
      await this.ensureDir(dir).catch((e: unknown) => {
        throw ioError(e, p);
      });
    }
  }

  /**
   * Temporary files of writes (tmp/cairn-<pid>-<hex>.tmp, from this backend's
   * writes and lock records) whose process is gone (this host: no such pid)
   * and that are older than DEAD_TEMP_GRACE_MS, or that are older than
   * `graceMs` (default 1 h: a live writer's file grows, so its mtime is
   * recent); lock files whose holder is gone; locks broken aside earlier.
   * Files ostree itself keeps in tmp/ are not touched.
   */
  async sweep(opts: { graceMs?: number } = {}): Promise<string[]> {
    const grace = opts.graceMs ?? 60 * 60_000;
    const dir = path.join(this.rootPath, TMP_DIR);
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch (e) {
      if (isNotFoundErrno(e)) return [];
      throw ioError(e, TMP_DIR);
    }
    const removed: string[] = [];
    const now = Date.now();
    for (const name of names) {
      const file = path.join(dir, name);
      const temp = TEMP_NAME.exec(name);
      if (temp) {
        const st = await fsp.lstat(file).catch(() => null);
        if (!st?.isFile()) continue;
        const age = now - st.mtimeMs;
        const pid = Number(temp[1]);
        const dead = pid !== process.pid && !pidAlive(pid);
        if (age > grace || (dead && age > DEAD_TEMP_GRACE_MS)) {
          await fsp.rm(file, { force: true });
          removed.push(`removed temporary file tmp/${name} (${Math.round(age / 1000)} s old${dead ? `, process ${pid} gone` : ''})`);
        }
        continue;
      }
      if (/^cairn-[a-z0-9-]{1,64}\.lock$/.test(name)) {
        const why = await breakIfStale(file).catch(() => null);
        if (why) removed.push(`removed stale lock tmp/${name} (${why})`);
        continue;
      }
      if (/^cairn-[a-z0-9-]{1,64}\.lock\.stale-[0-9a-f]{8}$/.test(name)) {
        const st = await fsp.lstat(file).catch(() => null);
        if (st?.isFile() && now - st.mtimeMs > DEAD_TEMP_GRACE_MS) {
          await fsp.rm(file, { force: true });
          removed.push(`removed broken lock tmp/${name}`);
        }
      }
    }
    return removed;
  }

  /** Lock files live in the repository's tmp/ (never served; same filesystem for every process). */
  lock(name: string): Promise<HeldLock> {
    if (!/^[a-z0-9-]{1,64}$/.test(name)) throw new CairnError('INVALID_ARGUMENT', `invalid lock name ${name.slice(0, 80)}`);
    return acquireLockFile(path.join(this.root, TMP_DIR, `cairn-${name}.lock`));
  }

  async *list(prefix: string): AsyncIterable<string> {
    const start = prefix === '' ? this.root : this.resolve(prefix.replace(/\/$/, ''));
    const base = prefix === '' ? '' : prefix.replace(/\/$/, '') + '/';
    yield* walk(start, base);
  }
}


async function* walk(dir: string, rel: string): AsyncIterable<string> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch (e) {
    if (isNotFoundErrno(e)) return;
    throw ioError(e, rel);
  }
  for (const ent of entries) {
    const full = path.join(dir, ent.name);
    if (ent.isDirectory()) yield* walk(full, rel + ent.name + '/');
    else if (ent.isFile()) yield rel + ent.name;
    else if (ent.isSymbolicLink()) {
      const st = await fsp.stat(full).catch(() => null);
      if (st?.isDirectory()) yield* walk(full, rel + ent.name + '/');
      else if (st?.isFile()) yield rel + ent.name;
    }
  }
}

async function writeAll(fh: fsp.FileHandle, chunk: Buffer | Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
    off += bytesWritten;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function dangling(key: string): CairnError {
  return new CairnError('IO', `storage error on ${key}: a dangling symlink`, { path: key });
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function ioError(e: unknown, key: string): CairnError {
  const err = e as NodeJS.ErrnoException;
  if (isNoSpaceErrno(e)) return insufficientStorage(key);
  return new CairnError('IO', `storage error on ${key}: ${err.code ?? err.message}`, { path: key });
}
