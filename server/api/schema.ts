/**
 * The JSON Schemas of the API and the TypeScript types that go with them.
 * Request schemas (params, query, body) are compiled by ajv (server/api/router.ts)
 * and checked before a handler runs; response schemas are documentation
 * (/api/openapi.json). Every request schema bounds what it accepts: string
 * lengths, array lengths, and no other properties.
 *
 * The interfaces here are the wire types: the route handlers take their
 * validated input as these, and the CLI (cli/push/api.ts) imports them
 * (types only: nothing of the server is loaded by the CLI).
 */

/** A JSON Schema as written in this code base (a plain object, `as const` where it helps). */
export type Schema = Record<string, unknown>;

export const checksum = { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'SHA-256, 64 lower-case hex digits' } as const;
export const nullableChecksum = { oneOf: [checksum, { type: 'null' }] } as const;
export const objectName = {
  type: 'string',
  pattern: '^[0-9a-f]{64}\\.(commit|dirtree|dirmeta|filez|commitmeta)$',
  description: '<checksum>.<type>; .filez bytes as stored in an archive repo',
} as const;
/** Repository names (storage/repo/names.ts). */
export const repoName = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$', description: 'repository name: 1-64 of [A-Za-z0-9._-], starting with a letter or digit' } as const;
/** Ref names: checked exactly by storage (ostree's grammar); here only bounded. */
export const refName = { type: 'string', minLength: 1, maxLength: 1024, description: "a ref, as ostree names them (e.g. os/x86_64/stable)" } as const;

/** Schemas named in components.schemas of the OpenAPI document (referenced as `{ $ref: '#/components/schemas/NAME' }`). */
export const COMPONENTS: Record<string, Schema> = {
  Error: {
    type: 'object',
    required: ['error'],
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message'],
        properties: { code: { type: 'string' }, message: { type: 'string' }, details: { type: 'object', description: 'structured facts: conflicting refs, missing objects, the object at fault' } },
      },
    },
  },
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
        type: ['integer', 'null'],
        minimum: 0,
        description:
          "Lower runs first. Delta jobs: 0 = from the ref's previous head to its new head, and on-demand or API requests to a current ref head; 1 = from older previous commits (or an API request to a commit that is no ref's head); 2 = from scratch; 3 = explicit requests demoted because a newer move of the ref made them less useful",
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
  RefChange: {
    type: 'object',
    description: 'One ref move, as recorded in the ref log',
    required: ['time', 'ref', 'old', 'new'],
    properties: { time: { type: 'string', format: 'date-time' }, ref: refName, old: nullableChecksum, new: nullableChecksum, actor: { type: 'string', description: 'token subject; shown only to push or admin tokens of the repository' } },
  },
  Settings: {
    type: 'object',
    required: ['private', 'owned', 'deltas'],
    properties: {
      private: { type: 'boolean', description: 'reads need a read token' },
      owned: { type: 'boolean', description: 'Cairn created or adopted the repository and may write into it' },
      deltas: {
        type: 'object',
        properties: { scratch: { type: 'boolean', description: 'build a from-scratch delta to each new head' }, previousCommits: { type: 'integer', minimum: 0, maximum: 50, description: 'deltas from this many previous commits of the ref' } },
      },
    },
  },
  Delta: {
    type: 'object',
    properties: { name: { type: 'string' }, from: nullableChecksum, to: checksum, digest: checksum, size: { type: 'integer' }, parts: { type: ['integer', 'null'] } },
  },
};

export const ref = (name: keyof typeof COMPONENTS & string) => ({ $ref: `#/components/schemas/${name}` });

// ---- wire types (requests and answers) ----

export interface RefUpdate {
  ref: string;
  commit: string | null;
  /** The value the ref must have now (null: absent); omitted: no check. */
  expected?: string | null;
}

export interface RefUpdatesBody {
  updates: RefUpdate[];
  /** Skip the compare-and-swap. */
  force?: boolean;
}

export interface RefChange {
  time?: string;
  ref: string;
  old: string | null;
  new: string | null;
  actor?: string;
}

export interface RefUpdatesAnswer {
  changes: RefChange[];
}

/** details of a 409 CONFLICT answer to a ref update. */
export interface Conflict {
  ref: string;
  expected: string | null;
  actual: string | null;
}

export interface RefsAnswer {
  refs: Record<string, string>;
}

export interface MissingObjectsBody {
  objects: string[];
}

export interface MissingObjectsAnswer {
  missing: string[];
}

export interface UploadAnswer {
  stored: string[];
  present: string[];
}

export interface PutObjectAnswer {
  object: string;
  stored: boolean;
}

export interface CreateRepoBody {
  name: string;
  collectionId?: string;
  private?: boolean;
}

export interface SettingsPatchBody {
  private?: boolean;
  owned?: boolean;
  deltas?: { scratch?: boolean; previousCommits?: number };
}

export interface DeltaRequestBody {
  from?: string | null;
  to: string;
}

export interface RevokeBody {
  jti: string;
  reason?: string;
}

export interface ApiErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

/** Most names one missing-objects query may carry. */
export const MAX_MISSING_QUERY = 100_000;
/** Most ref updates in one request. */
export const MAX_REF_UPDATES = 1000;
