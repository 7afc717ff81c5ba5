import { type Backend, isNow, nowOf } from '../backends/backend';
import { CairnError } from '../errors';
import { isChecksum, sha256Hex, validateChecksum } from '../objects/checksum';
import { decodeCommit, type Commit } from '../objects/commit';
import { ContentHasher, type FileHeader } from '../objects/content';
import { decodeDirMeta } from '../objects/dirmeta';
import { decodeDirTree } from '../objects/dirtree';
import { encodeFilez } from '../objects/filez';
import { parse } from '../gvariant';
import { MAX_METADATA_SIZE, OBJECT_GVARIANT_TYPE, ObjectType, objectKey } from '../objects/types';
import { keyFileGet, parseKeyFile, serializeKeyFile, type KeyFile } from './config';
import { validateCollectionId, validateRefName } from './names';

/** The folders `ostree init --mode=archive` creates; ostree's own tools expect them. */
const REPO_FOLDERS = ['objects', 'refs/heads', 'refs/mirrors', 'refs/remotes', 'tmp/cache', 'state', 'extensions'];

export const ARCHIVE_MODES = new Set(['archive-z2', 'archive']);

export interface InitOptions {
  collectionId?: string;
}

/** Metadata objects up to this size are read with the backend's blocking read where it has one (a tree walk's dirtrees). */
const READ_NOW_BYTES = 256 * 1024;

/**
 * One OSTree repository in the archive layout, over one backend. This is the
 * only place that knows the layout; the HTTP layer serves the backend's keys.
 */
export class Repo {
  constructor(
    readonly name: string,
    readonly backend: Backend,
  ) {}

  /** Writes `config` (archive-z2, as `ostree init --mode=archive` does) if there is none. */
  static async init(name: string, backend: Backend, opts: InitOptions = {}): Promise<Repo> {
    if (await backend.stat('config')) throw new CairnError('ALREADY_EXISTS', `repository ${name} already exists`);
    await backend.ensurePrefixes(REPO_FOLDERS);
    let config = '[core]\nrepo_version=1\nmode=archive-z2\n';
    if (opts.collectionId) config += `collection-id=${validateCollectionId(opts.collectionId)}\n`;
    await backend.write('config', Buffer.from(config));
    return new Repo(name, backend);
  }

  async readConfig(): Promise<KeyFile> {
    const got = await this.backend.read('config');
    if (!got) throw new CairnError('NOT_FOUND', `repository ${this.name} has no config`);
    return parseKeyFile(got.data.toString('utf8'));
  }

  async writeConfig(kf: KeyFile): Promise<void> {
    await this.backend.write('config', Buffer.from(serializeKeyFile(kf)));
  }

  /** Checks that this is an archive repository Cairn can serve. */
  async checkMode(): Promise<void> {
    const mode = keyFileGet(await this.readConfig(), 'core', 'mode') ?? 'bare';
    if (!ARCHIVE_MODES.has(mode)) throw new CairnError('UNSUPPORTED', `repository ${this.name} has mode ${mode}; only archive repositories can be served`);
  }

  async readRef(ref: string): Promise<string | null> {
    const got = await this.backend.read(`refs/heads/${validateRefName(ref)}`);
    if (!got) return null;
    const csum = got.data.toString('utf8').trim();
    if (!isChecksum(csum)) throw new CairnError('INVALID_OBJECT', `ref ${ref} does not hold a checksum`);
    return csum;
  }

  /** All refs under refs/heads, sorted by name (strcmp order, as the summary needs). */
  async listRefs(): Promise<Map<string, string>> {
    const names: string[] = [];
    for await (const key of this.backend.list('refs/heads')) names.push(key.slice('refs/heads/'.length));
    names.sort(compareBytes);
    const out = new Map<string, string>();
    for (const n of names) {
      const c = await this.readRef(n).catch(() => null);
      if (c) out.set(n, c);
    }
    return out;
  }

  /**
   * Whether the object is stored. By one blocking stat where the backend has
   * one (Backend.statFast of a blocking backend: local storage, a few µs, less than a thread-pool
   * round trip; a confined FsBackend's statFast refuses what its stat refuses,
   * e.g. a symlink leading out of the repository: absent either way).
   */
  async hasObject(checksum: string, type: ObjectType): Promise<boolean> {
    const key = objectKey(validateChecksum(checksum), type);
    const got = this.backend.statFast(key);
    return (isNow(got) ? got : await got) !== null;
  }

