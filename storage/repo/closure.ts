import { decodeCommit } from '../objects/commit';
import { decodeDirTree } from '../objects/dirtree';
import { QUARANTINE_PREFIX } from '../maintenance/fsck';
import { ObjectType, ARCHIVE_EXTENSION, objectKey, objectTypeFromExtension } from '../objects/types';
import { presence, readGcEpoch } from './presence';
import type { Repo } from './repo';

export interface ObjectRef {
  checksum: string;
  type: ObjectType;
}

export function objectName(o: ObjectRef): string {
  return `${o.checksum}.${ARCHIVE_EXTENSION[o.type]}`;
}

export interface TreeWalk {
  /** Every object the commit's tree needs, the commit first; each once. */
  objects: ObjectRef[];
  /** The ones not in the repository (or, for metadata, unreadable/invalid). */
  missing: ObjectRef[];
}

/**
 * Walks the whole tree of `commit`: commit, every dirtree and dirmeta, every
 * content object. Metadata is read and validated (a dirtree must parse to be
 * walked); content objects are only checked for presence. A missing dirtree's
 * children cannot be known and are therefore not listed.
 *
 * `base` (publishing: the ref's current commit) lets the walk skip what that
 * commit shares with this one. Every commit a ref points at was complete when
 * it was accepted (updateRefs walks it first, `cairn commit` writes all of it,
 * ostree moves a ref only to a complete commit unless it marks it
 * `state/CSUM.commitpartial`, then `base` is ignored), and Cairn never
 * deletes objects; so by induction any dirtree of `base`'s tree is complete,
 * and a dirtree, dirmeta or file of this tree that `base`'s tree also holds
 * needs no look: shared subtrees are not entered. `base`'s dirtrees are read
 * only along the paths where the two trees differ (a dirtree of this commit
 * paired by name with `base`'s at the same path), so an incremental publish
 * reads and stats about what changed, not the whole tree. With `base`,
 * `objects` lists only what was looked at (not what lies in shared subtrees);
 * `missing` is the same as without. A `base` that cannot be read is ignored.
 *
 * What this process stored moments ago (the presence memo, presence.ts: a
 * push's uploads, seconds before its ref update) is taken as present, with
 * its bytes when they were kept, without asking the store again; except what
 * the quarantine names (listed once per walk when the memo holds anything of
 * this store: fsck --repair or the scrub, in any process, may have moved it
 * aside since), and all of it when the quarantine holds more than
 * MAX_QUARANTINE_LOOK objects.
 *
 * Backends with blocking calls (statNow/readNow) answer without the event
 * loop in between: the walk yields to it every few milliseconds.
 */
export async function walkCommitTree(repo: Repo, commit: string, opts: { concurrency?: number; base?: string | null } = {}): Promise<TreeWalk> {
  const seen = new Set<string>();
  const objects: ObjectRef[] = [];
  const missing: ObjectRef[] = [];
  const add = (o: ObjectRef): boolean => {
    const k = objectName(o);
    if (seen.has(k)) return false;
    seen.add(k);
    objects.push(o);
    return true;
  };
  const pace = pacer();
  let listed: Promise<Quarantine> | undefined;
  const quarantine = () => (listed ??= listQuarantine(repo));
  // (A quarantine that cannot be listed: the memo is not used, the store answers as it can.)
  // The store's gc epoch now (read under the caller's `refs` lock for a ref update): entries of another are not trusted.
  const epoch = presence.holdsAny(repo.backend) ? await readGcEpoch(repo.backend).catch(() => undefined) : undefined;
  const memo = epoch !== undefined && (await quarantine().then((q) => trustMemo(repo, q), () => false));
  const remembered = (checksum: string, type: ObjectType) => (memo ? presence.get(repo.backend, objectKey(checksum, type), epoch) : undefined);
  const has = async (checksum: string, type: ObjectType): Promise<boolean> => remembered(checksum, type) !== undefined || repo.hasObject(checksum, type);
  const read = async (checksum: string, type: ObjectType): Promise<Buffer | null> => remembered(checksum, type)?.bytes ?? repo.readMetadata(checksum, type);

  add({ checksum: commit, type: ObjectType.Commit });
  const data = await read(commit, ObjectType.Commit).catch(() => null);
  if (!data) {
    missing.push({ checksum: commit, type: ObjectType.Commit });
    return { objects, missing };
  }
  const c = decodeCommit(data);
  const base = opts.base && opts.base !== commit ? await readBase(repo, opts.base, quarantine) : null;
  /** Checksums (dirtree, dirmeta, file) in `base`'s tree, as far as its dirtrees were read: present. */
  const known = new Set<string>();
  if (base) known.add(base.rootMeta);
  if (base?.rootTree === c.rootTree) known.add(c.rootTree);
  const queue: Array<{ tree: string; meta: string; baseTree?: string }> = [{ tree: c.rootTree, meta: c.rootMeta, baseTree: base?.rootTree }];
  const contentChecks: ObjectRef[] = [];

  while (queue.length > 0) {
    const batch = queue.splice(0, opts.concurrency ?? 32);
    await Promise.all(
      batch.map(async ({ tree, meta, baseTree }) => {
        if (add({ checksum: meta, type: ObjectType.DirMeta }) && !known.has(meta)) {
          if (!(await has(meta, ObjectType.DirMeta))) missing.push({ checksum: meta, type: ObjectType.DirMeta });
        }
        if (known.has(tree)) return; // a subtree of base's: complete
        if (!add({ checksum: tree, type: ObjectType.DirTree })) return;
        const raw = await read(tree, ObjectType.DirTree).catch(() => null);
        if (!raw) {
          missing.push({ checksum: tree, type: ObjectType.DirTree });
          return;
        }
        const dt = decodeDirTree(raw);
        // The same folder in base (different contents, or it would have been skipped): what it holds is present.
        const baseDirs = new Map<string, string>();
        if (baseTree !== undefined && baseTree !== tree) {
          const braw = await read(baseTree, ObjectType.DirTree).catch(() => null);
          const bdt = braw ? safeDecodeDirTree(braw) : null;
          if (bdt) {
            for (const f of bdt.files) known.add(f.checksum);
            for (const d of bdt.dirs) {
              known.add(d.treeChecksum);
              known.add(d.metaChecksum);
              baseDirs.set(d.name, d.treeChecksum);
            }
          }
        }
        for (const f of dt.files) {
          const o = { checksum: f.checksum, type: ObjectType.File };
          if (!known.has(f.checksum) && add(o)) contentChecks.push(o);
        }
        for (const d of dt.dirs) queue.push({ tree: d.treeChecksum, meta: d.metaChecksum, baseTree: baseDirs.get(d.name) });
      }),
    );
    await pace();
  }
  for (let i = 0; i < contentChecks.length; i += 64) {
    const batch = contentChecks.slice(i, i + 64);
    const present = await Promise.all(batch.map((o) => has(o.checksum, o.type)));
    batch.forEach((o, j) => {
      if (!present[j]) missing.push(o);
    });
    await pace();
  }
  return { objects, missing };
}

