import { deleteRef, promote, rollback, type OperatorWriteOptions } from '../../storage/browse';
import { CairnError } from '../../storage/errors';
import type { Repo } from '../../storage/repo/repo';
import type { ServerContext } from '../context';
import { repoLabel } from '../metrics';
import { isPrivate } from './refs';
import { route, type AnyRoute, type ApiEnv } from './route';
import { checksum, nullableChecksum, ref, refName, type DeleteRefBody, type OperatorAnswer, type PromoteBody, type RollbackAnswer, type RollbackBody } from './schema';

/**
 * Operator writes (issue #10 item 3): promote a commit from one ref to
 * another, roll a ref back to an earlier commit of its own history, delete a
 * ref. Each is one compare-and-swap ref update through storage/browse
 * operator.ts (updateRefs: the repository's lock, the completeness walk,
 * signing, summary, a ref-log entry naming the token's subject): `expected`
 * is required, and a ref that no longer holds it answers 409 CONFLICT with
 * nothing changed. A push token may do it within its ref prefixes (checked
 * on the ref that moves before anything is read), in repositories Cairn owns.
 */

async function writeOptions(ctx: ServerContext, repo: Repo, claims: () => Promise<{ sub: string } | null>): Promise<OperatorWriteOptions> {
  return {
    actor: (await claims())!.sub,
    signer: await ctx.signerFor(repo),
    onPublished: (c) => ctx.onPublished?.(repo, c),
  };
}

function counted(env: ApiEnv, ctx: ServerContext, repo: Repo, n: number): void {
  env.metrics?.refsUpdated(repoLabel(repo.name, isPrivate(ctx, repo.name)), n);
}

const result = { 200: { description: 'the ref moved', schema: ref('OperatorResult') } };

export const operatorRoutes: AnyRoute[] = [
  route<Record<string, never>, Record<string, never>, PromoteBody>({
    method: 'post',
    path: '/api/repos/:repo/promote',
    label: 'api_promote',
    summary: 'Point a ref at a commit published under another ref (compare-and-swap)',
    description:
      "`commit` must be in the history of `fromRef` (its head or reached from it by parents); without `fromRef`, it must be the head of some other ref. `expected` is what `to` holds now (null: it must not exist yet): 409 CONFLICT otherwise. The push token's prefixes must cover `to`.",
    access: { repo: 'push', owned: true, refs: (b: PromoteBody) => [b.to] },
    body: {
      limit: '16kb',
      json: {
        type: 'object',
        required: ['commit', 'to', 'expected'],
        additionalProperties: false,
        properties: { commit: checksum, to: refName, expected: nullableChecksum, fromRef: { ...refName, description: 'the ref whose history holds the commit' } },
      },
    },
    responses: result,
    errors: [409, 422],
    async handler({ ctx, env, repo, body, claims }): Promise<OperatorAnswer & { fromRef: string }> {
      const from = body.fromRef ?? (await refWithHead(repo, body.commit, body.to));
      const r = await promote(repo, { from, to: body.to, commit: body.commit, expected: body.expected }, await writeOptions(ctx, repo, claims));
      counted(env, ctx, repo, r.changes.length);
      return { ref: r.ref, old: r.old, new: r.new, changes: r.changes, fromRef: from };
    },
  }),
  route<Record<string, never>, Record<string, never>, RollbackBody>({
    method: 'post',
    path: '/api/repos/:repo/rollback',
    label: 'api_rollback',
    summary: 'Move a ref back to an earlier commit of its own history (compare-and-swap); hosts then need --allow-downgrade',
    description:
      "`commit` must be reached from `expected` (what the ref holds now) by following parents; 409 CONFLICT when the ref no longer holds `expected` (of two operators rolling back at once, one wins). Hosts already on a later commit refuse to go back unless told `--allow-downgrade` (`ostree admin upgrade --allow-downgrade`, `rpm-ostree upgrade --allow-downgrade`): the answer says so.",
    access: { repo: 'push', owned: true, refs: (b: RollbackBody) => [b.ref] },
    body: {
      limit: '16kb',
      json: { type: 'object', required: ['ref', 'commit', 'expected'], additionalProperties: false, properties: { ref: refName, commit: checksum, expected: checksum } },
    },
    responses: result,
    errors: [409, 422],
    async handler({ ctx, env, repo, body, claims }): Promise<RollbackAnswer> {
      const r = await rollback(repo, { ref: body.ref, to: body.commit, expected: body.expected }, await writeOptions(ctx, repo, claims));
      counted(env, ctx, repo, r.changes.length);
      return { ref: r.ref, old: r.old, new: r.new, changes: r.changes, downgrade: true, stepsBack: r.stepsBack, note: r.note };
    },
  }),
  route<Record<string, never>, Record<string, never>, DeleteRefBody>({
    method: 'post',
    path: '/api/repos/:repo/delete-ref',
    label: 'api_delete_ref',
    summary: 'Delete a ref if it still holds `expected` (compare-and-swap)',
    access: { repo: 'push', owned: true, refs: (b: DeleteRefBody) => [b.ref] },
    body: { limit: '16kb', json: { type: 'object', required: ['ref', 'expected'], additionalProperties: false, properties: { ref: refName, expected: checksum } } },
    responses: result,
    errors: [409],
    async handler({ ctx, env, repo, body, claims }): Promise<OperatorAnswer> {
      const r = await deleteRef(repo, { ref: body.ref, expected: body.expected }, await writeOptions(ctx, repo, claims));
      counted(env, ctx, repo, r.changes.length);
      return { ref: r.ref, old: r.old, new: r.new, changes: r.changes };
    },
  }),
];

/** Refs looked at to find one whose head is the promoted commit. */
const MAX_REFS_SCANNED = 10_000;

/** The first ref (by name) other than `except` whose head is `commit`; INVALID_ARGUMENT if none. */
async function refWithHead(repo: Repo, commit: string, except: string): Promise<string> {
  let n = 0;
  for (const [name, head] of await repo.listRefs()) {
    if (++n > MAX_REFS_SCANNED) break;
    if (head === commit && name !== except) return name;
  }
  throw new CairnError('INVALID_ARGUMENT', `commit ${commit} is the head of no other ref: name the ref whose history holds it (fromRef)`, { commit });
}