  /**
   * Bytes of a metadata object (commit, dirtree, dirmeta, commitmeta, tombstone), or null when absent.
   * Small ones (most: dirtrees, dirmetas, commits) by the backend's blocking stat and read where it
   * has them (no thread-pool round trips: a tree walk reads thousands); larger ones by its async read.
   */
  async readMetadata(checksum: string, type: ObjectType): Promise<Buffer | null> {
    const key = objectKey(validateChecksum(checksum), type);
    const b = this.backend;
    const st = b.statFast(key);
    const info = isNow(st) ? st : await st;
    if (!info) return null;
    if (info.size > MAX_METADATA_SIZE) throw new CairnError('TOO_LARGE', `${key} is larger than ${MAX_METADATA_SIZE} bytes`);
    if (b.blocking && info.size <= READ_NOW_BYTES) {
      const got = nowOf(b.readFast(key));
      if (!got) return null;
      // Replaced by a larger file since the stat (a rare race): the limit still holds.
      if (got.info.size > MAX_METADATA_SIZE) throw new CairnError('TOO_LARGE', `${key} is larger than ${MAX_METADATA_SIZE} bytes`);
      return got.data;
    }
    return (await this.backend.read(key))?.data ?? null;
  }

  async readCommit(checksum: string): Promise<Commit | null> {
    const data = await this.readMetadata(checksum, ObjectType.Commit);
    return data ? decodeCommit(data) : null;
  }

  /**
   * Stores a commit, dirtree or dirmeta after checking its structure and that
   * it hashes to `expected` (when given). Returns its checksum. Idempotent.
   */
  async writeMetadata(type: ObjectType.Commit | ObjectType.DirTree | ObjectType.DirMeta, data: Buffer, expected?: string): Promise<string> {
    validateMetadataObject(type, data);
    const checksum = sha256Hex(data);
    if (expected !== undefined && expected !== checksum) {
      throw new CairnError('CHECKSUM_MISMATCH', `object ${expected}.${type} hashes to ${checksum}`, { object: expected, actual: checksum });
    }
    if (!(await this.hasObject(checksum, type))) await this.backend.write(objectKey(checksum, type), data);
    return checksum;
  }

  /** Detached metadata (signatures) of a commit: any normal-form a{sv}; replaced, not merged. */
  async writeCommitMeta(commit: string, data: Buffer): Promise<void> {
    validateMetadataObject(ObjectType.CommitMeta, data);
    await this.backend.write(objectKey(validateChecksum(commit), ObjectType.CommitMeta), data);
  }

  /**
   * Stores a regular file or symlink as a `.filez` content object. The bytes are
   * streamed twice: once to compute the checksum (the object's name), once to
   * compress them, and only when the object is not already present.
   */
  async writeContent(header: FileHeader, size: number, source: ReopenableSource | null): Promise<string> {
    const hasher = new ContentHasher(header);
    let seen = 0;
    if (source) {
      for await (const chunk of source()) {
        hasher.update(chunk);
        seen += chunk.length;
      }
    }
    if (seen !== size) throw new CairnError('CONFLICT', `file changed while it was read (${seen} bytes, expected ${size})`);
    const checksum = hasher.digest();
    if (!(await this.hasObject(checksum, ObjectType.File))) {
      await this.backend.write(objectKey(checksum, ObjectType.File), encodeFilez(header, size, source ? source() : null));
    }
    return checksum;
  }

  /** Points `ref` at `checksum` (or deletes it with null). Callers regenerate the summary. */
  async setRef(ref: string, checksum: string | null): Promise<void> {
    const key = `refs/heads/${validateRefName(ref)}`;
    if (checksum === null) await this.backend.remove(key);
    else await this.backend.write(key, Buffer.from(validateChecksum(checksum) + '\n'));
  }
}

/** A source of file bytes that can be read more than once (we hash, then compress). */
export type ReopenableSource = () => AsyncIterable<Buffer | Uint8Array>;

/** Checks that `data` is a well-formed object of `type` (normal form, valid structure). */
export function validateMetadataObject(type: ObjectType, data: Buffer): void {
  if (data.length > MAX_METADATA_SIZE) throw new CairnError('TOO_LARGE', `metadata object of ${data.length} bytes exceeds ${MAX_METADATA_SIZE}`);
  switch (type) {
    case ObjectType.Commit:
      decodeCommit(data);
      return;
    case ObjectType.DirTree:
      decodeDirTree(data);
      return;
    case ObjectType.DirMeta:
      decodeDirMeta(data);
      return;
    case ObjectType.CommitMeta:
    case ObjectType.TombstoneCommit:
      parse(OBJECT_GVARIANT_TYPE.commitmeta, data);
      return;
    default:
      throw new CairnError('INVALID_ARGUMENT', `object type ${type} is not metadata`);
  }
}

/** strcmp order on UTF-8 bytes (what OSTree's binary searches assume). */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
