import { createHash, randomBytes } from 'node:crypto';
import * as os from 'node:os';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type GetObjectCommandOutput,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { CairnError, insufficientStorage } from '../errors';
import { type Backend, type BlobInfo, type BlobReader, type ByteRange, eachLimit, type HeldLock, lockLost, type PreparedWrite, type WriteSource, validateKey } from './backend';

/**
 * The S3 driver: one repository is the objects below `s3://BUCKET/PREFIX/` of
 * an S3-compatible store (Ceph RADOS Gateway, MinIO, AWS S3); a key `K` of
 * the Backend interface is the object `PREFIX/K`. Tested against a real Ceph
 * RGW (scripts/ceph-up.sh; test/unit/backend-conformance-s3.test.ts).
 *
 * - A blob's `version` is its ETag without quotes (the MD5 of its bytes for a
 *   single PUT, `md5-of-part-md5s-N` for a multipart upload): it changes
 *   whenever the bytes change; `mtimeMs` is its Last-Modified (whole seconds).
 * - `write` replaces atomically (S3 PUTs and multipart completions are
 *   atomic). Up to `partSize` bytes go in one PUT with `Content-MD5` (the
 *   store refuses bytes that do not match); a longer stream goes as a
 *   multipart upload, one part in memory at a time, each part with its
 *   `Content-MD5`, and after completion the object's ETag and size are
 *   checked against the digests computed here (`x-amz-checksum-*` headers are
 *   ignored by RGW). A failed source aborts the upload: nothing is visible.
 * - `create` writes a key only if absent (`If-None-Match: *`, atomic: one
 *   winner among concurrent creators): for content-addressed files. A
 *   multipart create (over `partSize`) is a HEAD then an upload, since RGW
 *   ignores the condition on multipart completion: two creators of one
 *   content-addressed key then both write the same bytes, which is harmless.
 * - `compareAndSwap` replaces a key only if its version is still `expected`
 *   (`If-Match` with the ETag unquoted, as RGW wants it), or creates it only
 *   if absent (`expected` null): for refs, summary and every mutable file.
 * - `lock` is a lease held in an object (see S3Backend.lock for the bound).
 * - The ETag checks assume ETags are MD5 digests, as RGW, MinIO and AWS S3
 *   without SSE-KMS/SSE-C make them.
 * - `openReader` reads ranges pinned to the version it opened (`If-Match`):
 *   when the key is replaced meanwhile, the next read fails with `CONFLICT`
 *   instead of returning bytes of another version (S3 keeps no old version
 *   without bucket versioning). `openRead` is one GET: one version.
 * - `list` pages through ListObjectsV2 (1000 keys a page, url-encoded keys).
 * - There are no folders: `remove` deletes one object, `ensurePrefixes` does nothing.
 * - `removeMany` sends DeleteObjects requests of up to 1,000 keys (S3's
 *   limit; RGW refuses 1,001 with 400), quiet, DELETE_PARALLEL at once, and
 *   fails with IO naming the keys of any `Errors` entry (absent keys are no
 *   error: S3 reports none, `NoSuchKey` is taken as gone). The body goes
 *   with the SDK's default request checksum (`x-amz-checksum-crc32`: AWS S3
 *   wants one, or a Content-MD5); Ceph RGW 16.2 (Debian's) checks neither,
 *   takes a request with none and one with a wrong one alike, but does check
 *   the SigV4 payload hash (a body changed after signing: 400
 *   XAmzContentSHA256Mismatch), so the list it acts on is the one signed.
 */

/** `s3://BUCKET/PREFIX` split; `prefix` is '' or ends with '/'. */
export interface S3Location {
  bucket: string;
  prefix: string;
}

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Parses `s3://BUCKET[/PREFIX[/]]`; the prefix is validated like a key. */
export function parseS3Url(url: string): S3Location {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (!m || !BUCKET_NAME.test(m[1]!)) throw new CairnError('INVALID_ARGUMENT', `not an S3 location (s3://BUCKET/PREFIX): ${url.slice(0, 200)}`);
  const rest = (m[2] ?? '').replace(/\/+$/, '');
  if (rest !== '') validateKey(rest);
  return { bucket: m[1]!, prefix: rest === '' ? '' : `${rest}/` };
}

