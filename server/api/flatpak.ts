import { CairnError } from '../../storage/errors';
import { readRemoteConfig } from '../../storage/flatpak/config';
import { flatpakRefFile, flatpakRepoFile, pickRef } from '../../storage/flatpak/flatpakrepo';
import { isFlatpakRepo } from '../../storage/flatpak/index';
import { markEndOfLife } from '../../storage/flatpak/eol';
import type { Repo } from '../../storage/repo/repo';
import { route, type AnyRoute, type Call } from './route';

/**
 * Flatpak's one-command files: `/repo/NAME.flatpakrepo` (flatpak remote-add
 * --from URL) and `/repo/NAME/flatpak/ID.flatpakref` (flatpak install --from
 * URL), for repositories of kind flatpak (README "Flatpak"). Both are built
 * from the repository's remote configuration and public GPG key on each
 * request; their URL is the one the client used to reach Cairn.
 */
interface EndOfLifeBody {
  ref: string;
  reason: string;
  rebase?: string;
  expected: string;
}

export const flatpakRoutes: AnyRoute[] = [
  route<Record<string, never>, Record<string, never>, EndOfLifeBody>({
    method: 'post',
    path: '/api/repos/:repo/end-of-life',
    label: 'api_end_of_life',
    summary: 'Mark a flatpak app or runtime branch end-of-life (a new commit on its head, as `flatpak build-commit-from --end-of-life`)',
    description: '`reason` is shown to users; `rebase` names the id that replaces it. 409 CONFLICT when the ref no longer holds `expected`.',
    access: { repo: 'push', owned: true, refs: (b: EndOfLifeBody) => [b.ref] },
    body: {
      limit: '16kb',
      json: {
        type: 'object',
        required: ['ref', 'reason', 'expected'],
        additionalProperties: false,
        properties: {
          ref: { type: 'string', maxLength: 1024 },
          reason: { type: 'string', minLength: 1, maxLength: 1024 },
          rebase: { type: 'string', maxLength: 255 },
          expected: { type: 'string', pattern: '^[0-9a-f]{64}$' },
        },
      },
    },
    responses: { 200: { description: 'the ref moved to the end-of-life commit', schema: { type: 'object', properties: { ref: { type: 'string' }, old: { type: 'string' }, new: { type: 'string' } } } } },
    errors: [409],
    async handler({ ctx, repo, body, claims }) {
      const r = await markEndOfLife(repo, body, {
        actor: (await claims())!.sub,
        signer: await ctx.signerFor(repo),
        onPublished: (c) => ctx.onPublished?.(repo, c),
      });
      return { ref: body.ref, old: body.expected, new: r.commit };
    },
  }),
  route({
    method: 'get',
    path: '/repo/:repo.flatpakrepo',
    label: 'repo_flatpakrepo',
    summary: 'The .flatpakrepo of a flatpak repository, for `flatpak remote-add --from URL`',
    access: { repo: 'read' },
    responses: { 200: { description: 'key file', contentType: 'application/vnd.flatpak.repo', schema: { type: 'string' } } },
    async handler(c) {
      const { ctx, repo, res } = c;
      const config = await flatpakConfig(repo);
      const keys = (await ctx.publicKeysFor?.(repo)) ?? {};
      return send(c, 'application/vnd.flatpak.repo', flatpakRepoFile({ url: repoUrl(c), name: repo.name, config, gpgArmored: keys.gpgArmored }), res);
    },
  }),
  route<{ id: string }, { branch?: string }, unknown>({
    method: 'get',
    path: '/repo/:repo/flatpak/:id.flatpakref',
    label: 'repo_flatpakref',
    summary: 'The .flatpakref of an app (or runtime) of a flatpak repository, for `flatpak install --from URL`',
    access: { repo: 'read' },
    params: { type: 'object', properties: { id: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,255}$' } } },
    query: { type: 'object', additionalProperties: false, properties: { branch: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,255}$' } } },
    responses: { 200: { description: 'key file', contentType: 'application/vnd.flatpak.ref', schema: { type: 'string' } } },
    async handler(c) {
      const { ctx, repo, res, params, query } = c;
      const config = await flatpakConfig(repo);
      const refs = await repo.listRefs();
      const picked = pickRef(refs.keys(), params.id, query.branch, config.defaultBranch);
      const keys = (await ctx.publicKeysFor?.(repo)) ?? {};
      const url = repoUrl(c);
      const body = flatpakRefFile({
        url,
        name: repo.name,
        config,
        gpgArmored: keys.gpgArmored,
        id: params.id,
        branch: picked.branch,
        runtime: picked.runtime,
        runtimeRepo: picked.runtime ? undefined : url.replace(/\/$/, '') + '.flatpakrepo',
      });
      return send(c, 'application/vnd.flatpak.ref', body, res);
    },
  }),
];

async function flatpakConfig(repo: Repo) {
  const config = await repo.readConfig();
  if (!(await isFlatpakRepo(repo, config))) throw new CairnError('NOT_FOUND', `${repo.name} is not a flatpak repository`);
  return readRemoteConfig(config);
}

/** http(s)://HOST/repo/NAME/ as the client reached it (a Host that is not a plain host[:port] is refused). */
function repoUrl({ req, repo }: Call<unknown, unknown, unknown>): string {
  const host = req.headers.host ?? '';
  if (!/^[A-Za-z0-9.-]{1,253}(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](?::\d{1,5})?$/.test(host)) throw new CairnError('INVALID_ARGUMENT', 'the Host header is not a host name');
  return `${req.protocol}://${host}/repo/${repo.name}/`;
}

function send(c: Call<unknown, unknown, unknown>, type: string, body: string, res: Call<unknown, unknown, unknown>['res']): undefined {
  res.setHeader('Content-Type', type);
  res.setHeader('Cache-Control', res.locals.privateRepo === true ? 'private, no-cache' : 'no-cache');
  res.send(body);
  void c;
  return undefined;
}
