import { createReadStream, promises as fsp, statSync } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { CairnError } from '../../storage/errors';
import { isChecksum } from '../../storage/objects/checksum';
import { ObjectType, objectKey } from '../../storage/objects/types';
import { objectName, walkCommitTree, type ObjectRef } from '../../storage/repo/closure';
import { keyFileGet } from '../../storage/repo/config';
import { ARCHIVE_MODES, Repo } from '../../storage/repo/repo';

/** One object of the local repository, as it will be sent: the archive-format file. */
export interface LocalObject extends ObjectRef {
  /** `<checksum>.<ext>`, the name the API uses. */
  name: string;
  /** Absolute path of the file in the local repository. */
  file: string;
}

export interface LocalCommit {
  repo: Repo;
  root: string;
  commit: string;
  /** Every object of the commit's tree, the commit first, plus the `.commitmeta` when there is one. */
  objects: LocalObject[];
  /**
   * Metadata of the tree the local repository does not have (a partial pull);
   * fine if the server has them. Content objects are not looked for here (statObjects).
   */
  absent: LocalObject[];
}

/**
 * Opens an OSTree repository folder for reading. Only archive repositories
 * hold objects in the format the server takes (`.filez`); a bare-user repo
 * would need every file recompressed, which push does not do (yet).
 */
export async function openLocalRepo(dir: string): Promise<{ repo: Repo; root: string }> {
  const root = path.resolve(dir);
  const repo = new Repo(path.basename(root), new LocalFiles(root));
  const config = await repo.readConfig().catch(() => null);
  if (!config) throw new CairnError('NOT_FOUND', `${dir} is not an OSTree repository (no config file)`);
  const mode = keyFileGet(config, 'core', 'mode') ?? 'bare';
  if (!ARCHIVE_MODES.has(mode)) {
    throw new CairnError(
      'UNSUPPORTED',
      `${dir} is a ${mode} repository; cairn push needs an archive one. ` +
        `Copy the commit first: ostree init --repo=ARCHIVE --mode=archive && ostree pull-local --repo=ARCHIVE ${dir} REF`,
    );
  }
  return { repo, root };
}

/**
 * The local repository's files, stat'd and read with blocking calls: walking
 * a commit stats every object and reads every dirtree, thousands of calls a
 * few µs each, and the push has nothing else to do meanwhile; a thread-pool
 * round trip per call cost more than the call (a 10,000-object walk ~0.5 s).
 */
class LocalFiles extends FsBackend {
  override async stat(key: string) {
    return this.statNow(key);
  }

  override async read(key: string) {
    return this.readNow(key);
  }
}

/** REF as a ref name under refs/heads (or refs/remotes/REMOTE/NAME as `REMOTE:NAME`), or a full checksum. */
export async function resolveLocalRef(repo: Repo, root: string, ref: string): Promise<string> {
  if (isChecksum(ref)) return ref;
  const colon = ref.indexOf(':');
  if (colon > 0) {
    const file = path.join(root, 'refs', 'remotes', ref.slice(0, colon), ref.slice(colon + 1));
    const text = await fsp.readFile(file, 'utf8').catch(() => null);
    if (text && isChecksum(text.trim())) return text.trim();
    throw new CairnError('NOT_FOUND', `no ref ${ref} in ${root}`);
  }
  const c = await repo.readRef(ref);
  if (!c) throw new CairnError('NOT_FOUND', `no ref ${ref} in ${root}`);
  return c;
}

/** Walks the commit's whole tree in the local repository. */
export async function enumerateCommit(repo: Repo, root: string, commit: string): Promise<LocalCommit> {
  const walk = await walkCommitTree(new ContentUnchecked(repo.name, repo.backend), commit);
  // `root` is absolute and normalised (openLocalRepo), an object key is plain: no path.join to normalise ten thousand times.
  const toLocal = (o: ObjectRef): LocalObject => ({ ...o, name: objectName(o), file: `${root}${path.sep}${objectKey(o.checksum, o.type)}` });
  if (walk.missing.some((o) => o.type === ObjectType.Commit)) throw new CairnError('NOT_FOUND', `commit ${commit} is not in ${root}`);
  const objects = walk.objects.map(toLocal);
  // Detached metadata (signatures made at commit time) travels with the commit.
  if (await repo.hasObject(commit, ObjectType.CommitMeta)) objects.push(toLocal({ checksum: commit, type: ObjectType.CommitMeta }));
  return { repo, root, commit, objects, absent: walk.missing.map(toLocal) };
}

/**
 * The repository as walkCommitTree sees it for a push: content objects are
 * not looked for during the walk (a stat each, ~10,000 for an OS tree, when
 * an incremental push sends a tenth of them), only later by statObjects, for
 * the objects the server lacks.
 */
class ContentUnchecked extends Repo {
  override async hasObject(checksum: string, type: ObjectType): Promise<boolean> {
    return type === ObjectType.File || super.hasObject(checksum, type);
  }
}

/**
 * Sizes of local object files (the bytes that go on the wire), by blocking
 * stats as the walk's (LocalFiles); `absent`: the names of those that are not
 * in the local repository (a partial pull: fine only if the server has them).
 */
export async function statObjects(objects: readonly LocalObject[]): Promise<{ sizes: Map<string, number>; absent: string[] }> {
  const sizes = new Map<string, number>();
  const absent: string[] = [];
  for (const o of objects) {
    const st = statSync(o.file, { throwIfNoEntry: false });
    if (st?.isFile()) sizes.set(o.name, st.size);
    else absent.push(o.name);
  }
  return { sizes, absent };
}

/** Objects up to this size are read in one piece (most of a tree: a few kB each). */
export const ONE_READ_BYTES = 1024 * 1024;

/**
 * The bytes of a local object file, fresh for every upload attempt: an object
 * of `size` ≤ ONE_READ_BYTES in one read into a buffer of its size (a read
 * stream would allocate its whole 256 KiB buffer per file, and the garbage
 * collector pays for it), a larger one as a stream. One byte more than `size`
 * is asked for, so a file that grew shows (multipart's `counted` checks).
 */
export function openObject(file: string, size = Infinity): AsyncIterable<Uint8Array> {
  if (size <= ONE_READ_BYTES) return readWhole(file, size);
  return createReadStream(file, { highWaterMark: 256 * 1024 });
}

async function* readWhole(file: string, size: number): AsyncIterable<Uint8Array> {
  const fh = await fsp.open(file, 'r');
  let data: Buffer;
  try {
    const buf = Buffer.allocUnsafe(size + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n === buf.length) break;
    }
    data = buf.subarray(0, n);
  } finally {
    await fh.close();
  }
  if (data.length > 0) yield data;
}
