import { isNow } from '../backends/backend';
import { PassThrough, Readable } from 'node:stream';
import { CairnError } from '../errors';
import { validateChecksum } from '../objects/checksum';
import { verifyFilez } from '../objects/filez';
import { ARCHIVE_EXTENSION, MAX_METADATA_SIZE, ObjectType, objectKey } from '../objects/types';
import type { Repo } from './repo';
import { presence } from './presence';
import { verifyObject, verifyStored, withObject, type VerifyJob } from './verify';

/** Object types a publisher may upload. Tombstones are the server's own business. */
export const UPLOADABLE_TYPES = new Set([ObjectType.Commit, ObjectType.DirTree, ObjectType.DirMeta, ObjectType.File, ObjectType.CommitMeta]);

export interface IngestLimits {
  /** Largest uncompressed file a `.filez` may declare. */
  maxFileSize: number;
  /** Largest upload body for one object (compressed bytes); deflate can grow incompressible data a little. */
  maxUploadSize: number;
}

export const DEFAULT_INGEST_LIMITS: IngestLimits = {
  maxFileSize: 16 * 1024 * 1024 * 1024,
  maxUploadSize: 16 * 1024 * 1024 * 1024 + 64 * 1024 * 1024,
};

export interface IngestOptions {
  /**
   * Decides whether a `.commitmeta` may be stored, before its bytes are read;
   * throws to refuse. Without it only the commit's presence is required. The
   * HTTP routes pass checkCommitMetaUpload with the token's ref rights.
   */
  commitMetaGate?: (commit: string) => Promise<void>;
  /**
   * Where whole objects are verified: a VerifyPool's `verify` (verification
   * threads), by default verifyObject on this thread. The same decision either way.
   */
  verify?: (job: VerifyJob) => Promise<void>;
  /**
   * A `.filez` whose upload ends within this many bytes is read whole, then
   * verified in one piece (`verify`) and written; a longer one streams through
   * the streaming verifier to a temporary file. 0 (the default): every
   * `.filez` streams. For sources that end promptly (multipart parts): a
   * source that stalls before its end is not refused until it ends, while the
   * streaming verifier refuses trailing junk at once (PUT keeps streaming).
   */
  wholeBytes?: number;
}

/** IngestOptions.wholeBytes for multipart parts: most objects of a tree are smaller (median a few kB). */
export const WHOLE_OBJECT_BYTES = 512 * 1024;

export interface IngestResult {
  checksum: string;
  type: ObjectType;
  /** False when the object was already there (an idempotent re-upload). */
  stored: boolean;
  bytes: number;
}

/**
 * Verifies one uploaded object and stores it only if it is what its name says:
 * metadata must be normal-form, structurally valid and hash to `checksum`;
 * a `.filez` must inflate to exactly its declared size and its content
 * checksum must equal `checksum` (verifyObject decides, or for a streamed
 * `.filez` the streaming verifier, with the same errors). A streamed object
 * goes to a temporary file renamed into place only after verification; one
 * read whole (metadata, small `.filez` with `wholeBytes`) is verified before
 * it is written at all. A refused upload leaves nothing. An object read whole
 * is written with `create` (write-once), which also tells whether it was there
 * already: no separate question to the store (storeWhole). What this stores
 * goes into the process's presence memo (presence.ts) for the publish's
 * completeness walk moments later.
 */
