/**
 * A repository's refs with what an operator wants to see beside each: the
 * commit's subject, version and date, and whether it carries detached
 * signatures. Paged by name, so a repository with thousands of refs (flatpak
 * repositories have them) costs one page of reads per call.
 */
import { CairnError } from '../errors';
import { compareBytes, type Repo } from '../repo/repo';
import { cachedClosureSize, commitClosureSize, type ClosureSize } from './closure-size';
import { commitSummary, type CommitSummary } from './commit';
import { signatureKinds } from './signatures';
import { findCommit } from './trees';

export interface RefDetail {
  ref: string;
  commit: string;
  /** The commit's fields; null when the commit object is not in the repository. */
  summary: CommitSummary | null;
  /** Detached signatures present (not verified here: see commitDetail). */
  signed: boolean;
  signatureTypes: Array<'gpg' | 'ed25519'>;
  /** The closure's figures when memoised or asked for (`sizes: true`), else null. */
  size: ClosureSize | null;
}

export interface RefPage {
  refs: RefDetail[];
  /** Refs matching the prefix in all. */
  total: number;
  /** Cursor of the next page (the last ref name of this one), null at the end. */
  next: string | null;
}

export const DEFAULT_REF_PAGE = 100;
export const MAX_REF_PAGE = 500;
/** Ref names listed at most (a repository with more shows the first ones by name). */
export const MAX_REFS_LISTED = 100_000;

export interface RefListOptions {
  /** Only refs starting with this. */
  prefix?: string;
  /** Cursor: refs after this name (strcmp order). */
  after?: string | null;
  limit?: number;
  /** Compute the closure size of each listed ref's commit (memoised per commit); default: only what is memoised. */
  sizes?: boolean;
}

/** One page of refs, in strcmp order of names (the summary's order). */
export async function listRefDetails(repo: Repo, opts: RefListOptions = {}): Promise<RefPage> {
  const limit = Math.min(MAX_REF_PAGE, Math.max(1, Math.floor(Number.isFinite(opts.limit) ? opts.limit! : DEFAULT_REF_PAGE)));
  if (opts.prefix !== undefined && (opts.prefix.length > 1024 || opts.prefix.includes('\0'))) throw new CairnError('INVALID_ARGUMENT', 'invalid ref prefix');
  const names: string[] = [];
  for await (const key of repo.backend.list('refs/heads')) {
    const name = key.slice('refs/heads/'.length);
    if (opts.prefix && !name.startsWith(opts.prefix)) continue;
    names.push(name);
    if (names.length >= MAX_REFS_LISTED) break;
  }
  names.sort(compareBytes);
  let from = 0;
  if (opts.after) {
    from = names.findIndex((n) => compareBytes(n, opts.after!) > 0);
    if (from === -1) from = names.length;
  }
  const slice = names.slice(from, from + limit);
  const refs: RefDetail[] = [];
  for (const ref of slice) {
    const d = await refDetail(repo, ref, opts.sizes ?? false).catch(() => null);
    if (d) refs.push(d);
  }
  return { refs, total: names.length, next: from + limit < names.length ? slice[slice.length - 1]! : null };
}

/** One ref's detail; NOT_FOUND when it does not exist. */
export async function refDetail(repo: Repo, ref: string, sizes = false): Promise<RefDetail> {
  const commit = await repo.readRef(ref);
  if (!commit) throw new CairnError('NOT_FOUND', `ref ${ref} does not exist in repository ${repo.name}`, { ref });
  const c = await findCommit(repo, commit);
  const kinds = await signatureKinds(repo, commit);
  const signatureTypes: Array<'gpg' | 'ed25519'> = [];
  if (kinds.gpg) signatureTypes.push('gpg');
  if (kinds.ed25519) signatureTypes.push('ed25519');
  let size = cachedClosureSize(repo, commit);
  if (!size && sizes && c) size = await commitClosureSize(repo, commit);
  return { ref, commit, summary: c ? commitSummary(commit, c) : null, signed: signatureTypes.length > 0, signatureTypes, size };
}
