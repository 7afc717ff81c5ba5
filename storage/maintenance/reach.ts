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
  for await (const key of repo.backend.list('refs')) {
    const got = await repo.backend.read(key);
    if (!got) continue; // gone since the listing: a deleted ref
    const csum = got.data.toString('utf8').trim();
    if (isChecksum(csum)) out.set(key.slice('refs/'.length), csum);
    else damaged.push(key);
  }
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

  /** Marks a tree (dirtree `tree` with dirmeta `meta`) and everything below it. */
  async markTree(tree: string, meta: string, commit: string, partial = false): Promise<void> {
    const stack: Array<[string, string]> = [[tree, meta]];
    const check = this.opts.checkContent === true;
    while (stack.length > 0) {
      const [t, m] = stack.pop()!;
      if (this.set.add(m, ObjectType.DirMeta) && check && !partial && !(await this.repo.hasObject(m, ObjectType.DirMeta))) this.reportMissing(objectLabel(m, ObjectType.DirMeta), commit);
      if (!this.set.add(t, ObjectType.DirTree)) continue;
      let raw: Buffer | null;
      try {
        raw = await this.repo.readMetadata(t, ObjectType.DirTree);
      } catch (e) {
        this.reportCorrupt(objectLabel(t, ObjectType.DirTree), (e as Error).message);
        continue;
      }
      if (!raw) {
        if (!partial) this.reportMissing(objectLabel(t, ObjectType.DirTree), commit);
        continue;
      }
      let dt;
      try {
        dt = decodeDirTree(raw);
      } catch (e) {
        this.reportCorrupt(objectLabel(t, ObjectType.DirTree), (e as Error).message);
        continue;
      }
      for (const f of dt.files) {
        if (this.set.add(f.checksum, ObjectType.File) && check && !partial && !(await this.repo.hasObject(f.checksum, ObjectType.File))) {
          this.reportMissing(objectLabel(f.checksum, ObjectType.File), commit);
        }
      }
      for (const d of dt.dirs) stack.push([d.treeChecksum, d.metaChecksum]);
      await this.pace();
    }
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
