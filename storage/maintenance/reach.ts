import { CairnError } from '../errors';
import { isChecksum } from '../objects/checksum';
import { decodeCommit, type Commit } from '../objects/commit';
import { decodeDirTree } from '../objects/dirtree';
import { ARCHIVE_EXTENSION, ObjectType } from '../objects/types';
import type { Repo } from '../repo/repo';
import { MarkSet } from './markset';

/**
 * What the maintenance walks share: every ref of a repository (heads, and
 * the mirrors and remotes ostree may keep), and a marker that walks commit
 * trees (and histories) into a MarkSet without holding more than the
 * folders still to visit: a subtree already marked is not entered again, so
 * the histories of a repository cost about one visit per distinct object.
 */

/** Every ref under refs/ (heads/NAME, mirrors/…, remotes/…) → commit. A ref file that holds no checksum throws (a walk must not guess). */
export async function listAllRefs(repo: Repo): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const damaged: string[] = [];
  const keys: string[] = [];
  for await (const key of repo.backend.list('refs')) keys.push(key);
  // Read several at once on a remote store (gc reads them all at every round, under the ref lock).
  const files = await mapLimit(keys, parallelism(repo), (key) => repo.backend.read(key));
  keys.forEach((key, i) => {
    const got = files[i];
    if (!got) return; // gone since the listing: a deleted ref
    const csum = got.data.toString('utf8').trim();
    if (isChecksum(csum)) out.set(key.slice('refs/'.length), csum);
    else damaged.push(key);
  });
  if (damaged.length) {
    throw new CairnError('INVALID_OBJECT', `ref file ${damaged[0]} does not hold a checksum (restart 'cairn serve' to restore it from the ref log, or fix it): refusing to decide what is reachable`, {
      refs: damaged.slice(0, 100),
    });
  }
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function objectLabel(checksum: string, type: ObjectType): string {
  return `${checksum}.${ARCHIVE_EXTENSION[type]}`;
}

export interface MarkOptions {
  /** Stat content objects and report the absent ones (fsck); a collector needs no stat. */
  checkContent?: boolean;
  /** An object of the closure that is not there (a commit's absent parent is not one: history may be cut). */
  onMissing?(name: string, from: string): void;
  /** A metadata object of the closure that cannot be decoded: its children are unknown. */
  onCorrupt?(name: string, error: string): void;
  /** A commit walked that ostree marked partial (`state/C.commitpartial`). */
  onPartial?(commit: string): void;
  /**
   * Objects known to be present (fsck fills it while it lists objects/): the
   * walk asks the store only about the others (one request each on S3).
   */
  present?: MarkSet;
  /** Called every few milliseconds with the objects marked so far (progress). */
  onProgress?(marked: number): void;
}

/**
 * Marks closures into `set`. `markCommit(c, history)` marks commit `c`, its
 * detached metadata's slot (the commit's), its whole tree, and with
 * `history` its parents' too, as far as they are present. Commits ostree
 * marked partial (`state/C.commitpartial`) may lack objects: not reported,
 * unless `checkContent` (fsck: a ref's closure must be whole, whatever a
 * marker says; ostree's own fsck marks a damaged commit partial).
 */
export class Marker {
  /** Objects of the walked closures that are absent (fsck's `missing`), and decoded metadata that failed. */
  missing = 0;
  corrupt = 0;
  private last = performance.now();

  constructor(
    readonly repo: Repo,
    readonly set: MarkSet,
    private readonly opts: MarkOptions = {},
  ) {}

  /** Marks `commit` (and with `history` its present ancestors). Returns the commits newly marked. */
  async markCommit(commit: string, history: boolean): Promise<number> {
    let n = 0;
    for (let c: string | null = commit; c !== null; ) {
      if (!this.set.add(c, ObjectType.Commit)) break; // marked before, with its tree (and history, if that walk had it)
      n++;
      const parsed = await this.readCommit(c, n === 1 ? 'ref' : 'history');
      if (!parsed) break;
      const partial = (await this.repo.backend.stat(`state/${c}.commitpartial`)) !== null;
      if (partial) this.opts.onPartial?.(c);
      await this.markTree(parsed.rootTree, parsed.rootMeta, c, partial && this.opts.checkContent !== true);
      c = history ? parsed.parent : null;
    }
    return n;
  }

  /** A commit's decoded object; null when absent (reported unless it is a cut history's end) or corrupt. */
  async readCommit(c: string, why: 'ref' | 'history' | 'other'): Promise<Commit | null> {
    const name = objectLabel(c, ObjectType.Commit);
    let data: Buffer | null;
    try {
      data = await this.repo.readMetadata(c, ObjectType.Commit);
    } catch (e) {
      this.corrupt++;
      this.opts.onCorrupt?.(name, (e as Error).message);
      return null;
    }
    if (!data) {
      if (why !== 'history') {
        this.missing++;
        this.opts.onMissing?.(name, why);
      }
      return null;
    }
    try {
      return decodeCommit(data);
    } catch (e) {
      this.corrupt++;
      this.opts.onCorrupt?.(name, (e as Error).message);
      return null;
    }
  }

