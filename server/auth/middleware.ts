import type { Request, RequestHandler, Response } from 'express';
import { CairnError } from '../../storage/errors';
import { allows, verifyToken, type Scope, type TokenClaims } from './tokens';
import type { RevocationList } from './revocations';

export interface Authenticator {
  secret: Uint8Array;
  revocations: RevocationList;
}

/**
 * Reads credentials from `Authorization`: `Bearer <jwt>` for API clients, or
 * `Basic` with the token as password (any user name) — the form the stock
 * ostree client sends for `http://user:TOKEN@host/repo/NAME` remotes.
 * Returns null when the request carries none; throws UNAUTHORIZED when it
 * carries bad, expired or revoked ones.
 */
export async function authenticate(auth: Authenticator, req: Request): Promise<TokenClaims | null> {
  const header = req.headers.authorization;
  return header ? authenticateHeader(auth, header) : null;
}

/** `authenticate` from the value of an `Authorization` header. */
export async function authenticateHeader(auth: Authenticator, header: string): Promise<TokenClaims> {
  const [kind, value = ''] = header.split(' ', 2);
  let token: string;
  if (kind?.toLowerCase() === 'bearer') token = value.trim();
  else if (kind?.toLowerCase() === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    token = decoded.slice(decoded.indexOf(':') + 1);
  } else throw new CairnError('UNAUTHORIZED', 'unsupported authorization scheme; use Bearer');
  if (!token) throw new CairnError('UNAUTHORIZED', 'empty token');
  const claims = await verifyToken(auth.secret, token);
  if (await auth.revocations.isRevoked(claims.jti)) throw new CairnError('UNAUTHORIZED', 'token revoked');
  return claims;
}

/** The verified claims of this request, memoized on res.locals. */
export async function claimsOf(auth: Authenticator, req: Request, res: Response): Promise<TokenClaims | null> {
  if (res.locals.claims === undefined) res.locals.claims = await authenticate(auth, req);
  return res.locals.claims as TokenClaims | null;
}

/** Throws UNAUTHORIZED (no credentials) or FORBIDDEN (not enough) unless the request may do `need`. */
export async function requireAccess(auth: Authenticator, req: Request, res: Response, need: { scope: Scope; repo?: string; ref?: string }): Promise<TokenClaims> {
  const claims = await claimsOf(auth, req, res);
  if (!claims) throw new CairnError('UNAUTHORIZED', `a token with ${need.scope} scope is required`);
  if (!allows(claims, need)) {
    const what = need.ref ? `move ${need.ref} in ${need.repo}` : need.repo ? `${need.scope} ${need.repo}` : need.scope;
    throw new CairnError('FORBIDDEN', `token of ${claims.sub} may not ${what}`, need.ref ? { ref: need.ref } : undefined);
  }
  return claims;
}

/** Middleware form for routes with a `:repo` parameter. */
export function requireScope(auth: Authenticator, scope: Scope): RequestHandler {
  return async (req, res, next) => {
    await requireAccess(auth, req, res, { scope, repo: req.params.repo as string | undefined });
    next();
  };
}