export interface S3ClientSettings {
  /** `CAIRN_S3_ENDPOINT`: the store's URL (path-style addressing is used then); AWS S3 itself when absent. */
  endpoint?: string;
  /** `AWS_REGION` / `AWS_DEFAULT_REGION`, default us-east-1. */
  region?: string;
  /** Explicit credentials; otherwise the SDK's standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles, roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

/** The settings of `cairn serve --storage s3://…` from the environment. */
export function s3SettingsFromEnv(env: NodeJS.ProcessEnv = process.env): S3ClientSettings {
  return {
    endpoint: env.CAIRN_S3_ENDPOINT || undefined,
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined,
  };
}

/**
 * An S3 client as this driver needs it. Checksums only when an operation
 * requires them: RGW ignores `x-amz-checksum-*`, and streamed uploads with
 * the SDK's default (trailing checksums, chunked encoding) fail with 411.
 */
export function makeS3Client(s: S3ClientSettings): S3Client {
  // The SDK release is pinned in package.json (later ones need Node 22): its
  // notice that later releases will need Node 22 is not for operators.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return new S3Client({
    endpoint: s.endpoint,
    forcePathStyle: s.endpoint !== undefined,
    region: s.region ?? 'us-east-1',
    credentials: s.credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: 10_000, requestTimeout: 120_000 },
  });
}

export interface S3BackendOptions {
  /** Largest object written in one PUT, and the part size of multipart uploads (default 8 MiB; S3's minimum is 5 MiB). */
  partSize?: number;
  /** A lock's lease (default 30 s; renewed every third of it). */
  lockLeaseMs?: number;
  /** How long lock() waits before failing with IO (default 120 s, as the filesystem's locks). */
  lockTimeoutMs?: number;
}

const MIN_PART = 5 * 1024 * 1024;
const MAX_PARTS = 10_000;
const TEMP_PREFIX = 'tmp/cairn-s3-';
const TEMP_NAME = /^tmp\/cairn-s3-\d{13}-[0-9a-f]{16}\.tmp$/;
const LOCK_NAME = /^[a-z0-9-]{1,64}$/;
/** Keys of one DeleteObjects request: S3's limit. */
const DELETE_BATCH = 1000;
/** DeleteObjects requests (or single DELETEs) in flight at once in removeMany. */
const DELETE_PARALLEL = 4;
/**
 * What XML 1.0 cannot carry even escaped (a DeleteObjects body; RGW answers such a request 400, deleting
 * nothing): a key holding one is deleted by itself (its name goes in the URL, as remove's).
 */
