import { COMPONENTS, repoName, ref, type Schema } from './schema';
import type { AnyRoute } from './route';

/**
 * The OpenAPI 3.1 document of a route table (served at /api/openapi.json):
 * paths from the entries' express paths, parameters from their params and
 * query schemas, request bodies and answers from their body and response
 * schemas, security and error answers from their access.
 */
export function buildOpenApi(routes: readonly AnyRoute[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const ids = new Set<string>();
  for (const r of routes) {
    const p = r.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const op = operation(r);
    // The label, unless another operation has it (GET and PATCH of one resource, two key files): then with method and last segment.
    let id = op.operationId as string;
    if (ids.has(id)) id = `${r.label}_${r.method}_${r.path.slice(r.path.lastIndexOf('/') + 1).replace(/[^A-Za-z0-9]+/g, '_')}`;
    ids.add(id);
    op.operationId = id;
    (paths[p] ??= {})[r.method] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Cairn API',
      version: '1',
      description:
        'Publishing to and administering Cairn, an OSTree repository server. OSTree clients do not use this API: they GET /repo/{repo}/… (the archive layout). Authenticate with `Authorization: Bearer <token>` (tokens from `cairn token`). Scopes nest: admin ⊃ push ⊃ read. Every error answers `{"error": {"code", "message", "details"?}}`; every answer carries an `X-Request-Id` (the client\'s own if it sent a sane one: up to 64 of [A-Za-z0-9._-]).',
    },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } }, schemas: COMPONENTS },
    security: [{ bearer: [] }],
    paths,
  };
}

function operation(r: AnyRoute): Record<string, unknown> {
  const access = r.access;
  const parameters: Record<string, unknown>[] = [];
  const errors = new Set<number>(r.errors ?? []);
  if (r.path.includes(':repo')) parameters.push({ name: 'repo', in: 'path', required: true, schema: repoName });
  for (const [name, schema] of properties(r.params)) parameters.push({ name, in: 'path', required: true, schema: withoutDescription(schema), ...describe(schema) });
  for (const [name, schema, required] of properties(r.query)) parameters.push({ name, in: 'query', required, schema: withoutDescription(schema), ...describe(schema) });
  if (r.params || r.query || r.body) errors.add(400);
  if ('repo' in access) errors.add(404).add(401).add(403);
  else if ('scope' in access) errors.add(401).add(403);
  if (r.body && 'json' in r.body) errors.add(413);
  const op: Record<string, unknown> = { operationId: r.label, summary: r.summary };
  if (r.description) op.description = r.description;
  // Public routes (and readable repositories) need no token; private repositories do.
  if ('public' in access) op.security = [];
  else if ('repo' in access && access.repo === 'read') op.security = [{}, { bearer: [] }];
  if (parameters.length > 0) op.parameters = parameters;
  if (r.body) {
    op.requestBody = 'json' in r.body ? { required: true, content: { 'application/json': { schema: r.body.json } } } : { required: true, content: r.body.stream };
  }
  const responses: Record<string, unknown> = {};
  for (const [status, doc] of Object.entries(r.responses)) {
    responses[status] = { description: doc.description, ...(doc.schema ? { content: { [doc.contentType ?? 'application/json']: { schema: doc.schema } } } : {}) };
  }
  for (const status of [...errors].sort()) {
    responses[String(status)] ??= { description: ERROR_DESCRIPTIONS[status] ?? 'error', content: { 'application/json': { schema: ref('Error') } } };
  }
  op.responses = responses;
  return op;
}

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'invalid request (INVALID_ARGUMENT, or a storage code: INVALID_REF, INVALID_OBJECT, …)',
  401: 'no, bad, expired or revoked credentials (UNAUTHORIZED)',
  403: 'the token does not allow it (FORBIDDEN), or Cairn does not own the repository (NOT_OWNED)',
  404: 'no such repository or thing (NOT_FOUND)',
  409: 'conflict (CONFLICT, ALREADY_EXISTS)',
  413: 'too large (TOO_LARGE)',
  422: 'incomplete (MISSING_OBJECTS)',
  501: 'not supported here (UNSUPPORTED)',
  503: 'busy or not ready; retry later',
};

function properties(s: Schema | undefined): Array<[string, Schema, boolean]> {
  if (!s) return [];
  const props = (s.properties ?? {}) as Record<string, Schema>;
  const required = new Set((s.required ?? []) as string[]);
  return Object.entries(props).map(([k, v]) => [k, v, required.has(k)]);
}

function describe(s: Schema): { description?: string } {
  return typeof s.description === 'string' ? { description: s.description } : {};
}

function withoutDescription(s: Schema): Schema {
  const { description: _d, ...rest } = s;
  return rest;
}
