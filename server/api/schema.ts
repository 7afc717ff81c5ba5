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
      'A background job (kind "delta": params {repo, from, to}; result {name, existed, digest, totalSize, parts, pruned, …}). Records stay for an hour (a delta job\'s durable record, which every replica shows, 10 minutes after it finished). A delta job\'s id is its durable record\'s (16 hex of the delta, "-", 8 hex of the request), the same on every replica on one store; other jobs have UUIDs. Queued jobs run by priority (lower first), first in first out within one; several may run at once (CAIRN_JOBS_CONCURRENCY). When a ref moves, automatic delta jobs (policy, on-demand) to a commit that is no longer the head of any ref are dropped if queued, and aborted if running from scratch — both end "failed" with error code OBSOLETE; explicit ones (api) are demoted to priority 3 instead.',
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
      position: { type: ['integer', 'null'], minimum: 1, description: "While queued in the answering replica's queue: 1-based place in its run order among the queued jobs the caller may see (1 starts next); null once running or finished, and for a job queued only in the store or on another replica" },
      owner: { type: ['string', 'null'], description: 'The replica that runs or ran the job (its id, as GET /api/jobs queue.replica names each replica); null while queued' },
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
      kind: { type: 'string', enum: ['ostree', 'flatpak'], description: 'flatpak: the summary carries what flatpak reads (README "Flatpak")' },
      flatpak: { type: 'object', description: 'remote configuration of a flatpak repository (xa.title, …)', additionalProperties: { type: 'string' } },
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
  kind?: 'flatpak';
  flatpak?: Partial<Record<'title' | 'comment' | 'description' | 'homepage' | 'icon' | 'defaultBranch' | 'redirectUrl', string | null>>;
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

// ---- browsing, operator writes and update traffic (issue 10: server/api/browse.ts, operator.ts, traffic.ts) ----

const nullableString = { type: ['string', 'null'] } as const;
const nullableInteger = { type: ['integer', 'null'] } as const;
const count = { type: 'integer', minimum: 0 } as const;
const countBytes = { type: 'object', required: ['count', 'bytes'], properties: { count, bytes: count } } as const;
const hexBytes = { type: 'object', required: ['hex', 'bytes'], properties: { hex: { type: 'string' }, bytes: count, truncated: { const: true } }, description: 'bytes as hex (the first ones when truncated)' } as const;
const xattr = { type: 'object', required: ['name', 'value', 'text'], properties: { name: { type: 'string' }, value: hexBytes, text: { ...nullableString, description: 'the value as text when it is UTF-8 without control characters' } } } as const;
const metadataEntry = {
  type: 'object',
  required: ['key', 'type', 'value'],
  properties: { key: { type: 'string' }, type: { type: 'string', description: 'GVariant type string' }, value: { description: 'the value as bounded JSON: bytes as hex, 64-bit integers as strings' }, truncated: { const: true } },
} as const;
const entryKind = { enum: ['file', 'dir', 'symlink'] } as const;
/** `next` of a page: pass it back as `cursor`; null at the end. */
const nextCursor = { ...nullableString, description: 'the cursor of the next page (pass it as `cursor`), null at the end' } as const;
/** Paths inside a commit (`/usr/bin`); resolved by storage, which refuses `..` and the like. */
export const commitPath = { type: 'string', minLength: 1, maxLength: 4096, pattern: '^/', description: 'an absolute path inside the commit' } as const;

const sizes = {
  objects: { ...nullableInteger, description: 'objects of the closure (commit, dirtrees, dirmetas, content), null while pending' },
  archivedBytes: { ...nullableInteger, description: 'bytes of those objects as stored (.filez compressed), null while pending' },
  unpackedBytes: { ...nullableInteger, description: 'bytes of the regular files, null while pending' },
  sizesPending: { type: 'boolean', description: 'the sizes are being computed in the background: ask again' },
  sizesIncomplete: { type: 'boolean', description: 'some objects of the closure are absent (a shallow or partial copy) or the walk hit its bound: the sizes are lower bounds' },
};