export async function ingestObject(
  repo: Repo,
  checksum: string,
  type: ObjectType,
  source: AsyncIterable<Buffer | Uint8Array>,
  limits: IngestLimits = DEFAULT_INGEST_LIMITS,
  opts: IngestOptions = {},
): Promise<IngestResult> {
  validateChecksum(checksum);
  if (!UPLOADABLE_TYPES.has(type)) throw new CairnError('INVALID_ARGUMENT', `objects of type ${ARCHIVE_EXTENSION[type] ?? type} cannot be uploaded`);
  const name = `${checksum}.${ARCHIVE_EXTENSION[type]}`;
  if (type === ObjectType.CommitMeta) await (opts.commitMetaGate ?? ((c: string) => requireCommit(repo, c)))(checksum);
  const key = objectKey(checksum, type);
  if (type === ObjectType.CommitMeta) {
    // Detached metadata is not content-addressed: an upload never replaces what is there (the
    // server's own signatures are merged in at publish time).
    if (await isPresent(repo, key)) return { checksum, type, stored: false, bytes: 0 };
    const data = await readAtMost(source, MAX_METADATA_SIZE, name);
    await repo.writeCommitMeta(checksum, data);
    return { checksum, type, stored: true, bytes: data.length };
  }

  const verify = opts.verify ?? verifyObject;
  if (type !== ObjectType.File) {
    const data = await readAtMost(source, MAX_METADATA_SIZE, name);
    await verify({ checksum, type, data, maxFileSize: limits.maxFileSize });
    return storeWhole(repo, key, checksum, type, data, limits);
  }
  const it = iterate(source);
  let upload: Upload = { whole: false, prefix: [], it };
  try {
    if (opts.wholeBytes) upload = await readUpTo(it, Math.min(opts.wholeBytes, limits.maxUploadSize));
  } catch (e) {
    release(it, source);
    throw e;
  }
  if (upload.whole) {
    // Verified before anything is written.
    await verify({ checksum, type, data: upload.data, maxFileSize: limits.maxFileSize });
    return storeWhole(repo, key, checksum, type, upload.data, limits);
  }
  // A stream is read once, and replacing a corrupt stored copy needs its bytes: so whether the
  // object is there is asked first (for objects over `wholeBytes`, or every .filez of a PUT).
  if (await isPresent(repo, key)) {
    if (await storedCopySound(repo, key, checksum, type, limits)) {
      release(it, source);
      return { checksum, type, stored: false, bytes: 0 };
    }
  }
  let bytes = 0;
  const at = presence.mark(repo.backend);
  await repo.backend.write(key, verifyingFilez(prefixed(upload.prefix, upload.it), source, name, limits, checksum, (n) => (bytes = n)));
  presence.stored(repo.backend, key, at);
  return { checksum, type, stored: true, bytes };
}

/**
 * Stores an object whose bytes are in hand and verified. `create` (write-once: an S3 PUT with
 * If-None-Match, a link on the filesystem) says whether it was there already, so no request
 * asks that first. When it was, the stored copy is checked with the upload's own checks: sound,
 * nothing to do; corrupt (a flipped byte the scrub has not met yet), these verified bytes replace it.
 */
async function storeWhole(repo: Repo, key: string, checksum: string, type: ObjectType, data: Buffer, limits: IngestLimits): Promise<IngestResult> {
  const at = presence.mark(repo.backend);
  if (!(await repo.backend.create(key, data))) {
    // Not entered in the memo: how old the stored copy is, and so how long gc keeps it, is not known here.
    if (await storedCopySound(repo, key, checksum, type, limits)) return { checksum, type, stored: false, bytes: 0 };
    await repo.backend.write(key, data);
  }
  presence.stored(repo.backend, key, at, type === ObjectType.File ? undefined : data);
  return { checksum, type, stored: true, bytes: data.length };
}

/**
 * Whether the stored copy of an object passes the upload's checks. An upload
 * of an object already present is rare (clients ask which objects are missing
 * first) and needs a push token, so checking it costs no more than the upload.
 */
async function storedCopySound(repo: Repo, key: string, checksum: string, type: ObjectType, limits: IngestLimits): Promise<boolean> {
  try {
    return (await verifyStored(repo, key, checksum, type, limits.maxFileSize)) !== null;
  } catch (e) {
    if (e instanceof CairnError && STORED_DAMAGE.has(e.code)) return false;
    throw e;
  }
}

/** What verifyStored throws for a damaged copy (anything else, an I/O failure say, fails the upload). */
const STORED_DAMAGE: ReadonlySet<string> = new Set(['CHECKSUM_MISMATCH', 'INVALID_GVARIANT', 'INVALID_OBJECT', 'TOO_LARGE']);

/** repo.hasObject, by one blocking stat where the backend has one (a few µs: less than a thread-pool round trip). */
async function isPresent(repo: Repo, key: string): Promise<boolean> {
  const got = repo.backend.statFast(key);
  return (isNow(got) ? got : await got) !== null;
}

/** An upload read up to a limit: whole (it ended within it), or the chunks read so far and the rest to come. */
type Upload = { whole: true; data: Buffer } | { whole: false; prefix: Buffer[]; it: AsyncIterator<Buffer | Uint8Array> };

