import { randomBytes } from 'node:crypto';
import type { Repo } from './repo';

/** One recorded ref move. `old`/`new` are null for creation/deletion. */
export interface RefLogEntry {
  time: string; // ISO 8601
  ref: string;
  old: string | null;
  new: string | null;
  /** Who moved it (the token subject), or 'cli' / 'system'. */
  actor: string;
}

/**
 * The history of ref moves, kept in the repository's local-only `state/`
 * folder (never served to clients), one small immutable file per entry so
 * that recording is a single atomic write on any backend.
 */
const PREFIX = 'state/cairn/reflog';

export async function appendRefLog(repo: Repo, entries: RefLogEntry[]): Promise<void> {
  for (const e of entries) {
    const key = `${PREFIX}/${e.time.replace(/[:.]/g, '-')}-${randomBytes(4).toString('hex')}.json`;
    await repo.backend.write(key, Buffer.from(JSON.stringify(e) + '\n'));
  }
}

/** Newest first; optionally only one ref's history. */
export async function readRefLog(repo: Repo, opts: { ref?: string; limit?: number } = {}): Promise<RefLogEntry[]> {
  const keys: string[] = [];
  for await (const k of repo.backend.list(PREFIX)) if (k.endsWith('.json')) keys.push(k);
  keys.sort().reverse();
  const out: RefLogEntry[] = [];
  for (const k of keys) {
    const got = await repo.backend.read(k);
    if (!got) continue;
    const e = JSON.parse(got.data.toString('utf8')) as RefLogEntry;
    if (opts.ref && e.ref !== opts.ref) continue;
    out.push(e);
    if (opts.limit && out.length >= opts.limit) break;
  }
  return out;
}
