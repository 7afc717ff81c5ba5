import { route, type AnyRoute } from './route';
import type { RevokeBody } from './schema';

/** Token revocation (admin): a revoked jti is refused on the next request. */
export const tokenRoutes: AnyRoute[] = [
  route<Record<string, never>, Record<string, never>, RevokeBody>({
    method: 'post',
    path: '/api/tokens/revoke',
    label: 'api_tokens_revoke',
    summary: 'Revoke a token by jti (admin)',
    access: { scope: 'admin' },
    body: { limit: '16kb', json: { type: 'object', required: ['jti'], additionalProperties: false, properties: { jti: { type: 'string', minLength: 1, maxLength: 200 }, reason: { type: 'string', maxLength: 500 } } } },
    responses: { 200: { description: 'revoked', schema: { type: 'object', properties: { revoked: { type: 'string' } } } } },
    async handler({ ctx, body, claims }) {
      const admin = (await claims())!;
      await ctx.auth.revocations.revoke(body.jti, { by: admin.sub, reason: body.reason });
      return { revoked: body.jti };
    },
  }),
  route({
    method: 'get',
    path: '/api/tokens/revoked',
    label: 'api_tokens_revoked',
    summary: 'Revoked tokens (admin)',
    access: { scope: 'admin' },
    responses: { 200: { description: 'the revocation list', schema: { type: 'object', properties: { revoked: { type: 'array', items: { type: 'object' } } } } } },
    async handler({ ctx }) {
      return { revoked: await ctx.auth.revocations.list() };
    },
  }),
];
