/**
 * A ref's history: its commits following parents, newest first, one page at
 * a time. The cursor is the checksum of the next commit to show, so a page
 * costs `limit` commit reads whatever the history's length.
 */
import { CairnError } from '../errors';
import { validateChecksum } from '../objects/checksum';
import { ObjectType } from '../objects/types';
import type { Repo } from '../repo/repo';
import { commitSummary, type CommitSummary } from './commit';
import { signatureKinds } from './signatures';
import { findCommit } from './trees';

export interface HistoryEntry extends CommitSummary {
  /** The commit has detached signatures (not verified here: see commitDetail). */
  signed: boolean;
}

/** Why a history ends. */
export type HistoryEnd =
  /** The last commit has no parent. */
  | { reason: 'root' }
  /** The next commit is not in the repository (a shallow copy, or pruned: `tombstone` when ostree left a tombstone). */
  | { reason: 'missing'; commit: string; tombstone: boolean };

export interface HistoryPage {
  ref: string;
  /** The ref's current commit. */
  head: string;
  entries: HistoryEntry[];
  /** Cursor of the next page (the next commit's checksum), null when the history ends on this page. */
  next: string | null;
  /** Set when the history ends on this page. */
  end: HistoryEnd | null;
}

export const DEFAULT_HISTORY_LIMIT = 50;
export const MAX_HISTORY_LIMIT = 200;

/**
 * One page of `ref`'s history. `cursor` (a `next` of an earlier page) starts
 * the page at that commit; it is not checked to belong to the ref (that would
 * cost a walk from the head): it lists that commit's ancestry. NOT_FOUND when
 * the ref does not exist, or when the cursor commit is absent.
 */
export async function refHistory(repo: Repo, ref: string, opts: { cursor?: string | null; limit?: number } = {}): Promise<HistoryPage> {
  const limit = Math.min(MAX_HISTORY_LIMIT, Math.max(1, Math.floor(Number.isFinite(opts.limit) ? opts.limit! : DEFAULT_HISTORY_LIMIT)));
  const head = await repo.readRef(ref);
  if (!head) throw new CairnError('NOT_FOUND', `ref ${ref} does not exist in repository ${repo.name}`, { ref });
  const start = opts.cursor ? validateChecksum(opts.cursor) : head;
  if (opts.cursor && !(await findCommit(repo, start))) throw new CairnError('NOT_FOUND', `commit ${start} is not in repository ${repo.name}`, { commit: start });
  const page: HistoryPage = { ref, head, entries: [], next: null, end: null };
  let at: string | null = start;
  while (at && page.entries.length < limit) {
    const c = await findCommit(repo, at);
    if (!c) {
      page.end = { reason: 'missing', commit: at, tombstone: await repo.hasObject(at, ObjectType.TombstoneCommit) };
      return page;
    }
    const kinds = await signatureKinds(repo, at);
    page.entries.push({ ...commitSummary(at, c), signed: kinds.gpg || kinds.ed25519 });
    at = c.parent;
  }
  if (!at) page.end = { reason: 'root' };
  else page.next = at;
  return page;
}

/**
 * Whether `ancestor` is `descendant` itself or is reached from it by
 * following parents, within `maxSteps` commits. Returns the number of steps
 * back (0 for the commit itself) or null when it is not reached (the chain
 * ended, a parent is missing, or the bound was hit: `bounded` says which).
 */
export async function stepsBack(repo: Repo, descendant: string, ancestor: string, maxSteps = 100_000): Promise<{ steps: number | null; bounded: boolean }> {
  let at: string | null = descendant;
  for (let i = 0; at && i <= maxSteps; i++) {
    if (at === ancestor) return { steps: i, bounded: false };
    const c = await findCommit(repo, at);
    if (!c) return { steps: null, bounded: false };
    at = c.parent;
    if (i % 256 === 255) await new Promise<void>((r) => setImmediate(r));
  }
  return { steps: null, bounded: at !== null };
}
