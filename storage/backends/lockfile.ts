import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CairnError, insufficientStorage, isNoSpaceErrno, isNotFoundErrno } from '../errors';
import { lockLost } from './backend';

/**
 * A cross-process lock held as a lock file that appears atomically with its
 * contents: the holder's record is written to a temporary file (fsynced),
 * which is then hard-linked to the lock's name. link() fails with EEXIST
 * when the lock is held, and exactly one process can create it, on a local
 * or a network filesystem (the classic NFS-safe lock). So a lock file is
 * never empty: a process that runs out of space (or dies) before the link
 * leaves no lock, only a temporary file that the next start sweeps (and the
 * failure is INSUFFICIENT_STORAGE, not a lock that stalls every publish).
 * Used for the repository's critical sections (ref compare-and-swap, summary
 * regeneration) when several Cairn processes (the `serve --workers` cluster,
 * `cairn commit`, `cairn delta`) share a data folder.
 *
 * Stale locks (a holder that crashed) are recovered:
 * - same host, and the holder's boot is not this boot (the machine restarted
 *   since) or its pid no longer exists → stale at once;
 * - otherwise the holder refreshes the file's mtime every HEARTBEAT_MS while
 *   it holds the lock, so a file untouched for STALE_MS is stale;
 * - a file without a readable record (left by an older Cairn that wrote it
 *   after creating it) is stale once EMPTY_STALE_MS old.
 * A stale lock is broken by renaming it aside (atomic: only one breaker wins)
 * and the waiter then competes for a fresh link like everyone else.
 */

const HEARTBEAT_MS = 5_000;
const STALE_MS = 30_000;
const EMPTY_STALE_MS = 2_000;

export interface LockOptions {
  /** Give up after this long (default 120 s): an IO error, the client may retry. */
  timeoutMs?: number;
}

/** A held lock file: calling it releases the lock; confirm() as Backend's HeldLock.confirm. */
export interface Release {
  (): Promise<void>;
  confirm(): Promise<void>;
}

interface Holder {
  pid: number;
  host: string;
  /** /proc/sys/kernel/random/boot_id where there is one: a pid is only meaningful within one boot. */
  boot?: string;
  token: string;
}

let bootIdMemo: string | undefined | null = null;
/** This machine's boot id (Linux), or undefined. */
export function bootId(): string | undefined {
  if (bootIdMemo === null) {
    try {
      bootIdMemo = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
    } catch {
      bootIdMemo = undefined;
    }
  }
  return bootIdMemo;
}

export async function acquireLockFile(file: string, opts: LockOptions = {}): Promise<Release> {
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  const me: Holder = { pid: process.pid, host: os.hostname(), boot: bootId(), token: randomBytes(8).toString('hex') };
  await fsp.mkdir(path.dirname(file), { recursive: true }).catch((e: unknown) => {
    throw lockError(e, file);
  });
  // The record, complete and durable before it can be seen under the lock's name.
  const tmp = path.join(path.dirname(file), `cairn-${process.pid}-${randomBytes(8).toString('hex')}.tmp`);
  try {
    const fh = await fsp.open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(JSON.stringify(me) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => {});
    throw lockError(e, file);
  }
  try {
    let wait = 2;
    for (;;) {
      try {
        await fsp.link(tmp, file);
        return held(file, me);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw lockError(e, file);
      }
      await breakIfStale(file);
      if (Date.now() > deadline) throw new CairnError('IO', `timed out waiting for lock ${path.basename(file)}`);
      await new Promise((r) => setTimeout(r, wait + Math.random() * wait));
      wait = Math.min(wait * 2, 50);
    }
  } finally {
    await fsp.rm(tmp, { force: true }).catch(() => {});
  }
}

function lockError(e: unknown, file: string): CairnError {
  if (e instanceof CairnError) return e;
  if (isNoSpaceErrno(e)) return insufficientStorage(`lock ${path.basename(file)}`);
  return new CairnError('IO', `cannot create lock ${path.basename(file)}: ${(e as NodeJS.ErrnoException).code ?? e}`);
}

function held(file: string, me: Holder): Release {
  const beat = setInterval(() => {
    const now = new Date();
    fsp.utimes(file, now, now).catch(() => {});
  }, HEARTBEAT_MS);
  beat.unref();
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    clearInterval(beat);
    // Only remove the file if it is still ours (it could have been broken as stale after a long stall).
    const cur = await readHolder(file);
    if (cur?.token === me.token) await fsp.rm(file, { force: true });
  };
  // Still ours (not broken as stale after a stall of STALE_MS): refreshed now, so it stays ours for STALE_MS more.
  const confirm = async (): Promise<void> => {
    const cur = released ? null : await readHolder(file);
    if (cur?.token !== me.token) throw lockLost(path.basename(file));
    const now = new Date();
    await fsp.utimes(file, now, now).catch(() => {});
  };
  return Object.assign(release, { confirm });
}

async function readHolder(file: string): Promise<Holder | null> {
  try {
    const o = JSON.parse(await fsp.readFile(file, 'utf8')) as Holder;
    return typeof o?.pid === 'number' && typeof o.token === 'string' ? o : null;
  } catch {
    return null; // absent, or not a record
  }
}

/** Why the lock file is stale (its holder is gone), or null while it may be held. */
async function staleness(file: string): Promise<{ why: string; holder: Holder | null } | null | 'absent'> {
  let st;
  try {
    st = await fsp.stat(file);
  } catch (e) {
    if (isNotFoundErrno(e)) return 'absent';
    throw e;
  }
  const h = await readHolder(file);
  const age = Date.now() - st.mtimeMs;
  if (age > STALE_MS) return { why: `not refreshed for ${Math.round(age / 1000)} s`, holder: h };
  if (!h) return age > EMPTY_STALE_MS ? { why: 'no holder record', holder: null } : null;
  if (h.host !== os.hostname()) return null;
  const boot = bootId();
  if (h.boot && boot && h.boot !== boot) return { why: `held by pid ${h.pid} before the machine restarted`, holder: h };
  if (h.pid !== process.pid && !pidAlive(h.pid)) return { why: `held by pid ${h.pid}, which is gone`, holder: h };
  return null;
}

/**
 * Breaks the lock file if its holder is gone; returns why it was stale, or
 * null when it was left alone (held, or absent).
 */
export async function breakIfStale(file: string): Promise<string | null> {
  const s = await staleness(file);
  if (s === null || s === 'absent') return null;
  const h = s.holder;
  const aside = `${file}.stale-${randomBytes(4).toString('hex')}`;
  try {
    await fsp.rename(file, aside);
  } catch (e) {
    if (isNotFoundErrno(e)) return null; // someone else broke it first
    throw e;
  }
  // If what we moved is not what we judged (a new holder got in between), put it back when possible.
  const moved = await readHolder(aside);
  if (h && moved && moved.token !== h.token) {
    await fsp.link(aside, file).catch(() => {});
  }
  await fsp.rm(aside, { force: true });
  return s.why;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
