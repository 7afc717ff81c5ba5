import express, { Router } from 'express';
import { CairnError } from '../../storage/errors';
import { requireAccess, claimsOf } from '../auth/middleware';
import { allows } from '../auth/tokens';
import { adoptRepo, repoParam, type ServerContext } from '../context';
import { requireRepoRead } from './access';

/**
 * Repositories: list, create (admin; owned by Cairn from birth), settings
 * (admin). `owned` can be set to true through PATCH settings (adoption: Cairn
 * publishes into the repository from then on, and regenerates and signs its
 * summary once), never back to false: giving a repository back is an
 * operator's edit of DATA/settings/NAME.json, with the server's summary,
 * signatures and deltas to deal with by hand.
 */
export function repoRoutes(ctx: ServerContext): Router {
  const router = Router({ strict: true, caseSensitive: true });

  router.get('/api/repos', async (req, res) => {
    res.locals.route = 'api_repos';
    const claims = await claimsOf(ctx.auth, req, res);
    const out = [];
    for (const name of await ctx.registry.list()) {
      const settings = await ctx.settings.get(name);
      // Private repositories are listed only to those who may read them.
      if (settings.private && !(claims && allows(claims, { scope: 'read', repo: name }))) continue;
      out.push({ name, private: settings.private, owned: settings.owned, url: `/repo/${name}/` });
    }
    res.setHeader('Cache-Control', 'no-store');
    res.json({ repos: out });
  });

  router.post('/api/repos', express.json({ limit: '64kb' }), async (req, res) => {
    res.locals.route = 'api_repos_create';
    await requireAccess(ctx.auth, req, res, { scope: 'admin' });
    const body = req.body as { name?: unknown; collectionId?: unknown; private?: unknown };
    if (typeof body?.name !== 'string') throw new CairnError('INVALID_ARGUMENT', 'body must be {"name": "…"}');
    if (body.collectionId !== undefined && typeof body.collectionId !== 'string') throw new CairnError('INVALID_ARGUMENT', 'collectionId must be a string');
    const repo = await ctx.registry.create(body.name, { collectionId: body.collectionId as string | undefined });
    if (body.private === true) await ctx.settings.update(repo.name, { private: true });
    await ctx.signerFor(repo); // generate the keys now, so they can be fetched before the first publish
    res.status(201).json({ name: repo.name, url: `/repo/${repo.name}/` });
  });

  router.get('/api/repos/:repo/settings', async (req, res) => {
    res.locals.route = 'api_repo_settings';
    const repo = await repoParam(ctx, req);
    await requireRepoRead(ctx, req, res, repo.name);
    res.json(await ctx.settings.get(repo.name));
  });

  router.patch('/api/repos/:repo/settings', express.json({ limit: '64kb' }), async (req, res) => {
    res.locals.route = 'api_repo_settings';
    const repo = await repoParam(ctx, req);
    await requireAccess(ctx.auth, req, res, { scope: 'admin', repo: repo.name });
    const body = req.body as Record<string, unknown>;
    if (typeof body !== 'object' || body === null) throw new CairnError('INVALID_ARGUMENT', 'body must be a JSON object');
    const patch = { ...body } as Parameters<typeof ctx.settings.update>[1];
    const wasOwned = ctx.settings.owned(repo.name);
    if (patch.owned !== undefined) {
      if (typeof patch.owned !== 'boolean') throw new CairnError('INVALID_ARGUMENT', 'owned must be true or false');
      if (wasOwned && !patch.owned) {
        throw new CairnError('INVALID_ARGUMENT', `owned cannot be set back to false through the API; edit DATA/settings/${repo.name}.json on the server to give ${repo.name} back`);
      }
      delete patch.owned; // adoption below, once the other settings are valid and stored
    }
    const adopt = body.owned === true && !wasOwned;
    let next = await ctx.settings.update(repo.name, patch);
    if (adopt) {
      await adoptRepo(ctx, repo);
      next = await ctx.settings.get(repo.name);
    }
    res.json(next);
  });

  return router;
}