  /**
   * Marks a tree (dirtree `tree` with dirmeta `meta`) and everything below it.
   * On a remote store several folders are read at once (a wave of
   * `parallelism` from the stack), since each read is a round trip.
   */
  async markTree(tree: string, meta: string, commit: string, partial = false): Promise<void> {
    const stack: Array<[string, string]> = [[tree, meta]];
    const width = parallelism(this.repo);
    while (stack.length > 0) {
      if (width === 1) {
        const [t, m] = stack.pop()!;
        await this.visit(t, m, commit, partial, stack);
      } else {
        await Promise.all(stack.splice(-width).map(([t, m]) => this.visit(t, m, commit, partial, stack)));
      }
      await this.pace();
    }
  }

  /** One folder of a tree walk: its dirmeta and dirtree marked (and checked), its files marked, its subfolders pushed onto `stack`. */
  private async visit(t: string, m: string, commit: string, partial: boolean, stack: Array<[string, string]>): Promise<void> {
    const check = this.opts.checkContent === true;
    if (this.set.add(m, ObjectType.DirMeta) && check && !partial && !(await this.present(m, ObjectType.DirMeta))) this.reportMissing(objectLabel(m, ObjectType.DirMeta), commit);
    if (!this.set.add(t, ObjectType.DirTree)) return;
    let raw: Buffer | null;
    try {
      raw = await this.repo.readMetadata(t, ObjectType.DirTree);
    } catch (e) {
      this.reportCorrupt(objectLabel(t, ObjectType.DirTree), (e as Error).message);
      return;
    }
    if (!raw) {
      if (!partial) this.reportMissing(objectLabel(t, ObjectType.DirTree), commit);
      return;
    }
    let dt;
    try {
      dt = decodeDirTree(raw);
    } catch (e) {
      this.reportCorrupt(objectLabel(t, ObjectType.DirTree), (e as Error).message);
      return;
    }
    if (check && !partial) {
      const unseen = dt.files.filter((f) => this.set.add(f.checksum, ObjectType.File));
      const here = await mapLimit(unseen, parallelism(this.repo), (f) => this.present(f.checksum, ObjectType.File));
      unseen.forEach((f, i) => {
        if (!here[i]) this.reportMissing(objectLabel(f.checksum, ObjectType.File), commit);
      });
    } else {
      for (const f of dt.files) this.set.add(f.checksum, ObjectType.File);
    }
    for (const d of dt.dirs) stack.push([d.treeChecksum, d.metaChecksum]);
  }

  /** Whether an object is there: known present (MarkOptions.present, fsck's listing), else asked of the store. */
  private async present(checksum: string, type: ObjectType): Promise<boolean> {
    if (this.opts.present?.has(checksum, type)) return true;
    return this.repo.hasObject(checksum, type);
  }

  private reportMissing(name: string, commit: string): void {
    this.missing++;
    this.opts.onMissing?.(name, commit);
  }

  private reportCorrupt(name: string, error: string): void {
    this.corrupt++;
    this.opts.onCorrupt?.(name, error);
  }

  /** Yields to the event loop every few milliseconds (the walks use blocking reads where the backend has them). */
  private async pace(): Promise<void> {
    const now = performance.now();
    if (now - this.last < 8) return;
    this.opts.onProgress?.(this.set.size);
    await new Promise<void>((r) => setImmediate(r));
    this.last = performance.now();
  }
}

/** Parses an object key `objects/XX/REST.EXT`; null for anything else. */
export function parseObjectKey(key: string): { checksum: string; type: ObjectType } | null {
  const m = /^objects\/([0-9a-f]{2})\/([0-9a-f]{62})\.([a-z-]+)$/.exec(key);
  if (!m) return null;
  const type = EXT_TYPES.get(m[3]!);
  return type === undefined ? null : { checksum: m[1]! + m[2]!, type };
}

const EXT_TYPES = new Map<string, ObjectType>(Object.entries(ARCHIVE_EXTENSION).map(([t, ext]) => [ext, Number(t) as ObjectType]));

/**
 * Requests a maintenance walk keeps in flight: one on a blocking store (the
 * filesystem: local calls, nothing to overlap), several on a remote one (S3:
 * every stat and read is a round trip, so one at a time is all latency).
 */
export function parallelism(repo: Repo): number {
  return repo.backend.blocking ? 1 : REMOTE_PARALLEL;
}
export const REMOTE_PARALLEL = 16;

/** `fn` over `items`, at most `limit` at once; results in the items' order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}
