import type { Request, Response } from 'express';
import type { Readable } from 'node:stream';
import multer, { type StorageEngine } from 'multer';
import { nowOf, type BlobInfo } from '../../storage/backends/backend';
import { CairnError } from '../../storage/errors';
import { mapLimit } from '../../storage/maintenance/reach';
import { validateChecksum } from '../../storage/objects/checksum';
import { ObjectType, objectKey, objectTypeFromExtension } from '../../storage/objects/types';
import { checkCommitMetaUpload, ingestObject, WHOLE_OBJECT_BYTES, type IngestOptions, type IngestResult } from '../../storage/repo/ingest';
import { sharedVerifyPool } from '../../storage/repo/verify-pool';
import { readGcEpoch } from '../../storage/repo/presence';
import type { Repo } from '../../storage/repo/repo';
import { claimsOf } from '../auth/middleware';
import { allows } from '../auth/tokens';
import type { ServerContext } from '../context';
import { describeError } from '../errors';
import { reply, route, type AnyRoute, type ApiEnv } from './route';
import { MAX_MISSING_QUERY, objectName, type MissingObjectsAnswer, type MissingObjectsBody, type PutObjectAnswer, type UploadAnswer } from './schema';

/** `<64 hex>.<ext>` as used in upload field names and URLs. */
export function parseObjectName(name: string): { checksum: string; type: ObjectType; name: string } {
  const dot = name.indexOf('.');
  if (dot !== 64) throw new CairnError('INVALID_ARGUMENT', `invalid object name "${name.slice(0, 100)}": expected <checksum>.<type>`);
  return { checksum: validateChecksum(name.slice(0, 64)), type: objectTypeFromExtension(name.slice(65)), name };
}

const MAX_FILES_PER_REQUEST = 10_000;
/**
 * Parts of one multipart request being ingested at once: read whole, waiting
 * for a verification thread, or being written. The next part is not read
 * (busboy waits) until one is done, so one request holds at most this many
 * objects in memory (each ≤ WHOLE_OBJECT_BYTES, metadata ≤ 10 MiB).
 */
const PARTS_IN_FLIGHT = 32;
/** A `boundary` parameter of 1 to 70 characters (RFC 2046), quoted or not. */
const MULTIPART_BOUNDARY = /;\s*boundary=(?:"[^"]{1,70}"|[^\s";]{1,70})\s*(?:;|$)/i;

/**
 * Object upload: which are missing, many in one multipart request, one by PUT.
 * Every object is verified by storage/repo/ingest before it becomes visible.
 * All three are the first steps of a push: refused (403 NOT_OWNED) in a
 * repository Cairn does not own, before any upload.
 */
