/**
 * End of life, as `flatpak build-commit-from --end-of-life=REASON
 * [--end-of-life-rebase=NEWID]` does it: a new commit on top of the ref's
 * head, with the same tree, the head's metadata plus `ostree.endoflife`
 * (and `ostree.endoflife-rebase`), published by one compare-and-swap ref
 * update (signing, summary, xa.sparse-cache, index: storage/repo/publish.ts).
 * flatpak then shows the app or runtime as end-of-life in `remote-ls`,
 * `remote-info`, `update` and `install`.
 */
import { Variant, type VarDict } from '../gvariant';
import { CairnError } from '../errors';
import { decodeCommit, encodeCommit } from '../objects/commit';
import { ObjectType } from '../objects/types';
import { updateRefs, type UpdateRefsOptions } from '../repo/publish';
import type { RefLogEntry } from '../repo/reflog';
import type { Repo } from '../repo/repo';

export interface EndOfLifeRequest {
  ref: string;
  /** Why (shown to users); required by flatpak to mark the ref. */
  reason: string;
  /** The id of the app or runtime that replaces this one (flatpak offers to rebase). */
  rebase?: string;
  /** What the ref holds now (compare-and-swap). */
  expected: string;
  now?: Date;
}

export const MAX_EOL_TEXT = 1024;

export async function markEndOfLife(repo: Repo, req: EndOfLifeRequest, opts: UpdateRefsOptions): Promise<{ commit: string; changes: RefLogEntry[] }> {
  if (!/^(app|runtime)\/[^/]+\/[^/]+\/[^/]+$/.test(req.ref)) throw new CairnError('INVALID_ARGUMENT', `${req.ref} is not a flatpak app or runtime ref (app|runtime/ID/ARCH/BRANCH)`);
  // eslint-disable-next-line no-control-regex
  if (req.reason.length === 0 || req.reason.length > MAX_EOL_TEXT || /[\u0000-\u0008\u000b-\u001f\u007f]/.test(req.reason)) throw new CairnError('INVALID_ARGUMENT', `reason must have 1 to ${MAX_EOL_TEXT} characters and no control characters`);
  if (req.rebase !== undefined && !/^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)+$/.test(req.rebase)) throw new CairnError('INVALID_ARGUMENT', 'rebase must be an application or runtime id (e.g. org.example.NewApp)');
  const head = await repo.readRef(req.ref);
  if (head === null) throw new CairnError('NOT_FOUND', `no ref ${req.ref}`);
  if (head !== req.expected) throw new CairnError('CONFLICT', `ref ${req.ref} holds ${head}, not ${req.expected}`, { conflicts: [{ ref: req.ref, expected: req.expected, actual: head }] });
  const bytes = await repo.readMetadata(head, ObjectType.Commit);
  if (!bytes) throw new CairnError('NOT_FOUND', `ref ${req.ref} points to missing commit ${head}`);
  const c = decodeCommit(bytes);
  const metadata: VarDict = c.metadata.filter(([k]) => k !== 'ostree.endoflife' && k !== 'ostree.endoflife-rebase');
  metadata.push(['ostree.endoflife', new Variant('s', req.reason)]);
  if (req.rebase !== undefined) metadata.push(['ostree.endoflife-rebase', new Variant('s', req.rebase)]);
  const now = BigInt(Math.floor((req.now ?? new Date()).getTime() / 1000));
  const encoded = encodeCommit({
    ...c,
    metadata,
    parent: head,
    subject: `End of life: ${req.reason}`.slice(0, MAX_EOL_TEXT),
    body: '',
    timestamp: now > c.timestamp ? now : c.timestamp + 1n,
  });
  const commit = await repo.writeMetadata(ObjectType.Commit, encoded);
  const changes = await updateRefs(repo, [{ ref: req.ref, commit, expected: head }], opts);
  return { commit, changes };
}
