import { Router } from 'express';
import { CairnError } from '../../storage/errors';
import { repoParam, type ServerContext } from '../context';
import { requireRepoRead } from './access';

/**
 * Public keys of a repository, for `ostree remote add --gpg-import=gpg.asc`
 * and `verification-ed25519-key=`. Served beside the repository files.
 */
export function keyRoutes(ctx: ServerContext): Router {
  const router = Router({ strict: true, caseSensitive: true });

  router.get('/repo/:repo/keys/:file', async (req, res) => {
    res.locals.route = 'repo_keys';
    const repo = await repoParam(ctx, req);
    await requireRepoRead(ctx, req, res, repo.name);
    const keys = (await ctx.publicKeysFor?.(repo)) ?? {};
    const file = String(req.params.file);
    const body = file === 'gpg.asc' ? keys.gpgArmored : file === 'ed25519.pub' ? (keys.ed25519Base64 ? keys.ed25519Base64 + '\n' : undefined) : undefined;
    if (body === undefined) throw new CairnError('NOT_FOUND', `no key ${file.slice(0, 40)} for ${repo.name}`);
    res.setHeader('Content-Type', file.endsWith('.asc') ? 'application/pgp-keys' : 'text/plain; charset=utf-8');
    // A private repository's keys must never sit in a shared cache.
    res.setHeader('Cache-Control', res.locals.privateRepo === true ? 'private, max-age=300' : 'public, max-age=300');
    res.send(body);
  });

  return router;
}