/** Reads `it` until its end (whole) or until more than `max` bytes came (not whole: those chunks, and the rest). */
async function readUpTo(it: AsyncIterator<Buffer | Uint8Array>, max: number): Promise<Upload> {
  const parts: Buffer[] = [];
  let n = 0;
  for (;;) {
    const step = await it.next();
    if (step.done) return { whole: true, data: parts.length === 1 ? parts[0]! : Buffer.concat(parts, n) };
    const chunk = asBuffer(step.value);
    parts.push(chunk);
    n += chunk.length;
    if (n > max) return { whole: false, prefix: parts, it };
  }
}

/** `prefix`'s chunks, then the rest of `it`; given back (return()) as `it` is. */
function prefixed(prefix: Buffer[], it: AsyncIterator<Buffer | Uint8Array>): AsyncIterator<Buffer | Uint8Array> {
  let i = 0;
  return {
    next: () => (i < prefix.length ? Promise.resolve({ done: false, value: prefix[i++]! }) : it.next()),
    return: (v?: unknown) => (it.return ? it.return(v) : Promise.resolve({ done: true, value: undefined })),
  };
}

/**
 * Who may attach detached metadata (signatures) to a commit. It is not
 * content-addressed, so storing it puts words next to someone else's commit
 * that every client pulling it will read. The rule, kept simple:
 *  1. the commit must be in the repository (uploaded before it: `cairn push`
 *     sends commits in an earlier phase than their .commitmeta, and the
 *     multipart route waits for a commit sent earlier in the same request);
 *  2. if refs already point at the commit, the token must be allowed to move
 *     at least one of them (`mayMoveRef`): it could publish that commit again
 *     anyway. A commit no ref points at yet is a new push: allowed, since
 *     publishing it later needs the token's prefixes like any ref move.
 * Refusals: MISSING_OBJECTS (no such commit, 422) or FORBIDDEN (403).
 */
export async function checkCommitMetaUpload(repo: Repo, commit: string, mayMoveRef: (ref: string) => boolean): Promise<void> {
  await requireCommit(repo, commit);
  const pointing: string[] = [];
  for (const [ref, target] of await repo.listRefs()) if (target === commit) pointing.push(ref);
  if (pointing.length > 0 && !pointing.some(mayMoveRef)) {
    throw new CairnError('FORBIDDEN', `${commit}.commitmeta: this token may not move any ref that points at the commit (${pointing.slice(0, 3).join(', ')})`, {
      object: `${commit}.commitmeta`,
      refs: pointing.slice(0, 100),
    });
  }
}

async function requireCommit(repo: Repo, commit: string): Promise<void> {
  if (presence.get(repo.backend, objectKey(validateChecksum(commit), ObjectType.Commit))) return; // stored by this process moments ago
  if (!(await repo.hasObject(commit, ObjectType.Commit))) {
    throw new CairnError('MISSING_OBJECTS', `${commit}.commitmeta: the commit is not in the repository; upload it first`, {
      object: `${commit}.commitmeta`,
      missing: [`${commit}.commit`],
    });
  }
}

async function readAtMost(source: AsyncIterable<Buffer | Uint8Array>, max: number, name: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of source) {
    n += chunk.length;
    if (n > max) throw new CairnError('TOO_LARGE', `${name}: metadata objects are limited to ${max} bytes`, { object: name });
    parts.push(Buffer.from(chunk));
  }
  return Buffer.concat(parts);
}

/**
 * Passes the upload through to the backend while a verifier inflates and
 * hashes the same bytes; throws (so the backend discards its temporary file)
 * if the verifier fails or the checksum differs.
 *
 * No wait here depends on one side only: a wait for room in the verifier's
 * pipe ends when the verifier gives up, and a wait for the next chunk of the
 * upload ends when the verifier gives up too (a client that sent junk and then
 * stalls is refused at once, not when it goes away). A refused upload's source
 * is left to the caller, not destroyed (destroying an HTTP request's body
 * resets the connection before the 4xx is sent); a readable source is resumed
 * so the rest of it is discarded rather than read into nothing.
 */
