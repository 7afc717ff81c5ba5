import express, { Router } from 'express';
import { CairnError } from '../../storage/errors';
import { updateRefs, type RefUpdate } from '../../storage/repo/publish';
import { DEFAULT_REFLOG_LIMIT, MAX_REFLOG_LIMIT, readRefLogPage } from '../../storage/repo/reflog';
import { claimsOf, requireAccess } from '../auth/middleware';
import { allows } from '../auth/tokens';
import { repoParam, requireOwned, type ServerContext } from '../context';
import { requireRepoRead } from './access';

/** Refs: list, move atomically with compare-and-swap, and their history. */
export function refRoutes(ctx: ServerContext): Router {
  const router = Router({ strict: true, caseSensitive: true });

  router.get('/api/repos/:repo/refs', async (req, res) => {
    res.locals.route = 'api_refs';
    const repo = await repoParam(ctx, req);
    await requireRepoRead(ctx, req, res, repo.name);
    res.setHeader('Cache-Control', 'no-store');
    res.json({ refs: Object.fromEntries(await repo.listRefs()) });
  });

  router.post('/api/repos/:repo/refs', express.json({ limit: '1mb' }), async (req, res) => {
    res.locals.route = 'api_refs_update';
    const repo = await repoParam(ctx, req);
    const body = req.body as { updates?: unknown; force?: unknown };
    const updates = parseUpdates(body?.updates);
    // Every ref must be within the token's prefixes before anything is looked at.
    const claims = await requireAccess(ctx.auth, req, res, { scope: 'push', repo: repo.name });
    for (const u of updates) await requireAccess(ctx.auth, req, res, { scope: 'push', repo: repo.name, ref: u.ref });
    requireOwned(ctx, repo); // 403 NOT_OWNED (after auth: strangers get 401/403 without learning more)
    const changes = await updateRefs(repo, updates, {
      actor: claims.sub,
      force: body?.force === true,
      signer: await ctx.signerFor(repo),
      onPublished: (c) => ctx.onPublished?.(repo, c),
    });
    res.json({ changes });
  });

  router.get('/api/repos/:repo/reflog', async (req, res) => {
    res.locals.route = 'api_reflog';
    const repo = await repoParam(ctx, req);
    await requireRepoRead(ctx, req, res, repo.name);
    const ref = typeof req.query.ref === 'string' ? req.query.ref : undefined;
    const limit = Math.min(MAX_REFLOG_LIMIT, Math.max(1, Number(req.query.limit ?? DEFAULT_REFLOG_LIMIT) || DEFAULT_REFLOG_LIMIT));
    const before = req.query.before;
    if (before !== undefined && (typeof before !== 'string' || before.length === 0 || before.length > 200)) throw new CairnError('INVALID_ARGUMENT', 'before must be the "next" of a previous page');
    // Who moved a ref (a token subject) is for publishers and admins of this repository only.
    const claims = await claimsOf(ctx.auth, req, res);
    const showActor = claims !== null && allows(claims, { scope: 'push', repo: repo.name });
    const page = await readRefLogPage(repo, { ref, limit, before });
    res.setHeader('Cache-Control', 'no-store');
    res.json({ entries: showActor ? page.entries : page.entries.map(({ actor: _actor, ...e }) => e), next: page.next });
  });

  return router;
}

function parseUpdates(raw: unknown): RefUpdate[] {
  if (!Array.isArray(raw) || raw.length === 0) throw new CairnError('INVALID_ARGUMENT', 'body must be {"updates": [{"ref", "commit", "expected"?}, …]}');
  if (raw.length > 1000) throw new CairnError('TOO_LARGE', 'at most 1000 ref updates at once');
  return raw.map((u, i) => {
    const o = u as Record<string, unknown>;
    const isCsumOrNull = (v: unknown) => v === null || typeof v === 'string';
    if (typeof o?.ref !== 'string') throw new CairnError('INVALID_ARGUMENT', `updates[${i}].ref must be a string`);
    if (!isCsumOrNull(o.commit)) throw new CairnError('INVALID_ARGUMENT', `updates[${i}].commit must be a checksum or null`);
    if (o.expected !== undefined && !isCsumOrNull(o.expected)) throw new CairnError('INVALID_ARGUMENT', `updates[${i}].expected must be a checksum, null, or absent`);
    return { ref: o.ref, commit: o.commit as string | null, expected: o.expected as string | null | undefined };
  });
}
