import { randomBytes, randomUUID } from 'node:crypto';
import type { Backend } from '../../storage/backends/backend';
import { stateStore } from '../../storage/backends/factory';
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import { CairnError } from '../../storage/errors';

/**
 * Publish and read tokens: JWT (HS256) with the claims below. Scopes nest:
 * `admin` ⊃ `push` ⊃ `read`, each limited to `repos` (names or `*`); `push`
 * may only move refs under `prefixes` (`*` or '' for any).
 */
export type Scope = 'read' | 'push' | 'admin';
export const SCOPES: readonly Scope[] = ['read', 'push', 'admin'];

export interface TokenClaims {
  sub: string;
  scope: Scope[];
  repos: string[];
  prefixes: string[];
  exp: number;
  iat: number;
  jti: string;
}

export interface IssueOptions {
  sub: string;
  scope: Scope[];
  repos: string[];
  prefixes?: string[];
  ttlSeconds: number;
}

const ISSUER = 'cairn';

/**
 * A token id is what revocation names (`POST /api/tokens/revoke`) and what the
 * revocation list stores: only ids of 1-128 characters of [A-Za-z0-9_-] can be
 * written, matched and revoked, so tokens with any other id are refused.
 */
const JTI = /^[A-Za-z0-9_-]{1,128}$/;

export function isValidJti(jti: unknown): jti is string {
  return typeof jti === 'string' && JTI.test(jti);
}
const MIN_SECRET_BYTES = 32;

/**
 * The HMAC secret: CAIRN_TOKEN_SECRET when set, else `secrets/token-secret`
 * of the data location's state store (DATA/secrets/token-secret, mode 0600),
 * generated on first use (write-once create, so two processes starting
 * together agree on one secret).
 */
export async function loadTokenSecret(dataDir: string | undefined, env = process.env): Promise<Uint8Array> {
  const fromEnv = env.CAIRN_TOKEN_SECRET;
  if (fromEnv) {
    if (Buffer.byteLength(fromEnv) < MIN_SECRET_BYTES) throw new CairnError('INVALID_ARGUMENT', `CAIRN_TOKEN_SECRET must be at least ${MIN_SECRET_BYTES} bytes`);
    return Buffer.from(fromEnv, 'utf8');
  }
  if (!dataDir) throw new CairnError('INVALID_ARGUMENT', 'no token secret: set CAIRN_TOKEN_SECRET or give the data folder');
  const store = stateStore(dataDir);
  const existing = await readSecret(store);
  if (existing) return existing;
  // Write-once: of two processes starting together, one creates it and both use it.
  await store.create(SECRET_KEY, Buffer.from(randomBytes(48).toString('base64') + '\n'));
  const secret = await readSecret(store);
  if (!secret) throw new CairnError('IO', `${SECRET_KEY} vanished right after it was created`);
  return secret;
}

/** The key of the generated token secret in the state store (DATA/secrets/token-secret, mode 0600). */
const SECRET_KEY = 'secrets/token-secret';

async function readSecret(store: Backend): Promise<Uint8Array | null> {
  const got = await store.read(SECRET_KEY);
  if (!got) return null;
  const text = got.data.toString('utf8').trim();
  if (text.length < MIN_SECRET_BYTES) throw new CairnError('INVALID_ARGUMENT', `${SECRET_KEY} holds too short a secret`);
  return Buffer.from(text, 'utf8');
}

export async function issueToken(secret: Uint8Array, o: IssueOptions): Promise<{ token: string; claims: TokenClaims }> {
  if (!o.sub) throw new CairnError('INVALID_ARGUMENT', 'a token needs a subject');
  if (o.scope.length === 0 || o.scope.some((s) => !SCOPES.includes(s))) throw new CairnError('INVALID_ARGUMENT', `scopes are ${SCOPES.join(', ')}`);
  if (o.repos.length === 0) throw new CairnError('INVALID_ARGUMENT', 'a token needs at least one repo (or *)');
  if (!(o.ttlSeconds > 0)) throw new CairnError('INVALID_ARGUMENT', 'a token needs a positive lifetime');
  const iat = Math.floor(Date.now() / 1000);
  const claims: TokenClaims = { sub: o.sub, scope: o.scope, repos: o.repos, prefixes: o.prefixes ?? ['*'], iat, exp: iat + Math.floor(o.ttlSeconds), jti: randomUUID() };
  if (!isValidJti(claims.jti)) throw new CairnError('INVALID_ARGUMENT', 'refusing to issue a token whose id cannot be revoked');
  const token = await new SignJWT({ scope: claims.scope.join(' '), repos: claims.repos, prefixes: claims.prefixes })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(ISSUER)
    .setSubject(claims.sub)
    .setIssuedAt(iat)
    .setExpirationTime(claims.exp)
    .setJti(claims.jti)
    .sign(secret);
  return { token, claims };
}

/** Verifies signature, algorithm (HS256 only), issuer and expiry; UNAUTHORIZED otherwise. */
export async function verifyToken(secret: Uint8Array, token: string): Promise<TokenClaims> {
  try {
    const { payload } = await jwtVerify(token, secret, { algorithms: ['HS256'], issuer: ISSUER, requiredClaims: ['sub', 'exp', 'jti'] });
    // A token that could not be revoked is not accepted (see JTI).
    if (!isValidJti(payload.jti)) throw new CairnError('UNAUTHORIZED', 'invalid token: unusable token id');
    const scope = typeof payload.scope === 'string' ? payload.scope.split(' ') : Array.isArray(payload.scope) ? payload.scope : [];
    const strings = (v: unknown) => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : []);
    return {
      sub: payload.sub!,
      scope: scope.filter((s): s is Scope => SCOPES.includes(s as Scope)),
      repos: strings(payload.repos),
      prefixes: strings(payload.prefixes),
      exp: payload.exp!,
      iat: payload.iat ?? 0,
      jti: payload.jti!,
    };
  } catch (e) {
    if (e instanceof CairnError) throw e;
    const why = e instanceof joseErrors.JWTExpired ? 'token expired' : e instanceof joseErrors.JOSEError ? 'invalid token' : 'invalid token';
    throw new CairnError('UNAUTHORIZED', why);
  }
}

const RANK: Record<Scope, number> = { read: 1, push: 2, admin: 3 };

/** Whether the claims grant `scope` on `repo` (and, for ref moves, on `ref`). */
export function allows(claims: TokenClaims, need: { scope: Scope; repo?: string; ref?: string }): boolean {
  const rank = Math.max(0, ...claims.scope.map((s) => RANK[s]));
  if (rank < RANK[need.scope]) return false;
  if (need.repo !== undefined && !claims.repos.includes('*') && !claims.repos.includes(need.repo)) return false;
  if (need.ref !== undefined && rank < RANK.admin) {
    if (!claims.prefixes.some((p) => p === '*' || p === '' || need.ref!.startsWith(p))) return false;
  }
  return true;
}

/** Parses `--ttl` values like 3600, 90m, 24h, 30d. */
export function parseTtl(s: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(s.trim());
  if (!m) throw new CairnError('INVALID_ARGUMENT', `invalid ttl "${s}": use e.g. 3600, 90m, 24h or 30d`);
  const mult = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * mult;
}
