import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import express, { Router, type Request, type Response } from 'express';
import { CairnError } from '../../storage/errors';
import type { Repo } from '../../storage/repo/repo';
import { claimsOf, requireAccess } from '../auth/middleware';
import { allows } from '../auth/tokens';
import { repoParam, requireOwned, type ServerContext } from '../context';
import { noSuchRepository } from '../errors';
import { ReplyValue, type AnyRoute, type ApiEnv, type Call } from './route';
import type { Schema } from './schema';

/**
 * Builds the express routes of a route table (server/api/routes.ts): for each
 * entry, one handler that names the route for metrics and logs, runs the auth
 * preamble its `access` asks for, validates params, query and body with their
 * JSON Schemas, and sends what the entry's handler returns. The order of the
 * preamble is documented on `Access` (server/api/route.ts).
 */
export function buildApiRouter(env: ApiEnv, routes: readonly AnyRoute[]): Router {
  const router = Router({ strict: true, caseSensitive: true });
  for (const r of routes) {
    if (!isAvailable(r, env)) continue;
    const v = validatorsOf(r);
    router[r.method](r.path, async (req: Request, res: Response) => {
      res.locals.route = r.label;
      const ctx = env.ctx as ServerContext;
      const access = r.access;
      let repo: Repo | undefined;
      if ('repo' in access) {
        repo = await repoParam(ctx, req);
        await requireRepoRead(ctx, req, res, repo.name);
        if (access.repo !== 'read') await requireAccess(ctx.auth, req, res, { scope: access.repo, repo: repo.name });
      } else if ('scope' in access) {
        await requireAccess(ctx.auth, req, res, { scope: access.scope });
      }
      const { repo: _repo, ...pathParams } = req.params as Record<string, string>;
      const params = v.params ? check(v.params, pathParams, 'path') : pathParams;
      const query = v.query ? check(v.query, { ...(req.query as Record<string, unknown>) }, 'query') : {};
      let body: unknown;
      if (r.body && 'json' in r.body) {
        await readJson(req, res, r.body.limit);
        if (req.body === undefined) throw new CairnError('INVALID_ARGUMENT', 'the body must be JSON (Content-Type: application/json)');
        body = check(v.body!, req.body, 'body');
      }
      if ('repo' in access) {
        if (access.refs) for (const ref of access.refs(body as never)) await requireAccess(ctx.auth, req, res, { scope: access.repo, repo: repo!.name, ref });
        if (access.owned) requireOwned(ctx, repo!);
      }
      const call: Call<unknown, unknown, unknown> = {
        req,
        res,
        env,
        ctx,
        params,
        query,
        body,
        get repo(): Repo {
          if (!repo) throw new Error(`route ${r.label} has no repository`);
          return repo;
        },
        claims: () => (ctx?.auth ? claimsOf(ctx.auth, req, res) : Promise.resolve(null)),
        may: async (need) => {
          const claims = ctx?.auth ? await claimsOf(ctx.auth, req, res) : null;
          return claims !== null && allows(claims, need);
        },
      };
      const out = await r.handler(call);
      if (out === undefined || res.headersSent) return;
      if (!res.hasHeader('Cache-Control')) res.setHeader('Cache-Control', r.cacheControl ?? 'no-store');
      if (out instanceof ReplyValue) {
        for (const [k, val] of Object.entries(out.headers ?? {})) res.setHeader(k, val);
        res.status(out.status);
        if (out.body === undefined) res.end();
        else res.json(out.body);
        return;
      }
      res.json(out);
    });
  }
  return router;
}

export function isAvailable(r: AnyRoute, env: ApiEnv): boolean {
  if (r.needs === 'none') return true;
  if (r.needs === 'metrics') return env.metrics !== undefined;
  return env.ctx !== undefined;
}

