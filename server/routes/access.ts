import type { Request, Response } from 'express';
import { CairnError } from '../../storage/errors';
import { requireAccess } from '../auth/middleware';
import type { ServerContext } from '../context';

/**
 * Public repositories are readable by anyone; private ones need a `read` token
 * for that repo (a 401 says how with WWW-Authenticate: the stock ostree client
 * sends the token of `http://x:TOKEN@host/…` remotes as Basic). Settings that
 * cannot be read fail closed: an internal error, never a public answer.
 */
export async function requireRepoRead(ctx: ServerContext, req: Request, res: Response, repo: string): Promise<void> {
  let settings;
  try {
    settings = await ctx.settings.get(repo);
  } catch (e) {
    throw new CairnError('IO', `settings of ${repo} cannot be read: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!settings.private) return;
  res.locals.privateRepo = true;
  try {
    await requireAccess(ctx.auth, req, res, { scope: 'read', repo });
  } catch (e) {
    if (e instanceof CairnError && e.code === 'UNAUTHORIZED') res.setHeader('WWW-Authenticate', 'Basic realm="cairn", charset="UTF-8"');
    throw e;
  }
}
