import type { Request, RequestHandler, Response } from 'express';
import { CairnError } from '../../storage/errors';
import { requireAccess } from '../auth/middleware';
import type { ServerContext } from '../context';

/** Public repositories are readable by anyone; private ones need a `read` token for that repo. */
export async function requireRepoRead(ctx: ServerContext, req: Request, res: Response, repo: string): Promise<void> {
  const settings = await ctx.settings.get(repo);
  if (!settings.private) return;
  await requireAccess(ctx.auth, req, res, { scope: 'read', repo });
}

/**
 * Guards `/repo/:repo/…` of private repositories. The stock ostree client
 * authenticates with credentials in the remote URL (`http://x:TOKEN@host/…`),
 * which curl sends as Basic; a 401 says so with WWW-Authenticate.
 */
export function privateRepoGuard(ctx: ServerContext): RequestHandler {
  return async (req, res, next) => {
    let settings;
    try {
      settings = await ctx.settings.get(String(req.params.repo));
    } catch {
      return next(); // not a valid name: the file route answers 400/404
    }
    if (!settings.private) return next();
    res.locals.privateRepo = true;
    try {
      await requireAccess(ctx.auth, req, res, { scope: 'read', repo: String(req.params.repo) });
    } catch (e) {
      if (e instanceof CairnError && e.code === 'UNAUTHORIZED') res.setHeader('WWW-Authenticate', 'Basic realm="cairn", charset="UTF-8"');
      throw e;
    }
    next();
  };
}