/**
 * Public repositories are readable by anyone; a private one only with a token
 * allowing `read` of it (a push or admin token for it does). Any other caller —
 * no credentials, bad, expired or revoked ones, a token for other repositories
 * — gets exactly the 404 a repository that does not exist gets (GitHub's
 * rule: private names cannot be probed), on read and write routes alike.
 * Settings that cannot be read fail closed: an internal error, never a public
 * answer.
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
  let claims;
  try {
    claims = await claimsOf(ctx.auth, req, res);
  } catch (e) {
    if (e instanceof CairnError && e.code === 'UNAUTHORIZED') throw noSuchRepository(repo);
    throw e;
  }
  if (!claims || !allows(claims, { scope: 'read', repo })) throw noSuchRepository(repo);
}

/** Reads a JSON body of at most `limit` (body-parser: 400 BAD_REQUEST if malformed, 413 if larger). */
function readJson(req: Request, res: Response, limit: string): Promise<void> {
  let parser = jsonParsers.get(limit);
  if (!parser) jsonParsers.set(limit, (parser = express.json({ limit })));
  return new Promise((resolve, reject) => parser(req, res, (err?: unknown) => (err ? reject(err) : resolve())));
}
const jsonParsers = new Map<string, ReturnType<typeof express.json>>();

// ---- validation ----

/**
 * Query and path values arrive as strings: that instance coerces them to the
 * schema's types (`limit=5` → 5). Bodies are JSON and are taken as they are.
 * Both stop at the first error: the work is bounded by the schema (array and
 * string limits are checked before items are).
 */
const ajvStrings = new Ajv({ coerceTypes: true, useDefaults: true, allErrors: false, allowUnionTypes: true, strict: true });
const ajvJson = new Ajv({ coerceTypes: false, useDefaults: true, allErrors: false, allowUnionTypes: true, strict: true });

interface Validators {
  params?: ValidateFunction;
  query?: ValidateFunction;
  body?: ValidateFunction;
}

/** Compiled once per route of the table, whichever app uses it. */
const compiled = new WeakMap<AnyRoute, Validators>();

export function validatorsOf(r: AnyRoute): Validators {
  let v = compiled.get(r);
  if (!v) {
    const compile = (ajv: Ajv, s: Schema | undefined, what: string) => {
      if (!s) return undefined;
      try {
        return ajv.compile(s);
      } catch (e) {
        throw new Error(`route ${r.method.toUpperCase()} ${r.path}: ${what} schema: ${e instanceof Error ? e.message : String(e)}`);
      }
    };
    v = {
      params: compile(ajvStrings, r.params, 'params'),
      query: compile(ajvStrings, r.query, 'query'),
      body: r.body && 'json' in r.body ? compile(ajvJson, r.body.json, 'body') : undefined,
    };
    compiled.set(r, v);
  }
  return v;
}

/** `data` if it passes, else INVALID_ARGUMENT (TOO_LARGE for too many items) naming where and why. */
function check<T>(validate: ValidateFunction, data: T, where: 'path' | 'query' | 'body'): T {
  if (validate(data)) return data;
  const e = validate.errors?.[0];
  if (!e) throw new CairnError('INVALID_ARGUMENT', `invalid ${where}`);
  const code = e.keyword === 'maxItems' || e.keyword === 'maxProperties' ? 'TOO_LARGE' : 'INVALID_ARGUMENT';
  throw new CairnError(code, describe(e, where).slice(0, 500));
}

function describe(e: ErrorObject, where: string): string {
  const at = where + e.instancePath.split('/').slice(1).map((s) => (/^\d+$/.test(s) ? `[${s}]` : `.${s}`)).join('');
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties':
      return `${at}: unknown property "${String(p.additionalProperty).slice(0, 100)}"`;
    case 'required':
      return `${at}: missing property "${String(p.missingProperty)}"`;
    case 'enum':
      return `${at} must be one of ${(p.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(', ')}`;
    case 'maxItems':
      return `${at}: at most ${String(p.limit)} items`;
    default:
      return `${at} ${e.message ?? 'is invalid'}`;
  }
}
