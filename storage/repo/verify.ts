import { CairnError, type ErrorCode } from '../errors';
import { sha256Hex } from '../objects/checksum';
import { verifyFilez, verifyFilezBytes } from '../objects/filez';
import { ARCHIVE_EXTENSION, MAX_METADATA_SIZE, ObjectType } from '../objects/types';
import { validateMetadataObject, type Repo } from './repo';

/** One uploaded object, whole in memory, to be checked against its name. */
export interface VerifyJob {
  checksum: string;
  /** Commit, dirtree, dirmeta or file (`.filez`). Detached metadata is not content-addressed: its own path. */
  type: ObjectType;
  data: Buffer;
  /** Largest uncompressed file a `.filez` may declare (IngestLimits.maxFileSize). */
  maxFileSize: number;
}

/** Object types verifyObject decides about. */
export const VERIFIABLE_TYPES: ReadonlySet<ObjectType> = new Set([ObjectType.Commit, ObjectType.DirTree, ObjectType.DirMeta, ObjectType.File]);

/**
 * The one decision whether an uploaded object is what its name says, the same
 * on the request's thread and in a verification thread (storage/repo/verify-pool.ts):
 *  - metadata: normal-form, structurally valid GVariant that hashes to `checksum`;
 *  - `.filez`: a valid archive header, content that inflates to exactly the
 *    declared size (at most maxFileSize; a bomb stops one byte past it) with
 *    nothing after the deflate stream, and a content checksum equal to `checksum`.
 * Resolves when it is; throws the CairnError a refusal answers with otherwise.
 * The errors are those of the streaming checks (ingest.ts, objects/filez.ts).
 */
export async function verifyObject(job: VerifyJob): Promise<void> {
  const name = `${job.checksum}.${ARCHIVE_EXTENSION[job.type]}`;
  if (job.type === ObjectType.File) {
    let actual: string;
    try {
      actual = (await verifyFilezBytes(job.data, { maxSize: job.maxFileSize })).checksum;
    } catch (e) {
      throw withObject(e, name);
    }
    if (actual !== job.checksum) throw new CairnError('CHECKSUM_MISMATCH', `${name}: content hashes to ${actual}`, { object: name, actual });
    return;
  }
  if (!VERIFIABLE_TYPES.has(job.type)) throw new CairnError('INVALID_ARGUMENT', `${name}: not a content-addressed object`);
  validateMetadataObject(job.type, job.data);
  const actual = sha256Hex(job.data);
  if (actual !== job.checksum) throw new CairnError('CHECKSUM_MISMATCH', `${name}: bytes hash to ${actual}`, { object: name, actual });
}

/** A refusal of a `.filez`, named: the code and details kept, the object's name added. */
export function withObject(e: unknown, name: string): CairnError {
  if (e instanceof CairnError) return new CairnError(e.code, `${name}: ${e.message}`, { ...e.details, object: name });
  return new CairnError('INVALID_OBJECT', `${name}: ${(e as Error)?.message ?? 'invalid content object'}`, { object: name });
}

/** A verdict as it crosses between threads (structured clone keeps no class). */
export type Verdict = { ok: true } | { ok: false; error: { code: ErrorCode; message: string; details?: Record<string, unknown> } | { internal: string } };

/** verifyObject's outcome as a Verdict (a worker thread's answer). */
export async function verdictOf(job: VerifyJob): Promise<Verdict> {
  try {
    await verifyObject(job);
    return { ok: true };
  } catch (e) {
    if (e instanceof CairnError) return { ok: false, error: { code: e.code, message: e.message, details: e.details } };
    return { ok: false, error: { internal: e instanceof Error ? e.message : String(e) } };
  }
}

/** Throws what a Verdict says (the same CairnError verifyObject threw), or returns. */
export function settle(v: Verdict): void {
  if (v.ok) return;
  if ('internal' in v.error) throw new Error(`verification failed: ${v.error.internal}`);
  throw new CairnError(v.error.code, v.error.message, v.error.details);
}

/** .filez over this are verified from a stream, never read whole. */
const STORED_WHOLE_BYTES = 4 * 1024 * 1024;

/**
 * Checks one stored object with the upload's own checks (fsck, the scrub, and
 * an upload of an object already present use it): its size, or null when it
 * is gone. Throws what is wrong with it (CHECKSUM_MISMATCH, INVALID_*,
 * TOO_LARGE); detached metadata and tombstones are only checked for form.
 */
export async function verifyStored(repo: Repo, key: string, checksum: string, type: ObjectType, maxFileSize: number): Promise<number | null> {
  const info = await repo.backend.stat(key);
  if (!info) return null;
  if (type === ObjectType.File && info.size > STORED_WHOLE_BYTES) {
    const opened = await repo.backend.openRead(key);
    if (!opened) return null;
    let actual: string;
    try {
      actual = (await verifyFilez(opened.stream, { maxSize: maxFileSize })).checksum;
    } finally {
      opened.stream.destroy();
    }
    if (actual !== checksum) throw new CairnError('CHECKSUM_MISMATCH', `content hashes to ${actual}`);
    return opened.info.size;
  }
  if (type !== ObjectType.File && info.size > MAX_METADATA_SIZE) throw new CairnError('TOO_LARGE', `metadata object of ${info.size} bytes (the limit is ${MAX_METADATA_SIZE})`);
  const got = await repo.backend.read(key);
  if (!got) return null;
  if (type === ObjectType.CommitMeta || type === ObjectType.TombstoneCommit) validateMetadataObject(type, got.data);
  else await verifyObject({ checksum, type, data: got.data, maxFileSize });
  // verifyObject is synchronous for small objects: let other work in.
  await new Promise<void>((r) => setImmediate(r));
  return got.data.length;
}
