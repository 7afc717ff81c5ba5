import { updateRefs } from '../../storage/repo/publish';
import { DEFAULT_REFLOG_LIMIT, MAX_REFLOG_LIMIT, readRefLogPage } from '../../storage/repo/reflog';
import type { ServerContext } from '../context';
import { repoLabel } from '../metrics';
import { route, type AnyRoute } from './route';
import { checksum, MAX_REF_UPDATES, nullableChecksum, ref, refName, type RefsAnswer, type RefUpdatesAnswer, type RefUpdatesBody } from './schema';

/** Refs: list, move atomically with compare-and-swap, and their history. */
export const refRoutes: AnyRoute[] = [
  route({
    method: 'get',
    path: '/api/repos/:repo/refs',
    label: 'api_refs',
    summary: 'Current refs',
    access: { repo: 'read' },
    responses: { 200: { description: 'ref → commit', schema: { type: 'object', properties: { refs: { type: 'object', additionalProperties: checksum } } } } },
    async handler({ repo }): Promise<RefsAnswer> {
      return { refs: Object.fromEntries(await repo.listRefs()) };
    },
  }),
  route<Record<string, never>, Record<string, never>, RefUpdatesBody>({
    method: 'post',
    path: '/api/repos/:repo/refs',
    label: 'api_refs_update',
    summary: 'Move refs atomically (push; each ref within the token prefixes)',
    description:
      'Every `expected` is compared with the current value (null = absent; omitted = no check); a mismatch answers 409 with details.conflicts and changes nothing. Each commit must have its whole tree present (422 with details.missing). Then refs, summary, commit signatures and summary.sig change together. Promotion is the same call with an existing commit.',
    // Every ref must be within the token's prefixes before anything is looked at.
    access: { repo: 'push', owned: true, refs: (body: RefUpdatesBody) => body.updates.map((u) => u.ref) },
    body: {
      limit: '1mb',
      json: {
        type: 'object',
        required: ['updates'],
        additionalProperties: false,
        properties: {
          updates: {
            type: 'array',
            minItems: 1,
            maxItems: MAX_REF_UPDATES,
            items: { type: 'object', required: ['ref', 'commit'], additionalProperties: false, properties: { ref: refName, commit: nullableChecksum, expected: nullableChecksum } },
          },
          force: { type: 'boolean', description: 'skip the compare-and-swap' },
        },
      },
    },
    responses: { 200: { description: 'the moves made', schema: { type: 'object', properties: { changes: { type: 'array', items: ref('RefChange') } } } } },
    errors: [409, 422],
    async handler({ ctx, env, repo, body, claims }): Promise<RefUpdatesAnswer> {
      const changes = await updateRefs(repo, body.updates, {
        actor: (await claims())!.sub,
        force: body.force === true,
        signer: await ctx.signerFor(repo),
        onPublished: (c) => ctx.onPublished?.(repo, c),
      });
      env.metrics?.refsUpdated(repoLabel(repo.name, isPrivate(ctx, repo.name)), changes.length);
      return { changes };
    },
  }),
  route<Record<string, never>, { ref?: string; limit: number; before?: string }>({
    method: 'get',
    path: '/api/repos/:repo/reflog',
    label: 'api_reflog',
    summary: 'Ref history, newest first: time, ref, old, new, and actor (token subject) for push or admin tokens of the repository only',
    description: 'A page opens at most 5,000 entry files; `next` (null at the end) continues with `before`.',
    access: { repo: 'read' },
    query: {
      type: 'object',
      properties: {
        ref: refName,
        limit: { type: 'integer', minimum: 1, maximum: MAX_REFLOG_LIMIT, default: DEFAULT_REFLOG_LIMIT },
        before: { type: 'string', minLength: 1, maxLength: 200, description: 'the `next` of the previous page' },
      },
    },
    responses: { 200: { description: 'a page of the ref log', schema: { type: 'object', properties: { entries: { type: 'array', items: ref('RefChange') }, next: { type: ['string', 'null'] } } } } },
    async handler({ repo, query, may }) {
      // Who moved a ref (a token subject) is for publishers and admins of this repository only.
      const showActor = await may({ scope: 'push', repo: repo.name });
      const page = await readRefLogPage(repo, { ref: query.ref, limit: query.limit, before: query.before });
      return { entries: showActor ? page.entries : page.entries.map(({ actor: _actor, ...e }) => e), next: page.next };
    },
  }),
];

/** Whether a repository is private; settings that cannot be read count as private (its name stays out of /metrics). */
export function isPrivate(ctx: Pick<ServerContext, 'settings'>, name: string): boolean {
  try {
    return ctx.settings.current(name).private;
  } catch {
    return true;
  }
}
