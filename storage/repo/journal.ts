import { createHash, randomBytes } from 'node:crypto';
import type { Backend } from '../backends/backend';
import { isChecksum } from '../objects/checksum';
import type { RefLogEntry } from './reflog';

/**
 * The publish journal: `state/cairn/publish.journal` (local-only, never
 * served). Every switch of what a repository publishes (refs, summary,
 * summary.sig, ref log) writes it, in one atomic write, after everything
 * that needs space is staged and before the first file switches; it is
 * removed once the last one switched (docs/publishing.md).
 *
 * - It is the commit point: a process that dies (or fails) between the
 *   journal and its removal leaves it behind, and the next start or publish
 *   rolls the switch forward from it (recovery.ts): the refs are set to
 *   their new values, the missing ref-log entries written under the names
 *   recorded here, the summary and its signature regenerated from the refs.
 * - It tells readers which summary/summary.sig pairs belong together while
 *   the two files are being renamed one after the other (server/files/summary-pair.ts):
 *   the SHA-256 of the pair being replaced and of the new one.
 */
export const JOURNAL_KEY = 'state/cairn/publish.journal';

export interface JournalChange extends RefLogEntry {
  /** The ref-log file this move is recorded in (below state/cairn/reflog/). */
  file: string;
}

export interface PairDigests {
  /** SHA-256 (hex) of `summary`, null when there is none. */
  summary: string | null;
  /** SHA-256 (hex) of `summary.sig`, null when there is none. */
  sig: string | null;
}

export interface Journal {
  version: 1;
  id: string;
  time: string;
  /** Ref moves of this switch (none for a summary-only regeneration). */
  changes: JournalChange[];
  /** The pair being published. */
  next: PairDigests;
  /** The pair it replaces (as it was read under the lock). */
  prev: PairDigests;
}

export function newJournalId(): string {
  return randomBytes(8).toString('hex');
}

export function sha256OrNull(data: Buffer | null | undefined): string | null {
  return data ? createHash('sha256').update(data).digest('hex') : null;
}

const MAX_JOURNAL_BYTES = 4 * 1024 * 1024;

function isDigest(v: unknown): v is string | null {
  return v === null || (typeof v === 'string' && /^[0-9a-f]{64}$/.test(v));
}

/** Parses a journal's bytes; null when they are not one (a damaged file is reported by recovery). */
export function parseJournal(data: Buffer): Journal | null {
  if (data.length > MAX_JOURNAL_BYTES) return null;
  let j: Journal;
  try {
    j = JSON.parse(data.toString('utf8')) as Journal;
  } catch {
    return null;
  }
  if (!j || j.version !== 1 || typeof j.id !== 'string' || !Array.isArray(j.changes)) return null;
  for (const p of [j.next, j.prev]) if (!p || !isDigest(p.summary) || !isDigest(p.sig)) return null;
  for (const c of j.changes) {
    if (!c || typeof c.ref !== 'string' || typeof c.file !== 'string' || !/^[A-Za-z0-9._-]{1,200}\.json$/.test(c.file)) return null;
    if (!(c.new === null || isChecksum(c.new)) || !(c.old === null || isChecksum(c.old))) return null;
  }
  return j;
}

export async function readJournal(backend: Backend): Promise<{ journal: Journal | null; present: boolean }> {
  const got = await backend.read(JOURNAL_KEY);
  if (!got) return { journal: null, present: false };
  return { journal: parseJournal(got.data), present: true };
}

/**
 * Whether (summary, sig) is one of the journal's two pairs: the one being
 * replaced or the one being published. A mix of the two is a switch in
 * progress (or interrupted).
 */
export function pairMatches(j: Journal, summary: Buffer | null, sig: Buffer | null): boolean {
  const s = sha256OrNull(summary);
  const g = sha256OrNull(sig);
  return (s === j.next.summary && g === j.next.sig) || (s === j.prev.summary && g === j.prev.sig);
}
