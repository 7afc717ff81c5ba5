import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CairnError, isNotFoundErrno } from '../errors';

/**
 * A cross-process lock held as a lock file created with O_CREAT|O_EXCL
 * (`open(…, 'wx')`): exactly one process can create it, on a local or a
 * network filesystem. Used for the repository's critical sections (ref
 * compare-and-swap, summary regeneration) when several Cairn processes (the
 * `serve --workers` cluster, `cairn commit`, `cairn delta`) share a data folder.
 *
 * Stale locks (a holder that crashed) are recovered:
 * - same host and the holder's pid no longer exists → stale at once;
 * - otherwise the holder refreshes the file's mtime every HEARTBEAT_MS while
 *   it holds the lock, so a file untouched for STALE_MS is stale.
 * A stale lock is broken by renaming it aside (atomic: only one breaker wins)
 * and the waiter then competes for a fresh O_EXCL create like everyone else.
 */

const HEARTBEAT_MS = 5_000;
const STALE_MS = 30_000;

export interface LockOptions {
  /** Give up after this long (default 120 s): an IO error, the client may retry. */
  timeoutMs?: number;
}

export type Release = () => Promise<void>;

interface Holder {
  pid: number;
  host: string;
  token: string;
}

export async function acquireLockFile(file: string, opts: LockOptions = {}): Promise<Release> {
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  const me: Holder = { pid: process.pid, host: os.hostname(), token: randomBytes(8).toString('hex') };
  await fsp.mkdir(path.dirname(file), { recursive: true });
  let wait = 2;
  for (;;) {
    try {
      const fh = await fsp.open(file, 'wx', 0o644);
      try {
        await fh.writeFile(JSON.stringify(me) + '\n');
      } finally {
        await fh.close();
      }
      return held(file, me);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new CairnError('IO', `cannot create lock ${path.basename(file)}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
    await breakIfStale(file);
    if (Date.now() > deadline) throw new CairnError('IO', `timed out waiting for lock ${path.basename(file)}`);
    await new Promise((r) => setTimeout(r, wait + Math.random() * wait));
    wait = Math.min(wait * 2, 50);
  }
}

function held(file: string, me: Holder): Release {
  const beat = setInterval(() => {
    const now = new Date();
    fsp.utimes(file, now, now).catch(() => {});
  }, HEARTBEAT_MS);
  beat.unref();
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    clearInterval(beat);
    // Only remove the file if it is still ours (it could have been broken as stale after a long stall).
    const cur = await readHolder(file);
    if (cur?.token === me.token) await fsp.rm(file, { force: true });
  };
}

async function readHolder(file: string): Promise<Holder | null> {
  try {
    const o = JSON.parse(await fsp.readFile(file, 'utf8')) as Holder;
    return typeof o?.pid === 'number' && typeof o.token === 'string' ? o : null;
  } catch {
    return null; // absent, or being written right now (empty)
  }
}

async function breakIfStale(file: string): Promise<void> {
  let st;
  try {
    st = await fsp.stat(file);
  } catch (e) {
    if (isNotFoundErrno(e)) return;
    throw e;
  }
  const h = await readHolder(file);
  let stale = Date.now() - st.mtimeMs > STALE_MS;
  if (!stale && h && h.host === os.hostname() && h.pid !== process.pid) stale = !pidAlive(h.pid);
  // An unreadable file younger than STALE_MS is a holder between create and write: not stale.
  if (!stale) return;
  const aside = `${file}.stale-${randomBytes(4).toString('hex')}`;
  try {
    await fsp.rename(file, aside);
  } catch (e) {
    if (isNotFoundErrno(e)) return; // someone else broke it first
    throw e;
  }
  // If what we moved is not what we judged (a new holder got in between), put it back when possible.
  const moved = await readHolder(aside);
  if (h && moved && moved.token !== h.token) {
    await fsp.link(aside, file).catch(() => {});
  }
  await fsp.rm(aside, { force: true });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
