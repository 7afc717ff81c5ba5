import type { Request, Response } from 'express';
import type { RepoRegistry } from '../../storage/repo/registry';
import type { Repo } from '../../storage/repo/repo';
import type { Scope, TokenClaims } from '../auth/tokens';
import type { ServerContext } from '../context';
import type { Logger } from '../logging';
import type { Metrics } from '../metrics';
import type { Schema } from './schema';

/**
 * What a route of the table is (see server/api/routes.ts for the table and
 * how to add an entry). From these entries server/api/router.ts builds the
 * express routes — metric label, auth preamble, request validation — and
 * server/api/openapi.ts the OpenAPI document.
 */

export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

/**
 * Who may call a route; the preamble runs in this order, the same for every route:
 *   1. `repo`: the repository named by `:repo` exists (404 NOT_FOUND), and if it is private the
 *      caller may read it (else the same 404, byte for byte: see requireRepoRead);
 *   2. credentials: 401 UNAUTHORIZED (none, bad, expired, revoked), 403 FORBIDDEN (not enough);
 *   3. params, query and body validated (400 INVALID_ARGUMENT; 413 TOO_LARGE for too many items);
 *   4. `refs`: every ref the request moves is within the token's prefixes (403 FORBIDDEN);
 *   5. `owned`: Cairn owns the repository (403 NOT_OWNED);
 *   6. the handler.
 */
export type Access =
  /** Anyone; the handler may look at the caller's claims (a bad token is still a 401). */
  | { public: true }
  /** A token with this scope, for any repository (`admin`: tokens, creating repositories). */
  | { scope: Scope }
  /**
   * The repository of `:repo`. `read`: public repositories are readable by
   * anyone, private ones need a read token for them; without one the caller
   * is told what a repository that does not exist tells (404). Settings that
   * cannot be read fail closed (500). `push`/`admin`: a token of that scope
   * for the repository (401/403; for a private repository a caller who may
   * not read it gets the 404 first).
   */
  | { repo: Scope; owned?: boolean; refs?: (body: never) => readonly string[] };

/** Where a route is available. */
export interface ApiEnv {
  registry: RepoRegistry;
  logger: Logger;
  metrics?: Metrics;
  /** Publishing API, auth, settings; routes need it unless they say `needs: 'none'`. */
  ctx?: ServerContext;
}

/** An answer other than 200 JSON. */
export interface Reply<R = unknown> {
  status: number;
  body?: R;
  headers?: Record<string, string>;
}

/** What a handler gets: validated input and the request's context. */
export interface Call<P, Q, B> {
  req: Request;
  res: Response;
  env: ApiEnv;
  /** The server context (present: routes without `needs: 'none'` exist only with one). */
  ctx: ServerContext;
  params: P;
  query: Q;
  body: B;
  /** The repository of `:repo` (routes with `access.repo` only). */
  repo: Repo;
  /** The caller's verified claims, or null without credentials (memoized; a bad token throws UNAUTHORIZED). */
  claims(): Promise<TokenClaims | null>;
  /** Whether the caller's token allows `need` (false without one). */
  may(need: { scope: Scope; repo?: string; ref?: string }): Promise<boolean>;
}

/** How the request body is read. */
export type BodyKind =
  /** JSON validated by `schema`, read up to `limit` (express.json's units: '16kb', '1mb'). */
  | { json: Schema; limit: string }
  /** Read by the handler as a stream (uploads); `openapi` documents it. */
  | { stream: Record<string, { schema: Schema }> };

export interface ResponseDoc {
  description: string;
  schema?: Schema;
  /** Defaults to application/json. */
  contentType?: string;
}

export interface RouteDef<P = Record<string, string>, Q = Record<string, unknown>, B = undefined> {
  method: Method;
  /** An express path: `/api/repos/:repo/refs`. */
  path: string;
  /** The metric label (`cairn_http_requests_total{route=…}`): bounded, stable. */
  label: string;
  summary: string;
  description?: string;
  access: Access;
  /** Path parameters other than `:repo` (which `access.repo` covers), as one object schema. */
  params?: Schema;
  /** Query parameters, as one object schema (values are coerced from strings: integers, booleans). */
  query?: Schema;
  body?: BodyKind;
  /** Documented answers by status; errors that the access, params, query and body imply are added. */
  responses: Record<number, ResponseDoc>;
  /** Other error statuses the handler may answer (409, 422, 501, 503…). */
  errors?: number[];
  /** 'none': served without a server context too (health, metrics); 'metrics': only with metrics. Default: the context. */
  needs?: 'none' | 'metrics';
  /** Default `Cache-Control` of the answer ('no-store' unless set). */
  cacheControl?: string;
  /** The answer: a value sent as JSON 200, a Reply, or undefined when the handler wrote the response itself. */
  handler(call: Call<P, Q, B>): Promise<unknown> | unknown;
}

/** A route of any input types, as the table holds them. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyRoute = RouteDef<any, any, any>;

/** Declares a route with its input types (identity: the types document what the schemas check). */
export function route<P = Record<string, string>, Q = Record<string, unknown>, B = undefined>(def: RouteDef<P, Q, B>): AnyRoute {
  return def as AnyRoute;
}

/** A reply with a status other than 200 (and optional headers). */
export function reply<R>(status: number, body?: R, headers?: Record<string, string>): Reply<R> {
  return new ReplyValue(status, body, headers);
}

export class ReplyValue<R> implements Reply<R> {
  constructor(
    readonly status: number,
    readonly body?: R,
    readonly headers?: Record<string, string>,
  ) {}
}
