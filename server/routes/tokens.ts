import express, { Router } from 'express';
import { CairnError } from '../../storage/errors';
import { requireAccess } from '../auth/middleware';
import type { ServerContext } from '../context';

/** Token revocation (admin): a revoked jti is refused on the next request. */
export function tokenRoutes(ctx: ServerContext): Router {
  const router = Router({ strict: true, caseSensitive: true });

  router.post('/api/tokens/revoke', express.json({ limit: '16kb' }), async (req, res) => {
    res.locals.route = 'api_tokens_revoke';
    const admin = await requireAccess(ctx.auth, req, res, { scope: 'admin' });
    const body = req.body as { jti?: unknown; reason?: unknown };
    if (typeof body?.jti !== 'string') throw new CairnError('INVALID_ARGUMENT', 'body must be {"jti": "…", "reason"?: "…"}');
    await ctx.auth.revocations.revoke(body.jti, { by: admin.sub, reason: typeof body.reason === 'string' ? body.reason.slice(0, 500) : undefined });
    res.json({ revoked: body.jti });
  });

  router.get('/api/tokens/revoked', async (req, res) => {
    res.locals.route = 'api_tokens_revoked';
    await requireAccess(ctx.auth, req, res, { scope: 'admin' });
    res.json({ revoked: await ctx.auth.revocations.list() });
  });

  return router;
}
