import { parse, type VarDict } from '../gvariant';
import { CairnError } from '../errors';
import { validateChecksum } from '../objects/checksum';
import { decodeCommit } from '../objects/commit';
import { OBJECT_GVARIANT_TYPE, ObjectType } from '../objects/types';
import { objectName, walkCommitTree } from './closure';
import { withRepoLock } from './mutex';
import { validateRefName } from './names';
import { recoverBeforePublish, summaryAgrees } from './recovery';
import type { RefLogEntry } from './reflog';
import type { Repo } from './repo';
import { switchPublished, type SummarySigner } from './summary';
import { appstreamChanges } from '../flatpak/appstream';

/** Signs what a repository publishes; see storage/signing. */
export interface RepoSigner {
  /** New detached metadata for `commit` (exact .commit bytes), keeping foreign keys of `existing`. */
  signCommit(commit: Buffer, existing: VarDict | null): Promise<Buffer>;
  signSummary: SummarySigner;
}

export interface RefUpdate {
  ref: string;
  /** The commit to point at, or null to delete the ref. */
  commit: string | null;
  /** What the publisher believes the ref holds now: a checksum, null for "absent", undefined to skip the check. */
  expected?: string | null;
}

export interface UpdateRefsOptions {
  actor: string;
  signer?: RepoSigner;
  /** Skip the compare-and-swap (the `--force` of `cairn push`). */
  force?: boolean;
  /** Called after the refs moved and the summary changed (e.g. to queue deltas). */
  onPublished?: (changes: RefLogEntry[]) => void | Promise<void>;
}

/**
 * Moves one or several refs together: under the repository's lock, every
 * expectation is checked (CONFLICT with the current values on a mismatch),
 * every target commit's whole tree must be present and valid (MISSING_OBJECTS
 * listing what is not), and only then are commits signed, and refs, ref log,
 * summary and summary.sig switched as one (summary.ts switchPublished). A
 * switch a crash or a full disk left unfinished is finished first; a request
 * that moves nothing still regenerates a summary that disagrees with the refs.
 */
export async function updateRefs(repo: Repo, updates: RefUpdate[], opts: UpdateRefsOptions): Promise<RefLogEntry[]> {
  if (updates.length === 0) throw new CairnError('INVALID_ARGUMENT', 'no ref updates given');
  const seen = new Set<string>();
  for (const u of updates) {
    validateRefName(u.ref);
    if (u.commit !== null) validateChecksum(u.commit);
    if (u.expected) validateChecksum(u.expected);
    if (seen.has(u.ref)) throw new CairnError('INVALID_ARGUMENT', `ref ${u.ref} is named twice`);
    seen.add(u.ref);
  }

  return withRepoLock(repo.backend, 'refs', async () => {
    // A switch left unfinished (crash, full disk) is finished before anything is read.
    await recoverBeforePublish(repo, opts.signer?.signSummary);
    const current = new Map<string, string | null>();
    for (const u of updates) current.set(u.ref, await repo.readRef(u.ref));

    if (!opts.force) {
      const conflicts = updates
        .filter((u) => u.expected !== undefined && u.expected !== current.get(u.ref))
        .map((u) => ({ ref: u.ref, expected: u.expected ?? null, actual: current.get(u.ref) ?? null }));
      if (conflicts.length) {
        throw new CairnError('CONFLICT', `ref ${conflicts[0]!.ref} holds ${conflicts[0]!.actual ?? 'nothing'}, not ${conflicts[0]!.expected ?? 'nothing'}`, { conflicts });
      }
    }

    await checkRefPaths(repo, updates);

    const commits = new Map<string, Buffer>();
    for (const u of updates) {
      if (u.commit === null || commits.has(u.commit)) continue;
      // The ref's current commit is complete (it was accepted so): subtrees shared with it are not walked again.
      const walk = await walkCommitTree(repo, u.commit, { base: current.get(u.ref) ?? null });
      if (walk.missing.length) {
        throw new CairnError('MISSING_OBJECTS', `commit ${u.commit} is incomplete: ${walk.missing.length} objects missing`, {
          commit: u.commit,
          missing: walk.missing.slice(0, 1000).map(objectName),
          missingCount: walk.missing.length,
        });
      }
      commits.set(u.commit, (await repo.readMetadata(u.commit, ObjectType.Commit))!);
    }
    for (const u of updates) if (u.commit) checkRefBinding(u.ref, u.commit, commits.get(u.commit)!);

    // A request that moves nothing (without --force) re-signs nothing: it only checks the summary.
    const moving = new Set(updates.filter((u) => u.commit !== null && (opts.force || u.commit !== (current.get(u.ref) ?? null))).map((u) => u.commit!));
    if (opts.signer) {
      for (const [checksum, bytes] of commits) {
        if (!moving.has(checksum)) continue;
        const old = await repo.readMetadata(checksum, ObjectType.CommitMeta);
        const existing = old ? (parse(OBJECT_GVARIANT_TYPE.commitmeta, old) as VarDict) : null;
        await repo.writeCommitMeta(checksum, await opts.signer.signCommit(bytes, existing));
      }
    }

    const time = new Date().toISOString();
    const changes: RefLogEntry[] = [];
    for (const u of updates) {
      const old = current.get(u.ref) ?? null;
      if (old === u.commit) continue;
      changes.push({ time, ref: u.ref, old, new: u.commit, actor: opts.actor });
    }
    if (changes.length === 0) {
      // Nothing moves, but the summary must still say what the refs say (a
      // summary left stale by a crash or a full disk before this start).
      await withRepoLock(repo.backend, 'summary', async () => {
        if (!(await summaryAgrees(repo, opts.signer !== undefined))) await switchPublished(repo, { changes: [], signer: opts.signer?.signSummary });
      });
      return changes;
    }
    // A flatpak repository's appstream branches follow its apps, in the same switch (storage/flatpak/appstream.ts).
    const signer = opts.signer;
    changes.push(...(await appstreamChanges(repo, changes, { time, actor: opts.actor, signCommit: signer ? (c) => signer.signCommit(c, null) : undefined })));
    // Refs, ref log, summary and summary.sig switch together (summary.ts: staged, journalled, renamed).
    await withRepoLock(repo.backend, 'summary', () => switchPublished(repo, { changes, signer: opts.signer?.signSummary }));
    await opts.onPublished?.(changes);
    return changes;
  });
}