Object.assign(COMPONENTS, {
  RepoStats: {
    type: 'object',
    description: 'Storage statistics of a repository: objects by type as stored, refs, static deltas. Computed by listing the repository (cached for a minute).',
    required: ['repo', 'objects', 'objectsTotal', 'refs', 'deltas', 'computedAt'],
    properties: {
      repo: repoName,
      objects: { type: 'object', properties: Object.fromEntries(['commit', 'dirtree', 'dirmeta', 'file', 'commitmeta', 'tombstone-commit'].map((t) => [t, countBytes])) },
      objectsTotal: countBytes,
      refs: count,
      deltas: { ...countBytes, description: 'complete deltas (with a superblock) and the bytes of their files' },
      deltaLeftovers: { ...countBytes, description: 'files under deltas/ of no complete delta' },
      computedAt: { type: 'string', format: 'date-time' },
      durationMs: count,
      truncated: { type: 'boolean', description: 'the listing stopped at its bound: lower bounds' },
    },
  },
  Branch: {
    type: 'object',
    required: ['ref', 'commit', 'subject', 'version', 'timestamp', 'signed'],
    properties: {
      ref: refName,
      commit: checksum,
      subject: { ...nullableString, description: 'null when the commit object is absent' },
      version: nullableString,
      timestamp: { ...nullableInteger, description: 'seconds since the epoch' },
      date: { ...nullableString, format: 'date-time' },
      signed: { type: 'boolean', description: 'detached signatures present (verified in the commit detail)' },
      signatureTypes: { type: 'array', items: { enum: ['gpg', 'ed25519'] } },
      ...sizes,
    },
  },
  HistoryEntry: {
    type: 'object',
    required: ['commit', 'parent', 'subject', 'version', 'timestamp', 'signed'],
    properties: { commit: checksum, parent: nullableChecksum, subject: { type: 'string' }, version: nullableString, timestamp: { type: 'integer' }, date: { type: 'string' }, signed: { type: 'boolean' } },
  },
  Signature: {
    type: 'object',
    required: ['kind', 'keyId', 'valid'],
    properties: {
      kind: { enum: ['gpg', 'ed25519'] },
      index: count,
      keyId: { ...nullableString, description: "GPG: the issuer's long key ID (uppercase hex); ed25519: null" },
      keyIds: { type: 'array', items: { type: 'string' } },
      valid: { type: ['boolean', 'null'], description: "verifies with the repository's keys; null: the repository has no key of this kind to check with" },
      validKeys: { type: 'array', items: { type: 'string' } },
      bytes: count,
      error: { type: 'string', description: 'why a malformed signature is not valid' },
    },
  },
  CommitDelta: {
    type: 'object',
    required: ['name', 'from', 'to', 'size'],
    properties: { name: { type: 'string' }, from: { ...nullableChecksum, description: 'null: from scratch' }, to: checksum, size: count, partFiles: count },
  },
  CommitDetail: {
    type: 'object',
    required: ['commit', 'parent', 'subject', 'body', 'timestamp', 'metadata', 'signatures', 'objects', 'archivedBytes', 'unpackedBytes', 'sizesPending', 'deltas'],
    properties: {
      commit: checksum,
      parent: nullableChecksum,
      parentPresent: { type: ['boolean', 'null'], description: 'the parent commit is in the repository (null: no parent)' },
      subject: { type: 'string' },
      body: { type: 'string' },
      textTruncated: { type: 'boolean' },
      version: nullableString,
      timestamp: { type: 'integer' },
      date: { type: 'string' },
      rootTree: checksum,
      rootMeta: checksum,
      contentChecksum: { ...checksum, description: 'what `ostree log` prints as ContentChecksum' },
      metadata: { type: 'array', items: metadataEntry },
      metadataTruncated: { type: 'boolean' },
      commitBytes: count,
      signed: { type: 'boolean' },
      verified: { type: 'boolean', description: "at least one signature verifies with the repository's keys" },
      signatures: { type: 'array', items: { $ref: '#/components/schemas/Signature' } },
      detachedMetadata: { type: 'array', items: metadataEntry, description: 'detached metadata other than signatures' },
      ...sizes,
      deltas: {
        type: 'object',
        required: ['to', 'from'],
        properties: { to: { type: 'array', items: { $ref: '#/components/schemas/CommitDelta' }, description: 'deltas to this commit (from scratch included)' }, from: { type: 'array', items: { $ref: '#/components/schemas/CommitDelta' } } },
      },
    },
  },
  TreeEntry: {
    type: 'object',
    required: ['name', 'kind', 'mode', 'uid', 'gid', 'size', 'target', 'xattrs', 'checksum'],
    properties: {
      name: { type: 'string' },
      path: { type: 'string' },
      kind: entryKind,
      mode: { type: 'integer', description: 'st_mode, type bits included (0o100644 = 33188)' },
      permissions: { type: 'string', description: 'octal, e.g. 0755' },
      uid: count,
      gid: count,
      size: { ...count, description: 'file size (0 for directories and symlinks, as ostree ls shows)' },
      archivedSize: { ...nullableInteger, description: 'bytes of the stored .filez (null for directories)' },
      target: { ...nullableString, description: 'symlink target' },
      xattrs: { type: 'array', items: xattr },
      xattrsTruncated: { type: 'boolean', description: 'present (true) when only the first xattrs are shown (at most 256, 16 KiB of names and values)' },
      checksum: { ...checksum, description: 'content checksum, or dirtree checksum of a directory' },
      metaChecksum: { ...nullableChecksum, description: 'dirmeta checksum of a directory' },
    },
  },
  DiffSide: {
    type: 'object',
    required: ['kind', 'size', 'checksum', 'mode', 'uid', 'gid'],
    properties: {
      kind: entryKind,
      size: count,
      checksum: { ...checksum, description: 'content checksum, or dirmeta checksum of a directory (what ostree compares)' },
      treeChecksum: nullableChecksum,
      mode: { type: 'integer' },
      uid: count,
      gid: count,
      target: nullableString,
    },
  },
  Diff: {
    type: 'object',
    description: 'What `ostree diff FROM TO` reports: modified, removed and added paths in its order; a removed directory is one entry, an added one comes with everything below it.',
    required: ['from', 'to', 'added', 'removed', 'modified', 'truncated'],
    properties: {
      from: checksum,
      to: checksum,
      added: { type: 'array', items: { type: 'object', required: ['path', 'kind', 'checksum', 'size'], properties: { path: { type: 'string' }, kind: entryKind, checksum, size: count } } },
      removed: { type: 'array', items: { type: 'object', required: ['path', 'kind', 'checksum', 'size'], properties: { path: { type: 'string' }, kind: entryKind, checksum, size: count } } },
      modified: {
        type: 'array',
        items: {
          type: 'object',
          required: ['path', 'old', 'new'],
          properties: {
            path: { type: 'string' },
            old: { $ref: '#/components/schemas/DiffSide' },
            new: { $ref: '#/components/schemas/DiffSide' },
            kindChanged: { type: 'boolean' },
            sizeChanged: { type: 'boolean' },
            modeChanged: { type: 'boolean' },
            ownerChanged: { type: 'boolean' },
            targetChanged: { type: 'boolean' },
            xattrChanges: { type: 'array', items: { type: 'object', required: ['name', 'old', 'new'], properties: { name: { type: 'string' }, old: { oneOf: [hexBytes, { type: 'null' }] }, new: { oneOf: [hexBytes, { type: 'null' }] } } } },
            textDiff: {
              type: 'object',
              required: ['status', 'unified'],
              description: 'with text=1, for the first modified regular files: a unified diff, or why there is none',
              properties: { status: { enum: ['ok', 'not-regular', 'too-large', 'binary', 'too-complex'] }, unified: nullableString },
            },
          },
        },
      },
      truncated: { type: 'boolean', description: 'the lists stopped at `limit` entries' },
    },
  },
  Traffic: {
    type: 'object',
    required: ['ref', 'head', 'window', 'updates', 'objects', 'coverage'],
    properties: {
      ref: refName,
      head: checksum,
      headVersion: nullableString,
      window: { type: 'object', required: ['minutes'], properties: { minutes: { type: 'integer' } } },
      updates: {
        type: 'array',
        description: 'most updates first: through a delta (by its from-commit; null from scratch; "other" for pairs over the bounds), or through plain objects',
        items: {
          type: 'object',
          required: ['via', 'from', 'fromVersion', 'to', 'count', 'bytes'],
          properties: {
            via: { enum: ['delta', 'objects'] },
            from: nullableString,
            fromVersion: nullableString,
            to: { type: 'string' },
            toVersion: nullableString,
            count: { ...count, description: 'updates begun (superblocks, or loose commit objects, served)' },
            bytes: { ...count, description: "delta: the superblock's and parts' bytes; objects: the commit objects' bytes" },
            missed: { ...count, description: 'requests for this delta that found none (404)' },
          },
        },
      },
      objects: { ...countBytes, description: "loose objects fetched by clients updating to the ref's commits (delta fallbacks included)" },
      totals: { type: 'object', properties: { deltaUpdates: count, deltaBytes: count, plainUpdates: count, objectBytes: count } },
      coverage: {
        type: 'array',
        description: "the ref's commits before its head, newest first: whether a delta from each to the head exists",
        items: {
          type: 'object',
          required: ['commit', 'version', 'delta'],
          properties: { commit: checksum, version: nullableString, delta: { type: 'object', required: ['exists', 'size'], properties: { exists: { type: 'boolean' }, size: nullableInteger } } },
        },
      },
      scratch: { type: 'object', description: 'the from-scratch delta to the head', properties: { exists: { type: 'boolean' }, size: nullableInteger } },
    },
  },
  OperatorResult: {
    type: 'object',
    required: ['ref', 'old', 'new'],
    properties: {
      ref: refName,
      old: { ...nullableChecksum, description: 'the commit before (null: the ref did not exist)' },
      new: { ...nullableChecksum, description: 'the commit after (null: deleted)' },
      changes: { type: 'array', items: { $ref: '#/components/schemas/RefChange' } },
      downgrade: { const: true, description: 'rollback: hosts already on a later commit need --allow-downgrade' },
      stepsBack: { ...count, description: 'rollback: commits back along parents' },
      note: { type: 'string' },
    },
  },
} satisfies Record<string, Schema>);