async function* verifyingFilez(
  it: AsyncIterator<Buffer | Uint8Array>,
  source: AsyncIterable<Buffer | Uint8Array>,
  name: string,
  limits: IngestLimits,
  expected: string,
  onBytes: (n: number) => void,
): AsyncIterable<Buffer> {
  const pipe = new PassThrough({ highWaterMark: 1024 * 1024 });
  let failure: unknown;
  const verdict = verifyFilez(pipe, { maxSize: limits.maxFileSize }).catch((e: unknown) => {
    failure = e;
    // The verifier reads no more: a writer waiting for the pipe's 'drain' gets its 'close' instead.
    pipe.destroy();
    return null;
  });
  // The verifier is done: before the end of the upload, that can only be a
  // failure. It wakes a wait for the next chunk (one slot, not a reaction per
  // chunk on a promise that settles only at the end: Promise.race's leak).
  let verifierDone = false;
  let wake: (() => void) | undefined;
  void verdict.then(() => {
    verifierDone = true;
    wake?.();
  });
  let sourceDone = false;
  let bytes = 0;
  // What goes to the temporary file is gathered into writes of ~1 MiB, not one per network chunk
  // of ~64 KiB: each write is a round trip through libuv's thread pool, shared with every fsync.
  let held: Buffer[] = [];
  let heldBytes = 0;
  const takeHeld = () => {
    const out = held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes);
    held = [];
    heldBytes = 0;
    return out;
  };
  try {
    for (;;) {
      const step = await new Promise<IteratorResult<Buffer | Uint8Array> | typeof VERIFIER_DONE>((resolve, reject) => {
        if (verifierDone) return resolve(VERIFIER_DONE);
        wake = () => resolve(VERIFIER_DONE);
        it.next().then(resolve, reject); // once woken, the source answers whenever: nobody waits for it
      });
      wake = undefined;
      if (step === VERIFIER_DONE) break;
      if (step.done) {
        sourceDone = true;
        break;
      }
      const chunk = asBuffer(step.value);
      bytes += chunk.length;
      if (bytes > limits.maxUploadSize) throw new CairnError('TOO_LARGE', `${name}: upload exceeds ${limits.maxUploadSize} bytes`, { object: name });
      if (failure) break;
      if (!pipe.write(chunk)) await room(pipe);
      if (failure) break;
      held.push(chunk);
      heldBytes += chunk.length;
      if (heldBytes >= WRITE_BYTES) yield takeHeld();
    }
    if (!sourceDone) throw withObject(failure, name);
    pipe.end();
    const result = await verdict;
    if (failure || !result) throw withObject(failure, name);
    if (result.checksum !== expected) {
      throw new CairnError('CHECKSUM_MISMATCH', `${name}: content hashes to ${result.checksum}`, { object: name, actual: result.checksum });
    }
    if (heldBytes > 0) yield takeHeld();
    onBytes(bytes);
  } finally {
    if (!pipe.writableEnded) pipe.destroy();
    if (!sourceDone) release(it, source);
  }
}

const VERIFIER_DONE = Symbol('verifier done');
/** Bytes a streamed object's temporary file is written in at a time. */
const WRITE_BYTES = 1024 * 1024;
const noop = (): void => undefined;

function asBuffer(b: Buffer | Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** A readable stream's iterator that leaves the stream alive when given back (return()); any other source's own. */
function iterate(source: AsyncIterable<Buffer | Uint8Array>): AsyncIterator<Buffer | Uint8Array> {
  if (source instanceof Readable) return source.iterator({ destroyOnReturn: false });
  return source[Symbol.asyncIterator]();
}

/**
 * Stops reading a source before its end without waiting for it (a pending
 * read may wait on a stalled client) and without destroying it; a readable
 * stream is then resumed, its remaining bytes discarded as they come.
 */
function release(it: AsyncIterator<Buffer | Uint8Array>, source: AsyncIterable<Buffer | Uint8Array>): void {
  void Promise.resolve()
    .then(() => it.return?.())
    .catch(noop)
    .then(() => {
      if (source instanceof Readable && !source.destroyed) source.resume();
    });
}

/** Resolves when `s` takes more input, or when it is closed (destroyed: no 'drain' will come). */
function room(s: PassThrough): Promise<void> {
  return new Promise<void>((resolve) => {
    if (s.destroyed || !s.writableNeedDrain) return resolve();
    const done = () => {
      s.off('drain', done);
      s.off('close', done);
      resolve();
    };
    s.once('drain', done);
    s.once('close', done);
  });
}