/**
 * A ref is a file under refs/heads/, so `a` and `a/b` cannot both exist: one
 * would have to be a file and a folder at once. Checked on the refs as they
 * will be (existing refs, minus this request's deletions, plus its creations)
 * before anything is written; CONFLICT naming the clashing pairs otherwise.
 */
async function checkRefPaths(repo: Repo, updates: RefUpdate[]): Promise<void> {
  const final = new Set<string>();
  for await (const key of repo.backend.list('refs/heads')) final.add(key.slice('refs/heads/'.length));
  for (const u of updates) if (u.commit === null) final.delete(u.ref);
  for (const u of updates) if (u.commit !== null) final.add(u.ref);
  // Every folder the final refs need, with one ref that needs it.
  const folders = new Map<string, string>();
  for (const ref of final) {
    for (let i = ref.indexOf('/'); i !== -1; i = ref.indexOf('/', i + 1)) {
      const folder = ref.slice(0, i);
      if (!folders.has(folder)) folders.set(folder, ref);
    }
  }
  const clashes: Array<{ ref: string; clashesWith: string }> = [];
  for (const u of updates) {
    if (u.commit === null) continue;
    const under = folders.get(u.ref);
    if (under !== undefined) clashes.push({ ref: u.ref, clashesWith: under });
    for (let i = u.ref.indexOf('/'); i !== -1; i = u.ref.indexOf('/', i + 1)) {
      const folder = u.ref.slice(0, i);
      if (final.has(folder)) clashes.push({ ref: u.ref, clashesWith: folder });
    }
  }
  if (clashes.length) {
    const [c] = clashes;
    throw new CairnError('CONFLICT', `ref ${c!.ref} clashes with ref ${c!.clashesWith}: a ref cannot also be a folder of refs`, { clashes: clashes.slice(0, 100) });
  }
}

/**
 * The client refuses a commit bound (ostree.ref-binding) to other refs than
 * the one it pulls, so publishing it under such a ref would break every host.
 */
function checkRefBinding(ref: string, checksum: string, bytes: Buffer): void {
  const c = decodeCommit(bytes);
  const binding = c.metadata.find(([k]) => k === 'ostree.ref-binding')?.[1];
  if (!binding || binding.type !== 'as') return;
  const refs = binding.value as string[];
  if (!refs.includes(ref)) {
    throw new CairnError('INVALID_ARGUMENT', `commit ${checksum} is bound to ${refs.join(', ')}; clients would refuse it under ${ref}`, { ref, commit: checksum, bindings: refs });
  }
}