const NOT_XML = /[\x01-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

interface SdkError {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}
const statusOf = (e: unknown): number | undefined => (e as SdkError)?.$metadata?.httpStatusCode;
const nameOf = (e: unknown): string => (e as SdkError)?.name ?? (e as SdkError)?.Code ?? String(e);
const isNotFound = (e: unknown): boolean => statusOf(e) === 404 || nameOf(e) === 'NoSuchKey' || nameOf(e) === 'NotFound';
/** A lost condition: 412, or 409 (AWS's ConditionalRequestConflict for a concurrent conditional write). */
const isPrecondition = (e: unknown): boolean => statusOf(e) === 412 || nameOf(e) === 'PreconditionFailed' || nameOf(e) === 'ConditionalRequestConflict';

const unquote = (etag: string | undefined): string => (etag ?? '').replace(/^W\//, '').replace(/"/g, '');
const md5 = (b: Uint8Array): Buffer => createHash('md5').update(b).digest();

/**
 * A store whose blobs a client can fetch itself, by a URL that carries a
 * short-lived permission of its own (an S3 presigned GET): what the read
 * path redirects to instead of streaming the bytes (cairn serve
 * --s3-redirect). Kept out of Backend: `presignedReads` is the one place that
 * says which stores have it.
 */
export interface PresignedReads {
  /**
   * A URL that GETs `key` as it is when fetched (Range honoured), valid for
   * `expiresSec` seconds from now, on `endpoint` (the host clients reach the
   * store by; default the store's own endpoint). Nothing is asked of the store:
   * whether the key exists is the caller's business.
   */
  presignGet(key: string, expiresSec: number, endpoint?: string): Promise<string>;
}

/** The presigned reads of `b`, or null when its blobs can only be read through Cairn (a folder). */
export function presignedReads(b: Backend): PresignedReads | null {
  return b instanceof S3Backend ? b : null;
}

/** SigV4 presigned URLs live at most 7 days. */
export const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

/** Presigning clients for other endpoints than the store's own, per store client and endpoint (they share its region and credentials). */
const presigners = new WeakMap<S3Client, Map<string, S3Client>>();

function presignerFor(client: S3Client, endpoint: string): S3Client {
  let m = presigners.get(client);
  if (!m) presigners.set(client, (m = new Map()));
  let c = m.get(endpoint);
  if (!c) {
    c = new S3Client({
      endpoint,
      forcePathStyle: true,
      region: client.config.region,
      credentials: client.config.credentials,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    if (m.size >= 16) m.clear();
    m.set(endpoint, c);
  }
  return c;
}

export class S3Backend implements Backend, PresignedReads {
  readonly location: string;
  private readonly partSize: number;
  private readonly leaseMs: number;
  private readonly lockTimeoutMs: number;

  constructor(
    private readonly client: S3Client,
    readonly bucket: string,
    /** '' or ending with '/'. */
    readonly prefix: string,
    opts: S3BackendOptions = {},
  ) {
    if (prefix !== '' && (!prefix.endsWith('/') || validateKey(prefix.slice(0, -1)) === '')) throw new CairnError('INVALID_ARGUMENT', 'S3 prefix must end with /');
    this.location = `s3://${bucket}/${prefix}`;
    this.partSize = Math.max(MIN_PART, opts.partSize ?? 8 * 1024 * 1024);
    this.leaseMs = opts.lockLeaseMs ?? 30_000;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 120_000;
  }

  private objectKey(key: string): string {
    return this.prefix + validateKey(key);
  }

  private ioError(e: unknown, key: string): CairnError {
    if (e instanceof CairnError) return e;
    const name = nameOf(e);
    if (name === 'QuotaExceeded' || name === 'InsufficientCapacity') return insufficientStorage(key);
    return new CairnError('IO', `storage error on ${key}: ${name}${statusOf(e) ? ` (${statusOf(e)})` : ''}`, { path: key });
  }

  private infoOf(o: { ContentLength?: number; LastModified?: Date; ETag?: string }, size?: number): BlobInfo {
    return { size: size ?? o.ContentLength ?? 0, mtimeMs: o.LastModified?.getTime() ?? 0, version: unquote(o.ETag) };
  }

  async stat(key: string): Promise<BlobInfo | null> {
    const Key = this.objectKey(key);
    try {
      return this.infoOf(await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key })));
    } catch (e) {
      if (isNotFound(e)) return null;
      throw this.ioError(e, key);
    }
  }

  /** Remote storage: statFast/readFast are promises of stat/read. */
  readonly blocking = false;

  statFast(key: string): Promise<BlobInfo | null> {
    return this.stat(key);
  }

  readFast(key: string): Promise<{ data: Buffer; info: BlobInfo } | null> {
    return this.read(key);
  }

  /**
   * A new Last-Modified, bytes unchanged: the object copied onto itself with
   * replaced metadata (S3 refuses a self-copy that changes nothing). Absent
   * is not an error. (A copy is limited to 5 GiB by S3.)
   */
  async touch(key: string): Promise<void> {
    const Key = this.objectKey(key);
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key,
          CopySource: `${this.bucket}/${encodeKey(Key)}`,
          MetadataDirective: 'REPLACE',
          Metadata: { 'cairn-touched': String(Date.now()) },
        }),
      );
    } catch (e) {
      if (isNotFound(e)) return;
      throw this.ioError(e, key);
    }
  }

  async presignGet(key: string, expiresSec: number, endpoint?: string): Promise<string> {
    if (!Number.isInteger(expiresSec) || expiresSec < 1 || expiresSec > MAX_PRESIGN_SECONDS) throw new CairnError('INVALID_ARGUMENT', `presigned URL expiry must be 1-${MAX_PRESIGN_SECONDS} s`);
    const Key = this.objectKey(key);
    const client = endpoint === undefined ? this.client : presignerFor(this.client, endpoint);
    try {
      return await getSignedUrl(client, new GetObjectCommand({ Bucket: this.bucket, Key }), { expiresIn: expiresSec });
    } catch (e) {
      throw this.ioError(e, key);
    }
  }

  async read(key: string): Promise<{ data: Buffer; info: BlobInfo } | null> {
    const Key = this.objectKey(key);
    try {
      const o = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      const data = o.Body ? Buffer.from(await o.Body.transformToByteArray()) : Buffer.alloc(0);
      return { data, info: this.infoOf(o, data.length) };
    } catch (e) {
      if (isNotFound(e)) return null;
      throw this.ioError(e, key);
    }
  }

  async openRead(key: string, range?: ByteRange): Promise<{ stream: Readable; info: BlobInfo } | null> {
    const Key = this.objectKey(key);
    let o: GetObjectCommandOutput;
    try {
      o = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, Range: range ? `bytes=${range.start}-${range.end}` : undefined }));
    } catch (e) {
      if (isNotFound(e)) return null;
      if (range && statusOf(e) === 416) return this.openReadPastEnd(key, range);
      throw this.ioError(e, key);
    }
    const total = /\/(\d+)$/.exec(o.ContentRange ?? '');
    const info = this.infoOf(o, total ? Number(total[1]) : o.ContentLength);
    const body = o.Body as Readable | undefined;
    return { stream: body ?? Readable.from([]), info };
  }

  /** A range starting at or past the end (416 from the store): the filesystem's answer, no bytes, with the blob's info. */
  private async openReadPastEnd(key: string, range: ByteRange): Promise<{ stream: Readable; info: BlobInfo } | null> {
    const whole = await this.read(key); // a blob shorter than range.start: small, or replaced since
    if (!whole) return null;
    return { stream: Readable.from(range.start < whole.data.length ? [whole.data.subarray(range.start, range.end + 1)] : []), info: whole.info };
  }

  async openReader(key: string): Promise<BlobReader | null> {
    const info = await this.stat(key);
    if (!info) return null;
    const Key = this.prefix + key;
    let closed = false;
    return {
      info,
      read: async (buffer, length, position) => {
        if (closed) throw new CairnError('INVALID_ARGUMENT', 'reader closed');
        const end = Math.min(position + length, info.size);
        if (length <= 0 || position >= end) return 0;
        try {
          const o = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, Range: `bytes=${position}-${end - 1}`, IfMatch: info.version }));
          const bytes = o.Body ? await o.Body.transformToByteArray() : new Uint8Array(0);
          buffer.set(bytes.subarray(0, length), 0);
          return Math.min(bytes.length, length);
        } catch (e) {
          if (isPrecondition(e) || isNotFound(e)) throw new CairnError('CONFLICT', `${key} changed while it was read`, { path: key });
          throw this.ioError(e, key);
        }
      },
      close: async () => {
        closed = true;
      },
    };
  }

  async write(key: string, data: WriteSource): Promise<void> {
    await this.put(key, data, {});
  }

  /**
   * Writes `key` only if it does not exist (content-addressed files): true
   * when this call created it, false when it was there already (its bytes
   * untouched).
   */
  async create(key: string, data: WriteSource): Promise<boolean> {
    return (await this.put(key, data, { create: true })) !== null;
  }

  /**
   * Replaces `key` only if its version is still `expected` (null: only if
   * absent). Returns the new version, or null when the condition failed
   * (another writer changed the key first; nothing was written).
   */
  async compareAndSwap(key: string, data: Buffer, expected: string | null): Promise<string | null> {
    return this.put(key, data, expected === null ? { create: true } : { ifMatch: expected });
  }

  /** One PUT, or a multipart upload for more than partSize; returns the new version, null when a condition failed. */
  private async put(key: string, data: WriteSource, cond: { create?: boolean; ifMatch?: string }): Promise<string | null> {
    const Key = this.objectKey(key);
    if (Buffer.isBuffer(data) && (data.length <= this.partSize || cond.ifMatch !== undefined)) return this.putOne(key, Key, data, cond);
    // A stream (or a large buffer): read up to one part; a short one is a single PUT.
    const parts = new PartReader(data);
    let first: { part: Buffer; done: boolean };
    try {
      first = await parts.next(this.partSize);
    } catch (e) {
      throw this.ioError(e, key); // the source failed: nothing was sent
    }
    if (first.done) return this.putOne(key, Key, first.part, cond);
    if (cond.ifMatch !== undefined || (cond.create && (await this.stat(key)))) {
      await parts.close();
      if (cond.ifMatch !== undefined) throw new CairnError('TOO_LARGE', `compare-and-swap of ${key}: over ${this.partSize} bytes`);
      return null;
    }
    return this.putMultipart(key, Key, first.part, parts);
  }

  private async putOne(key: string, Key: string, body: Buffer, cond: { create?: boolean; ifMatch?: string }): Promise<string | null> {
    const digest = md5(body);
    // A conditional PUT carries an id of its own, so that a retry's failed
    // condition can tell our write from another writer's of the same bytes.
    const conditional = cond.create === true || cond.ifMatch !== undefined;
    const writeId = conditional ? randomBytes(12).toString('hex') : undefined;
    try {
      const o = await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key,
          Body: body,
          ContentLength: body.length,
          ContentMD5: digest.toString('base64'),
          IfNoneMatch: cond.create ? '*' : undefined,
          IfMatch: cond.ifMatch,
          Metadata: writeId ? { [WRITE_ID_META]: writeId } : undefined,
        }),
      );
      const etag = unquote(o.ETag);
      if (etag !== '' && etag !== digest.toString('hex')) throw new CairnError('IO', `storage error on ${key}: the store's ETag ${etag} is not the MD5 of the bytes sent`, { path: key });
      return etag || digest.toString('hex');
    } catch (e) {
      if ((cond.create || cond.ifMatch !== undefined) && isPrecondition(e)) {
        // The SDK retries a request whose answer was lost: a conditional PUT that
        // did succeed then fails its own retry's condition. The object holding
        // this write's id (not merely the same bytes: another writer's
        // identical bytes would be a lost update) means this write landed.
        if (((e as { $metadata?: { attempts?: number } }).$metadata?.attempts ?? 1) > 1) {
          const now = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key })).catch((he: unknown) => {
            if (isNotFound(he)) return null;
            throw he;
          });
          if (now && now.Metadata?.[WRITE_ID_META] === writeId && unquote(now.ETag) === digest.toString('hex')) return unquote(now.ETag);
        }
        return null;
      }
      throw this.ioError(e, key);
    }
  }

  private async putMultipart(key: string, Key: string, first: Buffer, parts: PartReader): Promise<string> {
    let uploadId: string | undefined;
    try {
      uploadId = (await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key }))).UploadId;
      if (!uploadId) throw new CairnError('IO', `storage error on ${key}: no upload id`);
      const done: Array<{ ETag: string; PartNumber: number }> = [];
      const digests: Buffer[] = [];
      let size = 0;
      let part: Buffer | null = first;
      for (let n = 1; part; n++) {
        if (n > MAX_PARTS) throw new CairnError('TOO_LARGE', `${key}: more than ${MAX_PARTS} parts`);
        const d = md5(part);
        const o = await this.client.send(
          new UploadPartCommand({ Bucket: this.bucket, Key, UploadId: uploadId, PartNumber: n, Body: part, ContentLength: part.length, ContentMD5: d.toString('base64') }),
        );
        if (unquote(o.ETag) !== d.toString('hex')) throw new CairnError('IO', `storage error on ${key}: part ${n}'s ETag is not the MD5 of its bytes`, { path: key });
        done.push({ ETag: `"${d.toString('hex')}"`, PartNumber: n });
        digests.push(d);
        size += part.length;
        const next = await parts.next(this.partSize);
        part = next.part.length > 0 ? next.part : null;
      }
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId: uploadId, MultipartUpload: { Parts: done } }));
      uploadId = undefined;
      // RGW answers completion with an empty ETag: check the object itself.
      const expected = `${md5(Buffer.concat(digests)).toString('hex')}-${done.length}`;
      const info = await this.stat(key);
      if (!info || info.size !== size || info.version !== expected) {
        // Either another writer replaced the key at once (then its bytes are whole too) or the store lost ours.
        throw new CairnError('IO', `storage error on ${key}: after the upload the object is ${info ? `${info.size} bytes, ETag ${info.version}` : 'absent'}, not ${size} bytes, ETag ${expected}`, { path: key });
      }
      return expected;
    } catch (e) {
      await parts.close().catch(() => {});
      if (uploadId) await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId: uploadId })).catch(() => {});
      throw this.ioError(e, key);
    }
  }

  /**
   * The bytes go to a temporary object (tmp/cairn-s3-<ms>-<hex>.tmp) now;
   * commit() copies it over the key on the store's side (atomic) and removes
   * it, discard() removes it. A crash leaves the temporary object for sweep().
   */
  async prepare(key: string, data: WriteSource): Promise<PreparedWrite> {
    const Key = this.objectKey(key);
    const tmp = `${TEMP_PREFIX}${Date.now()}-${randomBytes(8).toString('hex')}.tmp`;
    await this.write(tmp, data);
    let done = false;
    return {
      commit: async () => {
        if (done) throw new CairnError('INVALID_ARGUMENT', `write of ${key} already committed or discarded`);
        done = true;
        try {
          await this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key, CopySource: `${this.bucket}/${encodeKey(this.prefix + tmp)}` }));
        } catch (e) {
          throw this.ioError(e, key);
        } finally {
          await this.remove(tmp).catch(() => {});
        }
      },
      discard: async () => {
        if (done) return;
        done = true;
        await this.remove(tmp).catch(() => {});
      },
    };
  }

  async remove(key: string): Promise<void> {
    const Key = this.objectKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (e) {
      if (isNotFound(e)) return;
      throw this.ioError(e, key);
    }
  }

  /** See the class comment: DeleteObjects, 1,000 keys a request; every `Errors` entry fails the call. */
  async removeMany(keys: readonly string[]): Promise<void> {
    const objects = [...new Set(keys.map((k) => this.objectKey(k)))]; // every key validated before anything goes
    const batched = objects.filter((k) => !NOT_XML.test(k));
    const chunks: string[][] = [];
    for (let i = 0; i < batched.length; i += DELETE_BATCH) chunks.push(batched.slice(i, i + DELETE_BATCH));
    await eachLimit(chunks, DELETE_PARALLEL, (c) => this.deleteObjects(c));
    await eachLimit(
      objects.filter((k) => NOT_XML.test(k)),
      DELETE_PARALLEL,
      (k) => this.remove(k.slice(this.prefix.length)),
    );
  }

  /** One DeleteObjects request (quiet: only failures are listed) for up to DELETE_BATCH object keys. */
  private async deleteObjects(objectKeys: string[]): Promise<void> {
    const keyOf = (k: string | undefined): string => (k ?? '').slice(this.prefix.length);
    let out;
    try {
      out = await this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: objectKeys.map((Key) => ({ Key })), Quiet: true } }));
    } catch (e) {
      const err = this.ioError(e, keyOf(objectKeys[0]));
      throw err.code === 'IO' ? new CairnError('IO', `${err.message} (deleting it and ${objectKeys.length - 1} more keys in one request)`, err.details) : err;
    }
    const failed = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
    if (failed.length > 0) {
      const first = keyOf(failed[0]!.Key);
      throw new CairnError('IO', `storage error on ${first}: ${failed[0]!.Code ?? 'not deleted'}${failed.length > 1 ? ` (${failed.length} of ${objectKeys.length} keys not deleted)` : ''}`, {
        path: first,
        failed: failed.slice(0, 100).map((e) => ({ key: keyOf(e.Key), code: e.Code ?? '' })),
      });
    }
  }

  async ensurePrefixes(prefixes: string[]): Promise<void> {
    for (const p of prefixes) validateKey(p);
  }

  async *list(prefix: string): AsyncIterable<string> {
    for await (const o of this.listObjects(prefix)) yield o.key;
  }

  /** The names directly below `sub` that have objects below them (S3 common prefixes, delimiter '/'). */
  async children(sub: string): Promise<string[]> {
    const Prefix = `${this.prefix}${validateKey(sub)}/`;
    const out: string[] = [];
    let ContinuationToken: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix, Delimiter: '/', ContinuationToken, EncodingType: 'url' }));
      } catch (e) {
        throw this.ioError(e, sub);
      }
      for (const c of page.CommonPrefixes ?? []) {
        const k = decodeURIComponent((c.Prefix ?? '').replace(/\+/g, ' '));
        if (k.startsWith(Prefix) && k.endsWith('/') && k.length > Prefix.length + 1) out.push(k.slice(Prefix.length, -1));
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
    return out;
  }

  /** Every object below `prefix` with its size and date, a page (1000) at a time. */
  private async *listObjects(prefix: string): AsyncIterable<{ key: string; size: number; mtimeMs: number }> {
    const p = prefix.replace(/\/$/, '');
    const Prefix = p === '' ? this.prefix : `${this.prefix}${validateKey(p)}/`;
    let ContinuationToken: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix, ContinuationToken, EncodingType: 'url' }));
      } catch (e) {
        throw this.ioError(e, prefix || '/');
      }
      for (const c of page.Contents ?? []) {
        // encoding-type=url: AWS writes a space as '+', RGW as %20; both write '+' as %2B.
        const key = decodeURIComponent((c.Key ?? '').replace(/\+/g, ' '));
        if (key.startsWith(this.prefix) && key.length > this.prefix.length) yield { key: key.slice(this.prefix.length), size: c.Size ?? 0, mtimeMs: c.LastModified?.getTime() ?? 0 };
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  /**
   * Temporary objects of prepared writes older than `graceMs` (default 1 h),
   * and multipart uploads below the prefix begun that long ago (a writer
   * that died mid-upload).
   */
  async sweep(opts: { graceMs?: number } = {}): Promise<string[]> {
    const grace = opts.graceMs ?? 60 * 60_000;
    const now = Date.now();
    const removed: string[] = [];
    for await (const o of this.listObjects('tmp')) {
      if (!TEMP_NAME.test(o.key) || now - o.mtimeMs <= grace) continue;
      await this.remove(o.key);
      removed.push(`removed temporary object ${o.key} (${Math.round((now - o.mtimeMs) / 1000)} s old)`);
    }
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    do {
      const page = await this.client
        .send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix, KeyMarker, UploadIdMarker }))
        .catch((e: unknown) => {
          throw this.ioError(e, 'multipart uploads');
        });
      for (const u of page.Uploads ?? []) {
        const age = now - (u.Initiated?.getTime() ?? now);
        if (age <= grace || !u.Key || !u.UploadId) continue;
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId })).catch(() => {});
        removed.push(`aborted multipart upload of ${u.Key.slice(this.prefix.length)} (${Math.round(age / 1000)} s old)`);
      }
      KeyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      UploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (KeyMarker);
    return removed;
  }

  /**
   * The repository-wide lock `name` across every process and machine sharing
   * the bucket: an object `tmp/cairn-NAME.lock` holding the holder's record,
   * changed only by compare-and-swap. Taken when absent (`If-None-Match: *`),
   * released or stale (`If-Match` on the version seen); released by writing
   * a released record (`If-Match` on the holder's version: S3 has no
   * conditional delete, and RGW ignores If-Match on DELETE), so the object
   * stays. The holder renews its record every third of the lease. A waiter
   * judges staleness by its own clock only (no clock comparison between
   * machines): a record whose version has not changed for a whole lease
   * while the waiter watched is stale, and the waiter takes it over.
   *
   * The bound: a holder whose renewals are all delayed for longer than the
   * lease (30 s by default: a process paused or cut off from the store that
   * long) can lose the lock while it still runs its critical section, so for
   * at most the rest of that section two holders may overlap. Writes that must
   * not be lost are therefore compare-and-swap writes themselves (refs,
   * summary); the lock orders writers, it does not replace the conditions.
   * A holder that finds its lease taken stops renewing, and its release
   * changes nothing.
   */
  async lock(name: string): Promise<HeldLock> {
    if (!LOCK_NAME.test(name)) throw new CairnError('INVALID_ARGUMENT', `invalid lock name ${name.slice(0, 80)}`);
    const key = `tmp/cairn-${name}.lock`;
    const me = { host: os.hostname(), pid: process.pid, token: randomBytes(8).toString('hex') };
    const record = (seq: number, state: 'held' | 'released'): Buffer => Buffer.from(JSON.stringify({ ...me, state, seq, leaseMs: this.leaseMs, at: new Date().toISOString() }) + '\n');
    const deadline = Date.now() + this.lockTimeoutMs;
    let seen: { version: string; since: number } | undefined;
    let wait = 20;
    let version: string | null = null;
    for (;;) {
      const cur = await this.read(key);
      let state: string | undefined;
      if (cur) {
        try {
          state = (JSON.parse(cur.data.toString('utf8')) as { state?: string }).state;
        } catch {
          state = undefined; // unreadable: stale after a lease like any other
        }
      }
      const now = Date.now();
      if (cur && cur.info.version !== seen?.version) seen = { version: cur.info.version, since: now };
      if (!cur) version = await this.compareAndSwap(key, record(0, 'held'), null);
      else if (state === 'released' || now - seen!.since >= this.leaseMs) version = await this.compareAndSwap(key, record(0, 'held'), cur.info.version);
      if (version !== null) break;
      if (now > deadline) throw new CairnError('IO', `timed out waiting for lock ${name}`);
      await new Promise((r) => setTimeout(r, wait + Math.floor(Math.random() * wait)));
      wait = Math.min(wait * 2, 500);
    }
    let held: string | null = version;
    let seq = 0;
    let chain: Promise<void> = Promise.resolve();
    const renew = (): void => {
      chain = chain.then(async () => {
        if (held === null) return;
        try {
          const v = await this.compareAndSwap(key, record(++seq, 'held'), held);
          if (v === null) {
            held = null; // taken over: our lease had run out
            clearInterval(timer);
          } else held = v;
        } catch {
          // the store unreachable: try again at the next beat (the lease may run out meanwhile)
        }
      });
    };
    const timer = setInterval(renew, Math.max(1, Math.floor(this.leaseMs / 3)));
    timer.unref();
    let released = false;
    const release = async (): Promise<void> => {
      if (released) return;
      released = true;
      clearInterval(timer);
      await chain;
      if (held === null) return;
      const v = held;
      held = null;
      await this.compareAndSwap(key, record(++seq, 'released'), v);
    };
    // Renewed now, in the renewals' order: a waiter then measures a whole new lease from here.
    const confirm = async (): Promise<void> => {
      let failure: unknown;
      chain = chain.then(async () => {
        if (held === null) return;
        try {
          const v = await this.compareAndSwap(key, record(++seq, 'held'), held);
          if (v === null) {
            held = null;
            clearInterval(timer);
          } else held = v;
        } catch (e) {
          failure = e;
        }
      });
      await chain;
      if (released || held === null) throw lockLost(name);
      if (failure) throw failure;
    };
    return Object.assign(release, { confirm });
  }
}