/** A page of a list: pass `next` back as `cursor`. */
export interface Page<T> {
  items: T[];
  next: string | null;
}

export const pageOf = (items: Schema, extra: Record<string, Schema> = {}, required: string[] = []): Schema => ({
  type: 'object',
  required: ['items', 'next', ...required],
  properties: { items: { type: 'array', items }, next: nextCursor, ...extra },
});

export interface Sizes {
  objects: number | null;
  archivedBytes: number | null;
  unpackedBytes: number | null;
  sizesPending: boolean;
  sizesIncomplete: boolean;
}

export interface Branch extends Sizes {
  ref: string;
  commit: string;
  subject: string | null;
  version: string | null;
  timestamp: number | null;
  date: string | null;
  signed: boolean;
  signatureTypes: Array<'gpg' | 'ed25519'>;
}

export interface BranchesAnswer extends Page<Branch> {
  /** Refs (matching the prefix) in all. */
  total: number;
}

export interface HistoryItem {
  commit: string;
  parent: string | null;
  subject: string;
  version: string | null;
  timestamp: number;
  date: string;
  signed: boolean;
}

export interface HistoryAnswer extends Page<HistoryItem> {
  ref: string;
  head: string;
  /** Why the history ends on this page: no parent ('root'), or a parent not in the repository ('missing'); null: more pages. */
  end: 'root' | 'missing' | null;
  missing?: string;
  tombstone?: boolean;
}

