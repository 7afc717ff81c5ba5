/**
 * Everything about one commit an operator looks at: its fields and metadata
 * (as bounded JSON), its signatures and whether they verify with the
 * repository's keys, its closure's size, and the deltas to and from it.
 */
import { contentChecksum, commitVersion, type Commit } from '../objects/commit';
import { ObjectType } from '../objects/types';
import type { Repo } from '../repo/repo';
import { cachedClosureSize, commitClosureSize, type ClosureOptions, type ClosureSize } from './closure-size';
import { deltasOfCommit, type CommitDeltas } from './deltas';
import { metadataJson, type MetadataEntry } from './json';
import { commitSignatures, type CommitSignatures, type VerifyKeys } from './signatures';
import { loadCommit } from './trees';

/** The plain fields of a commit, as lists and pages show them. */
export interface CommitSummary {
  checksum: string;
  parent: string | null;
  subject: string;
  /** The `version` metadata string, or null. */
  version: string | null;
  /** Seconds since the epoch, as stored. */
  timestamp: number;
  /** The same as ISO 8601 (UTC). */
  date: string;
}

/** Longest subject / body returned (a commit may carry megabytes of text). */
export const MAX_SUBJECT = 1024;
export const MAX_BODY = 64 * 1024;

export function commitSummary(checksum: string, c: Commit): CommitSummary {
  const ts = Number(c.timestamp);
  const date = Number.isSafeInteger(ts) && Math.abs(ts) < 8.64e12 ? new Date(ts * 1000).toISOString() : '';
  return { checksum, parent: c.parent, subject: c.subject.slice(0, MAX_SUBJECT), version: commitVersion(c)?.slice(0, MAX_SUBJECT) ?? null, timestamp: ts, date };
}

export interface CommitDetail extends CommitSummary {
  body: string;
  /** The subject or body was longer than returned. */
  textTruncated: boolean;
  rootTree: string;
  rootMeta: string;
  /** What `ostree log` prints as ContentChecksum. */
  contentChecksum: string;
  metadata: MetadataEntry[];
  metadataTruncated: boolean;
  /** Bytes of the `.commit` object. */
  commitBytes: number;
  /** The parent commit object is present in the repository (false for a shallow copy or a pruned history; null without parent). */
  parentPresent: boolean | null;
  signatures: CommitSignatures;
  /** The closure's figures; null when not asked to compute them and not memoised yet. */
  closure: ClosureSize | null;
  deltas: CommitDeltas;
}

export interface CommitDetailOptions {
  /** Keys to verify signatures with (the repository's: verifyKeysOf(RepoKeys)). */
  keys?: VerifyKeys;
  /** 'compute' (default) walks the closure unless memoised; 'cached' only reports memoised figures. */
  closure?: 'compute' | 'cached';
  closureOptions?: ClosureOptions;
}

/** The detail of `commit`; NOT_FOUND when it is not in the repository. */
export async function commitDetail(repo: Repo, commit: string, opts: CommitDetailOptions = {}): Promise<CommitDetail> {
  const c = await loadCommit(repo, commit);
  const raw = await repo.readMetadata(commit, ObjectType.Commit);
  const md = metadataJson(c.metadata);
  const closure = opts.closure === 'cached' ? cachedClosureSize(repo, commit) : await commitClosureSize(repo, commit, opts.closureOptions);
  return {
    ...commitSummary(commit, c),
    body: c.body.slice(0, MAX_BODY),
    textTruncated: c.subject.length > MAX_SUBJECT || c.body.length > MAX_BODY,
    rootTree: c.rootTree,
    rootMeta: c.rootMeta,
    contentChecksum: contentChecksum(c),
    metadata: md.entries,
    metadataTruncated: md.truncated,
    commitBytes: raw?.length ?? 0,
    parentPresent: c.parent ? await repo.hasObject(c.parent, ObjectType.Commit) : null,
    signatures: await commitSignatures(repo, commit, opts.keys),
    closure,
    deltas: await deltasOfCommit(repo, commit),
  };
}
