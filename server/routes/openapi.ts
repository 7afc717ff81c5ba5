import { Router } from 'express';

const objectName = { type: 'string', pattern: '^[0-9a-f]{64}\\.(commit|dirtree|dirmeta|filez|commitmeta)$', description: '<checksum>.<type>; .filez bytes as stored in an archive repo' };
const checksum = { type: 'string', pattern: '^[0-9a-f]{64}$' };
const error = {
  type: 'object',
  properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' }, details: { type: 'object' } } } },
};
const errors = (...codes: number[]) => Object.fromEntries(codes.map((c) => [String(c), { description: 'error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }]));
const json = (schema: object) => ({ content: { 'application/json': { schema } } });
const repoParam = { name: 'repo', in: 'path', required: true, schema: { type: 'string' } };

/** The publishing and browsing API, as OpenAPI 3.1 (served at /api/openapi.json). */
export const OPENAPI = {
  openapi: '3.1.0',
  info: {
    title: 'Cairn API',
    version: '1',
    description:
      'Publishing to and administering Cairn, an OSTree repository server. OSTree clients do not use this API: they GET /repo/{repo}/… (the archive layout). Authenticate with `Authorization: Bearer <token>` (tokens from `cairn token`). Scopes nest: admin ⊃ push ⊃ read.',
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
    schemas: {
      Error: error,
      Job: {
        type: 'object',
        description:
          'A background job (kind "delta": params {repo, from, to}; result {name, existed, digest, totalSize, parts, pruned, …}). Records stay for an hour. Queued jobs run by priority (lower first), first in first out within one; several may run at once (CAIRN_JOBS_CONCURRENCY). When a ref moves, automatic delta jobs (policy, on-demand) to a commit that is no longer the head of any ref are dropped if queued, and aborted if running from scratch — both end "failed" with error code OBSOLETE; explicit ones (api) are demoted to priority 3 instead.',
        properties: {
          id: { type: 'string' },
          kind: { type: 'string' },
          key: { type: 'string' },
          repo: { type: ['string', 'null'] },
          source: { type: ['string', 'null'], description: 'policy, on-demand, api' },
          params: { type: 'object' },
          state: { enum: ['queued', 'running', 'done', 'failed'], description: 'failed includes jobs that were cancelled: error.code CANCELLED (the server stopped) or OBSOLETE (superseded by a newer move of the ref)' },
          priority: {
            type: 'integer',
            minimum: 0,
            description:
              'Lower runs first. Delta jobs: 0 = from the ref\'s previous head to its new head, and on-demand or API requests to a current ref head; 1 = from older previous commits (or an API request to a commit that is no ref\'s head); 2 = from scratch; 3 = explicit requests demoted because a newer move of the ref made them less useful',
          },
          position: { type: ['integer', 'null'], minimum: 1, description: 'While queued: 1-based place in the run order among the queued jobs the caller may see (1 starts next); null once running or finished' },
          createdAt: { type: 'string', format: 'date-time' },
          startedAt: { type: ['string', 'null'] },
          finishedAt: { type: ['string', 'null'] },
          progress: { type: ['object', 'null'] },
          result: { type: ['object', 'null'] },
          error: { type: ['object', 'null'], properties: { code: { type: 'string', description: 'e.g. NOT_FOUND, NOT_OWNED, CANCELLED, OBSOLETE, INTERNAL' }, message: { type: 'string' } } },
        },
      },
    },
  },
  security: [{ bearer: [] }],
  paths: {
    '/api/repos': {
      get: { summary: 'List repositories (private ones only with a read token for them)', responses: { '200': json({ type: 'object', properties: { repos: { type: 'array' } } }) } },
      post: {
        summary: 'Create a repository (admin)',
        requestBody: json({ type: 'object', required: ['name'], properties: { name: { type: 'string' }, collectionId: { type: 'string' }, private: { type: 'boolean' } } }),
        responses: { '201': { description: 'created' }, ...errors(400, 401, 403, 409) },
      },
    },
    '/api/repos/{repo}/settings': {
      parameters: [repoParam],
      get: { summary: 'Repository settings', responses: { '200': { description: 'settings' }, ...errors(404) } },
      patch: {
        summary: 'Change settings (admin): private, deltas.scratch, deltas.previousCommits, owned',
        description: '`owned: true` adopts a repository Cairn did not create (its summary is regenerated and signed once); it cannot be set back to false. Writes into a repository that is not owned (uploads, ref updates, deltas) answer 403 NOT_OWNED.',
        requestBody: json({ type: 'object', properties: { owned: { const: true }, private: { type: 'boolean' }, deltas: { type: 'object', properties: { scratch: { type: 'boolean' }, previousCommits: { type: 'integer', minimum: 0, maximum: 50 } } } } }),
        responses: { '200': { description: 'new settings' }, ...errors(400, 401, 403, 404) },
      },
    },
    '/api/repos/{repo}/objects/missing': {
      parameters: [repoParam],
      post: {
        summary: 'Which of these objects the repository lacks (push)',
        requestBody: json({ type: 'object', required: ['objects'], properties: { objects: { type: 'array', maxItems: 100000, items: objectName } } }),
        responses: { '200': json({ type: 'object', properties: { missing: { type: 'array', items: objectName } } }), ...errors(400, 401, 403, 404, 413) },
      },
    },
    '/api/repos/{repo}/objects': {
      parameters: [repoParam],
      post: {
        summary: 'Upload many objects (push): multipart/form-data, one file part per object, field name = <checksum>.<type>',
        description:
          'Each object is verified before it is stored: metadata by SHA-256, normal form and structure; .filez by inflating under its declared size and recomputing the content checksum. A refused object answers 4xx with details.object and keeps nothing of it; objects of the same request verified before it stay stored. Already-present objects succeed (idempotent).',
        requestBody: { content: { 'multipart/form-data': { schema: { type: 'object', additionalProperties: { type: 'string', format: 'binary' } } } } },
        responses: { '200': json({ type: 'object', properties: { stored: { type: 'array', items: objectName }, present: { type: 'array', items: objectName } } }), ...errors(400, 401, 403, 404, 413) },
      },
    },
    '/api/repos/{repo}/objects/{name}': {
      parameters: [repoParam, { name: 'name', in: 'path', required: true, schema: objectName }],
      put: {
        summary: 'Upload one object (push), streamed; for large files',
        requestBody: { content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
        responses: { '201': { description: 'stored' }, '200': { description: 'already present' }, ...errors(400, 401, 403, 404, 413) },
      },
    },
    '/api/repos/{repo}/refs': {
      parameters: [repoParam],
      get: { summary: 'Current refs', responses: { '200': json({ type: 'object', properties: { refs: { type: 'object', additionalProperties: checksum } } }) } },
      post: {
        summary: 'Move refs atomically (push; each ref within the token prefixes)',
        description:
          'Every `expected` is compared with the current value (null = absent; omitted = no check); a mismatch answers 409 with details.conflicts and changes nothing. Each commit must have its whole tree present (422 with details.missing). Then refs, summary, commit signatures and summary.sig change together. Promotion is the same call with an existing commit.',
        requestBody: json({
          type: 'object',
          required: ['updates'],
          properties: {
            updates: { type: 'array', items: { type: 'object', required: ['ref', 'commit'], properties: { ref: { type: 'string' }, commit: { oneOf: [checksum, { type: 'null' }] }, expected: { oneOf: [checksum, { type: 'null' }] } } } },
            force: { type: 'boolean', description: 'skip the compare-and-swap' },
          },
        }),
        responses: { '200': json({ type: 'object', properties: { changes: { type: 'array' } } }), ...errors(400, 401, 403, 404, 409, 422) },
      },
    },
    '/api/repos/{repo}/reflog': {
      parameters: [
        repoParam,
        { name: 'ref', in: 'query', schema: { type: 'string' } },
        { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
        { name: 'before', in: 'query', schema: { type: 'string' }, description: 'the `next` of the previous page' },
      ],
      get: {
        summary: 'Ref history, newest first: time, ref, old, new, and actor (token subject) for push or admin tokens of the repository only',
        description: 'A page opens at most 5,000 entry files; `next` (null at the end) continues with `before`.',
        responses: { '200': json({ type: 'object', properties: { entries: { type: 'array' }, next: { type: ['string', 'null'] } } }), ...errors(400, 401, 403, 404) },
      },
    },
    '/api/repos/{repo}/deltas': {
      parameters: [repoParam],
      get: {
        summary: 'Static deltas present: name (FROM-TO or TO, hex), from, to, digest (SHA-256 of the superblock), size (bytes of superblock and parts), parts',
        responses: { '200': json({ type: 'object', properties: { deltas: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, from: { oneOf: [checksum, { type: 'null' }] }, to: checksum, digest: checksum, size: { type: 'integer' }, parts: { type: ['integer', 'null'] } } } } } }), ...errors(401, 403, 404) },
      },
      post: {
        summary: 'Queue the generation of one static delta (push); deltas are immutable: an existing one answers 200 {status: "exists"}',
        description: '`to` and `from` are commit checksums or ref names of the repository; `from` null or absent means from scratch. 202 {status: "queued"|"duplicate", job} with Location /api/jobs/{id}; 503 QUEUE_FULL (Retry-After) when the bounded queue is full.',
        requestBody: json({ type: 'object', required: ['to'], properties: { from: { oneOf: [{ type: 'string' }, { type: 'null' }] }, to: { type: 'string' } } }),
        responses: { '200': { description: 'exists' }, '202': { description: 'queued' }, ...errors(400, 401, 403, 404, 501, 503) },
      },
    },
    '/api/jobs': {
      parameters: [
        { name: 'repo', in: 'query', schema: { type: 'string' } },
        { name: 'state', in: 'query', schema: { enum: ['queued', 'running', 'done', 'failed'] } },
        { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000 } },
      ],
      get: {
        summary: 'Recent background jobs, newest first (jobs of private repositories only with a read token), and the queue: queued, running, limits, deciding (publishes and 404s whose deltas are still being worked out)',
        security: [],
        responses: { '200': json({ type: 'object', properties: { jobs: { type: 'array', items: { $ref: '#/components/schemas/Job' } }, queue: { type: 'object' } } }), ...errors(400) },
      },
    },
    '/api/jobs/{id}': {
      parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
      get: { summary: 'One job', security: [], responses: { '200': json({ $ref: '#/components/schemas/Job' }), ...errors(404) } },
    },
    '/api/tokens/revoke': {
      post: { summary: 'Revoke a token by jti (admin)', requestBody: json({ type: 'object', required: ['jti'], properties: { jti: { type: 'string' }, reason: { type: 'string' } } }), responses: { '200': { description: 'revoked' }, ...errors(400, 401, 403) } },
    },
    '/api/tokens/revoked': { get: { summary: 'Revoked tokens (admin)', responses: { '200': { description: 'list' } } } },
    '/repo/{repo}/keys/gpg.asc': { parameters: [repoParam], get: { summary: 'Armored OpenPGP public key for --gpg-import', security: [], responses: { '200': { description: 'key' } } } },
    '/repo/{repo}/keys/ed25519.pub': { parameters: [repoParam], get: { summary: 'Base64 ed25519 public key', security: [], responses: { '200': { description: 'key' } } } },
    '/healthz': { get: { summary: 'Liveness', security: [], responses: { '200': { description: 'ok' } } } },
    '/metrics': { get: { summary: 'Prometheus metrics', security: [], responses: { '200': { description: 'metrics' } } } },
  },
} as const;

export function openapiRoutes(): Router {
  const router = Router({ strict: true });
  router.get('/api/openapi.json', (_req, res) => {
    res.locals.route = 'api_openapi';
    res.json(OPENAPI);
  });
  return router;
}