export interface SignatureItem {
  kind: 'gpg' | 'ed25519';
  index: number;
  keyId: string | null;
  keyIds: string[];
  valid: boolean | null;
  validKeys: string[];
  bytes: number;
  error?: string;
}

export interface CommitDeltaItem {
  name: string;
  from: string | null;
  to: string;
  size: number;
  partFiles: number;
}

export interface CommitAnswer extends Sizes {
  commit: string;
  parent: string | null;
  parentPresent: boolean | null;
  subject: string;
  body: string;
  textTruncated: boolean;
  version: string | null;
  timestamp: number;
  date: string;
  rootTree: string;
  rootMeta: string;
  contentChecksum: string;
  metadata: unknown[];
  metadataTruncated: boolean;
  commitBytes: number;
  signed: boolean;
  verified: boolean;
  signatures: SignatureItem[];
  detachedMetadata: unknown[];
  deltas: { to: CommitDeltaItem[]; from: CommitDeltaItem[] };
}

export interface TreeItem {
  name: string;
  path: string;
  kind: 'file' | 'dir' | 'symlink';
  mode: number;
  permissions: string;
  uid: number;
  gid: number;
  size: number;
  archivedSize: number | null;
  target: string | null;
  xattrs: unknown[];
  xattrsTruncated?: boolean;
  checksum: string;
  metaChecksum: string | null;
}

export interface TreeAnswer extends Page<TreeItem> {
  commit: string;
  path: string;
  /** The directory itself. */
  dir: TreeItem;
  /** Entries of the directory in all. */
  total: number;
}

export interface TrafficUpdate {
  via: 'delta' | 'objects';
  from: string | null;
  fromVersion: string | null;
  to: string;
  toVersion: string | null;
  count: number;
  bytes: number;
  missed: number;
}

export interface TrafficAnswer {
  ref: string;
  head: string;
  headVersion: string | null;
  window: { minutes: number };
  updates: TrafficUpdate[];
  objects: { count: number; bytes: number };
  totals: { deltaUpdates: number; deltaBytes: number; plainUpdates: number; objectBytes: number };
  coverage: Array<{ commit: string; version: string | null; delta: { exists: boolean; size: number | null } }>;
  scratch: { exists: boolean; size: number | null };
}

export interface PromoteBody {
  commit: string;
  /** The ref to point at the commit. */
  to: string;
  /** What `to` holds now (null: absent). */
  expected: string | null;
  /** The ref whose history holds the commit; omitted: a ref whose head is the commit. */
  fromRef?: string;
}

export interface RollbackBody {
  ref: string;
  /** An earlier commit of the ref's history. */
  commit: string;
  /** What the ref holds now. */
  expected: string;
}

export interface DeleteRefBody {
  ref: string;
  expected: string;
}

export interface OperatorAnswer {
  ref: string;
  old: string | null;
  new: string | null;
  changes: RefChange[];
}

export interface RollbackAnswer extends OperatorAnswer {
  downgrade: true;
  stepsBack: number;
  note: string;
}