/**
 * The root of `base` when it can serve as a walk's base: readable, not marked
 * partial by ostree, and no object of the repository is in quarantine
 * (fsck --repair or the background scrub moved a corrupt object aside and no
 * upload restored it yet): the base's closure may lack it, so walk everything.
 */
async function readBase(repo: Repo, base: string, quarantine: () => Promise<Quarantine>): Promise<{ rootTree: string; rootMeta: string } | null> {
  try {
    if (await repo.backend.stat(`state/${base}.commitpartial`)) return null;
    if (await quarantineUnrestored(repo, await quarantine())) return null;
    const data = await repo.readMetadata(base, ObjectType.Commit);
    if (!data) return null;
    const b = decodeCommit(data);
    return { rootTree: b.rootTree, rootMeta: b.rootMeta };
  } catch {
    return null;
  }
}

/** Quarantined objects looked at at most; more than that counts as unrestored, and the presence memo is not used. */
const MAX_QUARANTINE_LOOK = 1000;

/** The objects in `state/cairn/quarantine/`, as far as MAX_QUARANTINE_LOOK entries (`overflow`: there were more). */
interface Quarantine {
  objects: ObjectRef[];
  overflow: boolean;
}

async function listQuarantine(repo: Repo): Promise<Quarantine> {
  const objects: ObjectRef[] = [];
  let n = 0;
  for await (const key of repo.backend.list(QUARANTINE_PREFIX)) {
    if (++n > MAX_QUARANTINE_LOOK) return { objects, overflow: true };
    const m = /([0-9a-f]{64})\.([a-z-]+)$/.exec(key);
    if (!m) continue;
    try {
      objects.push({ checksum: m[1]!, type: objectTypeFromExtension(m[2]!) });
    } catch {
      // not an object's name
    }
  }
  return { objects, overflow: false };
}

/** Whether some quarantined object is still absent from objects/ (no upload restored it). */
async function quarantineUnrestored(repo: Repo, q: Quarantine): Promise<boolean> {
  if (q.overflow) return true;
  for (const o of q.objects) if (!(await repo.hasObject(o.checksum, o.type))) return true;
  return false;
}

/**
 * Whether the walk may use the presence memo: not when the quarantine is too long to look at;
 * otherwise yes, once whatever it names is dropped from the memo (it may have left objects/ since).
 */
function trustMemo(repo: Repo, q: Quarantine): boolean {
  if (q.overflow) return false;
  for (const o of q.objects) presence.forget(repo.backend, objectKey(o.checksum, o.type));
  return true;
}

function safeDecodeDirTree(raw: Buffer): ReturnType<typeof decodeDirTree> | null {
  try {
    return decodeDirTree(raw);
  } catch {
    return null;
  }
}

/**
 * Yields to the event loop when the last yield is more than PACE_MS ago: a
 * walk over blocking backend calls (statNow/readNow) would otherwise run as
 * one long chain of microtasks, holding up every other request.
 */
const PACE_MS = 4;
function pacer(): () => Promise<void> {
  let last = performance.now();
  return async () => {
    if (performance.now() - last < PACE_MS) return;
    await new Promise<void>((r) => setImmediate(r));
    last = performance.now();
  };
}