/** User metadata of a conditional PUT: the write's own id (see putOne). */
const WRITE_ID_META = 'cairn-write';

/** A key for an x-amz-copy-source header: each segment percent-encoded, slashes kept. */
function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

/** A write source cut into parts of a fixed size, one part in memory at a time. */
class PartReader {
  private readonly it: AsyncIterator<Buffer | Uint8Array> | Iterator<Buffer | Uint8Array>;
  private rest: Buffer | null = null;

  constructor(source: WriteSource) {
    this.it = Buffer.isBuffer(source) ? [source][Symbol.iterator]() : source[Symbol.asyncIterator]();
  }

  /** Up to `size` bytes; `done` when the source ended (the part may then be short or empty). */
  async next(size: number): Promise<{ part: Buffer; done: boolean }> {
    const chunks: Buffer[] = [];
    let len = 0;
    while (len < size) {
      let c: Buffer;
      if (this.rest) {
        c = this.rest;
        this.rest = null;
      } else {
        const r = await this.it.next();
        if (r.done) return { part: Buffer.concat(chunks, len), done: true };
        c = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      }
      if (len + c.length > size) {
        this.rest = c.subarray(size - len);
        c = c.subarray(0, size - len);
      }
      chunks.push(c);
      len += c.length;
    }
    return { part: Buffer.concat(chunks, len), done: false };
  }

  /** Stops reading the source (lets an async generator run its finally blocks). */
  async close(): Promise<void> {
    this.rest = null;
    await this.it.return?.();
  }
}
