/**
 * Operator writes: promote a commit from one ref to another, roll a ref back
 * to an earlier commit of its own history, delete a ref. Each is one
 * compare-and-swap ref update through storage/repo/publish.ts `updateRefs`
 * (the repository's lock, the completeness walk, signing, the summary and a
 * ref-log entry), so every guarantee of a push holds for them too.
 */
import { CairnError } from '../errors';
import { validateChecksum } from '../objects/checksum';
import { updateRefs, type UpdateRefsOptions } from '../repo/publish';
import type { RefLogEntry } from '../repo/reflog';
import { validateRefName } from '../repo/names';
import type { Repo } from '../repo/repo';
import { stepsBack } from './history';

/** What updateRefs needs besides the updates (no `force`: operator writes always compare and swap). */
export type OperatorWriteOptions = Omit<UpdateRefsOptions, 'force'>;

/** How far back an ancestor is looked for (commits followed from the ref's commit). */
export const MAX_ANCESTRY_STEPS = 100_000;

export interface OperatorResult {
  ref: string;
  /** The ref's commit before (null: it did not exist). */
  old: string | null;
  /** The ref's commit after (null: deleted). */
  new: string | null;
  /** The ref-log entries written (empty when nothing moved). */
  changes: RefLogEntry[];
}

export interface PromoteRequest {
  /** The ref the commit is published under now. */
  from: string;
  /** The ref to point at it. */
  to: string;
  /** The commit: `from`'s head or one of its ancestors. */
  commit: string;
  /** What `to` holds now (null: it must not exist yet). Required: the caller saw it. */
  expected: string | null;
}

/**
 * Points ref `to` at `commit`, which must be in ref `from`'s history (its
 * head or reached from it by parents): what was published there is what gets
 * promoted. CONFLICT when `to` no longer holds `expected`; INVALID_ARGUMENT
 * when the commit is not in `from`'s history; NOT_FOUND when `from` does not exist.
 */
export async function promote(repo: Repo, req: PromoteRequest, opts: OperatorWriteOptions): Promise<OperatorResult> {
  validateRefName(req.from);
  validateRefName(req.to);
  validateChecksum(req.commit);
  if (req.expected !== null) validateChecksum(req.expected);
  if (req.from === req.to) throw new CairnError('INVALID_ARGUMENT', 'promote needs two different refs');
  const head = await repo.readRef(req.from);
  if (!head) throw new CairnError('NOT_FOUND', `ref ${req.from} does not exist`, { ref: req.from });
  const back = await stepsBack(repo, head, req.commit, MAX_ANCESTRY_STEPS);
  if (back.steps === null) {
    throw new CairnError('INVALID_ARGUMENT', `commit ${req.commit} is not in the history of ${req.from}`, { ref: req.from, commit: req.commit, searchBounded: back.bounded });
  }
  const changes = await updateRefs(repo, [{ ref: req.to, commit: req.commit, expected: req.expected }], { ...opts, force: false });
  return { ref: req.to, old: req.expected, new: req.commit, changes };
}

export interface RollbackRequest {
  ref: string;
  /** The earlier commit to go back to. */
  to: string;
  /** What the ref holds now. The history is checked from this commit, and the swap happens only if the ref still holds it. */
  expected: string;
}

export interface RollbackResult extends OperatorResult {
  /** Commits back from `expected` to `to` along parents. */
  stepsBack: number;
  /** Always true: hosts already on a later commit update only with `--allow-downgrade`. */
  allowDowngradeRequired: true;
  /** The same, said for people. */
  note: string;
}

/**
 * Moves `ref` back to `to`, an earlier commit of its own history: `to` must
 * be reached from `expected` (the ref's current commit) by following
 * parents, else INVALID_ARGUMENT (a commit from another line of history is a
 * promote, not a rollback). CONFLICT when the ref no longer holds `expected`
 * (two operators rolling back at once: one wins). Hosts that already run a
 * later commit refuse to go back unless told `--allow-downgrade`
 * (`ostree admin upgrade --allow-downgrade`, `rpm-ostree upgrade --allow-downgrade`).
 */
export async function rollback(repo: Repo, req: RollbackRequest, opts: OperatorWriteOptions): Promise<RollbackResult> {
  validateRefName(req.ref);
  validateChecksum(req.to);
  validateChecksum(req.expected);
  if (req.to === req.expected) throw new CairnError('INVALID_ARGUMENT', `ref ${req.ref} already holds ${req.to}`, { ref: req.ref, commit: req.to });
  // Checked from `expected`: the swap below succeeds only if the ref still holds it, so the check is about what is replaced.
  const back = await stepsBack(repo, req.expected, req.to, MAX_ANCESTRY_STEPS);
  if (back.steps === null) {
    throw new CairnError('INVALID_ARGUMENT', `commit ${req.to} is not an earlier commit of ${req.ref} (not reached from ${req.expected} by its parents)`, {
      ref: req.ref,
      commit: req.to,
      searchBounded: back.bounded,
    });
  }
  const changes = await updateRefs(repo, [{ ref: req.ref, commit: req.to, expected: req.expected }], { ...opts, force: false });
  return {
    ref: req.ref,
    old: req.expected,
    new: req.to,
    changes,
    stepsBack: back.steps,
    allowDowngradeRequired: true,
    note: `hosts already on a later commit of ${req.ref} need --allow-downgrade (ostree admin upgrade --allow-downgrade) to go back to ${req.to}`,
  };
}

export interface DeleteRefRequest {
  ref: string;
  /** What the ref holds now. */
  expected: string;
}

/** Deletes `ref` if it still holds `expected` (CONFLICT otherwise, NOT_FOUND-like CONFLICT when it is already gone). */
export async function deleteRef(repo: Repo, req: DeleteRefRequest, opts: OperatorWriteOptions): Promise<OperatorResult> {
  validateRefName(req.ref);
  validateChecksum(req.expected);
  const changes = await updateRefs(repo, [{ ref: req.ref, commit: null, expected: req.expected }], { ...opts, force: false });
  return { ref: req.ref, old: req.expected, new: null, changes };
}