export const objectRoutes: AnyRoute[] = [
  route<Record<string, never>, Record<string, never>, MissingObjectsBody>({
    method: 'post',
    path: '/api/repos/:repo/objects/missing',
    label: 'api_objects_missing',
    summary: 'Which of these objects the repository lacks (push)',
    access: { repo: 'push', owned: true },
    body: { limit: '16mb', json: { type: 'object', required: ['objects'], additionalProperties: false, properties: { objects: { type: 'array', maxItems: MAX_MISSING_QUERY, items: objectName } } } },
    responses: { 200: { description: 'the names the repository lacks', schema: { type: 'object', properties: { missing: { type: 'array', items: objectName } } } } },
    async handler({ repo, body }): Promise<MissingObjectsAnswer> {
      return { missing: await missingObjects(repo, body.objects.map(parseObjectName)) };
    },
  }),
  route({
    method: 'post',
    path: '/api/repos/:repo/objects',
    label: 'api_objects_upload',
    summary: 'Upload many objects (push): multipart/form-data, one file part per object, field name = <checksum>.<type>',
    description:
      'Each object is verified before it is stored: metadata by SHA-256, normal form and structure; .filez by inflating under its declared size and recomputing the content checksum. A refused object answers 4xx with details.object and keeps nothing of it; objects of the same request verified before it stay stored. Already-present objects succeed (idempotent). The body streams: each part is verified as it arrives.',
    access: { repo: 'push', owned: true },
    body: { stream: { 'multipart/form-data': { schema: { type: 'object', additionalProperties: { type: 'string', format: 'binary' } } } } },
    responses: { 200: { description: 'stored (new) and present (already there)', schema: { type: 'object', properties: { stored: { type: 'array', items: objectName }, present: { type: 'array', items: objectName } } } } },
    errors: [400, 413],
    async handler({ ctx, env, req, res, repo }): Promise<UploadAnswer> {
      // Anything but multipart/form-data with a boundary (which multer would skip silently) is a malformed upload.
      if (!req.is('multipart/form-data') || !MULTIPART_BOUNDARY.test(req.headers['content-type'] ?? '')) {
        throw new CairnError('INVALID_ARGUMENT', 'upload refused: the body must be multipart/form-data with a boundary');
      }
      // The store's gc epoch before these uploads (storage/repo/presence.ts): what their presence memo
      // entries carry, also in a worker or replica that did not answer this push's objects/missing.
      await readGcEpoch(repo.backend);
      const results: IngestResult[] = [];
      const inFlight: InFlight[] = [];
      const upload = multer({
        storage: ingestStorage(repo, ctx, results, inFlight, await commitMetaRule(ctx, req, res, repo)),
        limits: { fileSize: ctx.ingestLimits.maxUploadSize, files: MAX_FILES_PER_REQUEST, fields: 0, fieldNameSize: 200 },
      }).any();
      const outcome = await new Promise<unknown>((resolve) => upload(req, res, (err?: unknown) => resolve(err)));
      // multer answers as soon as a part fails; the other parts' ingests may
      // still be removing their temporary files. Answer once they are done.
      // A part still streaming gets no more bytes once multer gave up: end it.
      if (outcome) for (const f of inFlight) if (!f.stream.readableEnded) f.stream.destroy(new Error('upload aborted'));
      await Promise.allSettled(inFlight.map((f) => f.ingest));
      if (outcome) throw refused(env, normalizeMulterError(outcome));
      // multer sets req.body when it parsed the body; it skips content types it cannot read.
      if (req.body === undefined) throw new CairnError('INVALID_ARGUMENT', 'upload refused: malformed multipart content type');
      return {
        stored: results.filter((r) => r.stored).map(nameOf),
        present: results.filter((r) => !r.stored).map(nameOf),
      };
    },
  }),
  route<{ name: string }>({
    method: 'put',
    path: '/api/repos/:repo/objects/:name',
    label: 'api_object_put',
    summary: 'Upload one object (push), streamed; for large files',
    access: { repo: 'push', owned: true },
    params: { type: 'object', required: ['name'], properties: { name: objectName } },
    body: { stream: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
    responses: { 201: { description: 'stored', schema: { type: 'object', properties: { object: objectName, stored: { const: true } } } }, 200: { description: 'already present', schema: { type: 'object', properties: { object: objectName, stored: { const: false } } } } },
    errors: [413],
    async handler({ ctx, env, req, res, repo, params }) {
      const o = parseObjectName(params.name);
      const declared = Number(req.headers['content-length'] ?? NaN);
      if (declared > ctx.ingestLimits.maxUploadSize) throw new CairnError('TOO_LARGE', `${o.name}: body exceeds ${ctx.ingestLimits.maxUploadSize} bytes`);
      const gate = await commitMetaRule(ctx, req, res, repo);
      const pool = sharedVerifyPool();
      await readGcEpoch(repo.backend); // as for the multipart upload
      // A .filez streams (it may be large, and trailing junk is refused while the client still sends); metadata is read whole.
      const result = await ingestObject(repo, o.checksum, o.type, req, ctx.ingestLimits, { commitMetaGate: (c) => gate(c), verify: (job) => pool.verify(job) }).catch((e: unknown) => {
        closeAfterResponse(req);
        throw refused(env, e);
      });
      if (!result.stored) req.resume(); // already present: the body is not needed
      return reply<PutObjectAnswer>(result.stored ? 201 : 200, { object: o.name, stored: result.stored });
    },
  }),
];

/** Counts an upload the server refused (`cairn_objects_refused_total{reason}`: the error code); storage failures are not refusals. */
function refused(env: ApiEnv, e: unknown): unknown {
  const info = describeError(e);
  if (info.status < 500) env.metrics?.objectRefused(info.code);
  return e;
}

/**
 * The objects of `objects` the repository lacks: one stat per object, the
 * honest answer (a listing cannot say more cheaply what a store holds).
 *
 * A backend that can stat synchronously (the filesystem: one lstat, a few µs)
 * is asked in slices of 1,024 between which other requests run; through the
 * thread pool the same answer for an incremental push's 10,000 names took
 * ~0.35 s instead of ~0.05 s. A remote store (S3: each stat a HEAD, a few ms
 * to tens of ms) is asked REMOTE_STATS at a time, the next one sent as soon as
 * one answers (no wait for a whole slice's slowest): fewer than the S3
 * client's 50 sockets, so one push's question (up to 100,000 names) leaves
 * connections for the uploads and reads of everyone else.
 *
 * Objects found present and older than TOUCH_OLDER_MS get their mtime
 * refreshed (Backend.touch, 32 at a time), so that the push that will rely on
 * them is inside gc's grace window (storage/maintenance/gc.ts): an old object
 * no ref reaches (a pruned commit's) is not deleted between this answer and
 * the push's ref update.
 */
async function missingObjects(repo: Repo, objects: ReturnType<typeof parseObjectName>[]): Promise<string[]> {
  const missing: string[] = [];
  const backend = repo.backend;
  // The store's gc epoch, read before the uploads this answer leads to: what their presence memo entries carry.
  await readGcEpoch(backend);
  const old = Date.now() - TOUCH_OLDER_MS;
  const stale: string[] = [];
  const sort = (o: ReturnType<typeof parseObjectName>, info: BlobInfo | null) => {
    if (!info) missing.push(o.name);
    else if (info.mtimeMs < old) stale.push(objectKey(o.checksum, o.type));
  };
  if (backend.blocking) {
    for (let i = 0; i < objects.length; i += BLOCKING_SLICE) {
      if (i > 0) await new Promise<void>((r) => setImmediate(r));
      for (const o of objects.slice(i, i + BLOCKING_SLICE)) sort(o, nowOf(backend.statFast(objectKey(o.checksum, o.type))));
    }
  } else {
    const infos = await mapLimit(objects, REMOTE_STATS, (o) => backend.stat(objectKey(o.checksum, o.type)));
    objects.forEach((o, i) => sort(o, infos[i] ?? null));
  }
  await mapLimit(stale, 32, (key) => backend.touch(key));
  return missing;
}

/** Stats between two turns of the event loop on a blocking backend. */
const BLOCKING_SLICE = 1024;
/** Stats in flight at once on a remote store. */
const REMOTE_STATS = 32;

/** Present objects older than this are touched by a missing-objects check (gc's default grace is 1 h). */
const TOUCH_OLDER_MS = 10 * 60_000;

function nameOf(r: IngestResult): string {
  return `${r.checksum}.${['', 'filez', 'dirtree', 'dirmeta', 'commit', 'tombstone-commit', 'commitmeta'][r.type]}`;
}

/** The token's rule for .commitmeta uploads (storage/repo/ingest.ts, checkCommitMetaUpload). */
async function commitMetaRule(ctx: ServerContext, req: Request, res: Response, repo: Repo): Promise<(commit: string) => Promise<void>> {
  const claims = await claimsOf(ctx.auth, req, res);
  return (commit) => checkCommitMetaUpload(repo, commit, (ref) => !!claims && allows(claims, { scope: 'push', repo: repo.name, ref }));
}

/**
 * A multer storage engine that verifies each part straight into the repository
 * (temp file, verify, rename). A .commitmeta waits for its commit when that
 * was sent earlier in the same request (parts are read in order, but the
 * commit's verification may still be finishing).
 */
/** A part being ingested. */
interface InFlight {
  stream: Readable;
  ingest: Promise<unknown>;
}

function ingestStorage(repo: Repo, ctx: ServerContext, results: IngestResult[], inFlight: InFlight[], gate: (commit: string) => Promise<void>): StorageEngine {
  const commitsInFlight = new Map<string, Promise<unknown>>();
  const pool = sharedVerifyPool();
  const opts: IngestOptions = {
    commitMetaGate: async (commit) => {
      await commitsInFlight.get(commit);
      await gate(commit);
    },
    verify: (job) => pool.verify(job),
    wholeBytes: WHOLE_OBJECT_BYTES,
  };
  const slots = new Slots(PARTS_IN_FLIGHT);
  return {
    _handleFile(_req, file, cb) {
      // A broken body (truncated, bad framing) fails the part's stream; the
      // ingest then rejects with that same error, which is the client's fault.
      file.stream.on('error', (e) => bodyErrors.add(e));
      let o: ReturnType<typeof parseObjectName>;
      try {
        o = parseObjectName(file.fieldname);
      } catch (e) {
        file.stream.resume();
        cb(e as Error);
        return;
      }
      // The part is read only once it has a slot: until then busboy reads no further.
      const ingest = slots.run(() => ingestObject(repo, o.checksum, o.type, file.stream, ctx.ingestLimits, opts));
      inFlight.push({ stream: file.stream, ingest });
      if (o.type === ObjectType.Commit) commitsInFlight.set(o.checksum, ingest.catch(() => undefined));
      ingest.then(
        (r) => {
          if (!r.stored) file.stream.resume();
          results.push(r);
          cb(null, { size: r.bytes });
        },
        (e: unknown) => {
          file.stream.resume();
          if (!bodyErrors.has(e as object) && !(e instanceof CairnError) && e && typeof e === 'object') storageErrors.add(e);
          cb(e as Error);
        },
      );
    },
    _removeFile(_req, _file, cb) {
      // Verified objects are valid whatever happened to the rest of the request.
      cb(null);
    },
  };
}

/** At most `n` tasks at once, the others started in order as those end. */
class Slots {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(private readonly n: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.n) await new Promise<void>((r) => this.waiting.push(r));
    else this.running++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

/** Errors of the request body (busboy's, on a part's stream) and of the storage (the backend's), by object. */
const bodyErrors = new WeakSet<object>();
const storageErrors = new WeakSet<object>();

/**
 * Multer's limits become TOO_LARGE/INVALID_ARGUMENT; CairnErrors and backend
 * failures pass as they are; everything else comes from parsing the body
 * (no or a wrong boundary, truncated body, bad part headers, the client
 * going away) and is a 400, not a 500 with a stack trace in the log.
 */
function normalizeMulterError(err: unknown): unknown {
  if (err instanceof multer.MulterError) {
    const code = err.code === 'LIMIT_FILE_SIZE' || err.code === 'LIMIT_FILE_COUNT' || err.code === 'LIMIT_PART_COUNT' ? 'TOO_LARGE' : 'INVALID_ARGUMENT';
    return new CairnError(code, `upload refused: ${err.message}${err.field ? ` (${err.field})` : ''}`, err.field ? { object: err.field } : undefined);
  }
  if (err instanceof CairnError || (err && typeof err === 'object' && storageErrors.has(err))) return err;
  const why = err instanceof Error ? err.message : String(err);
  return new CairnError('INVALID_ARGUMENT', `malformed multipart body: ${why.slice(0, 200)}`);
}

/** How long a refused upload's remaining body is read and discarded after the answer, at most. */
export const LINGER_MS = 10_000;

/**
 * After a refused body: answer at once, then close as nginx's lingering close
 * does. Node closes the socket as soon as the answer is written when the
 * client asked for `Connection: close` (as clients without an agent do), and
 * a socket closed with the client's bytes still arriving makes the kernel
 * send a reset, which can destroy the answer in the client's buffers before
 * it was read (the client sees EPIPE, not the 400). So the answer is written
 * as a keep-alive one (node then leaves the socket open), the rest of the body
 * is read and discarded (bounded by the upload size limit checked before), and
 * the socket ends once the request ended when the client asked to close, or is
 * destroyed after LINGER_MS if the body never ends.
 */
function closeAfterResponse(req: Request): void {
  const res = req.res;
  req.unpipe();
  req.resume();
  // (req.socket is null once the body was destroyed, e.g. a metadata upload over its size limit)
  const socket = req.socket ?? res?.socket;
  if (!res || res.headersSent || !socket) return;
  const clientCloses = !res.shouldKeepAlive;
  res.shouldKeepAlive = true;
  res.once('finish', () => {
    const ended = () => {
      clearTimeout(timer);
      if (clientCloses) socket.end();
    };
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    if (req.complete) ended();
    else req.once('end', ended);
  });
}
