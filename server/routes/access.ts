import type { Request, Response } from 'express';
import { requireAccess } from '../auth/middleware';
import type { ServerContext } from '../context';

/** Public repositories are readable by anyone; private ones need a `read` token for that repo. */
export async function requireRepoRead(ctx: ServerContext, req: Request, res: Response, repo: string): Promise<void> {
  const settings = await ctx.settings.get(repo);
  if (!settings.private) return;
  await requireAccess(ctx.auth, req, res, { scope: 'read', repo });
}
