/**
 * THE ROUTE TABLE: every route of Cairn's API (and of /healthz, /readyz,
 * /metrics and the key files) is one entry here. From it come the express
 * routes with their metric label, auth preamble and request validation
 * (server/api/router.ts), and /api/openapi.json (server/api/openapi.ts).
 * Repository files (GET/HEAD /repo/NAME/…, mounts) are not routes: they are
 * answered by server/files/answer.ts before express.
 *
 * To add a route, add one `route({...})` to the list of its resource
 * (server/api/<resource>.ts; a new resource: a new file whose list is spread
 * into ROUTES below), with:
 *   method, path       express path, `:repo` for a repository (`/api/repos/:repo/history`)
 *   label              the metric label, unique per method+path, snake_case (`api_history`)
 *   summary            one line for the OpenAPI document; `description` for more
 *   access             { public: true } | { scope: 'admin' } |
 *                      { repo: 'read' | 'push' | 'admin', owned?: true, refs?: (body) => refs moved }
 *                      (server/api/route.ts documents the order: 404, 401/403, 400, ref prefixes, NOT_OWNED)
 *   params, query      object schemas of the path parameters (besides :repo) and query
 *                      (values coerced from strings; bound every string and number)
 *   body               { json: schema, limit: '64kb' } or { stream: {contentType: {schema}} } read by the handler
 *   responses          { 200: { description, schema } }, plus `errors: [409, …]` the handler may answer
 *   handler            async ({ ctx, repo, params, query, body, claims, may, env, req, res }) =>
 *                      a JSON value (200), reply(status, body, headers), or undefined if it answered itself
 * Give the route's input types as type arguments (`route<Params, Query, Body>`), and put the
 * wire types the CLI needs in server/api/schema.ts next to their schemas. Throw CairnError for
 * errors (server/errors.ts maps them to HTTP). Order matters only for paths that overlap
 * (`/objects/missing` before `/objects/:name`): entries are matched in the order of ROUTES.
 */
import { healthRoutes } from './health';
import { jobRoutes } from './jobs';
import { keyRoutes } from './keys';
import { maintenanceRoutes } from './maintenance';
import { objectRoutes } from './objects';
import { buildOpenApi } from './openapi';
import { refRoutes } from './refs';
import { repoRoutes } from './repos';
import { route, type AnyRoute } from './route';
import { tokenRoutes } from './tokens';
import { browseRoutes } from './browse';
import { operatorRoutes } from './operator';
import { trafficRoutes } from './traffic';
import { uiRoutes } from './ui';
import { flatpakRoutes } from './flatpak';
import { webhookRoutes } from './webhooks';
import { scrubRoutes } from './scrub';

let openapi: Record<string, unknown> | undefined;

const openapiRoute = route({
  method: 'get',
  path: '/api/openapi.json',
  label: 'api_openapi',
  summary: 'This document (OpenAPI 3.1), generated from the route table',
  access: { public: true },
  responses: { 200: { description: 'the OpenAPI document', schema: { type: 'object' } } },
  handler: () => (openapi ??= buildOpenApi(ROUTES)),
});

export const ROUTES: readonly AnyRoute[] = [...healthRoutes, openapiRoute, ...repoRoutes, ...objectRoutes, ...refRoutes, ...tokenRoutes, ...keyRoutes, ...jobRoutes, ...uiRoutes, ...browseRoutes, ...operatorRoutes, ...trafficRoutes, ...maintenanceRoutes, ...flatpakRoutes, ...webhookRoutes, ...scrubRoutes];
