/**
 * The storage side of the operator API and web UI (issue #10): read views of
 * a repository (stats, refs, history, commits, trees, files, diffs), the
 * operator writes (promote, rollback, delete) and the update-traffic
 * aggregator. Every function takes a Repo, does bounded work and returns
 * plain JSON data (streams for file bytes); errors are CairnErrors.
 */
export { repoStats, type RepoStats, type CountBytes, type ObjectTypeName } from './stats';
export { listRefDetails, refDetail, type RefDetail, type RefPage, type RefListOptions, DEFAULT_REF_PAGE, MAX_REF_PAGE } from './refs';
export { refHistory, stepsBack, type HistoryPage, type HistoryEntry, type HistoryEnd, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT } from './history';
export { commitDetail, commitSummary, type CommitDetail, type CommitSummary, type CommitDetailOptions } from './commit';
export { commitSignatures, signatureKinds, verifyKeysOf, type CommitSignatures, type SignatureStatus, type VerifyKeys } from './signatures';
export { commitClosureSize, cachedClosureSize, type ClosureSize, type ClosureOptions } from './closure-size';
export { deltasOfCommit, type CommitDelta, type CommitDeltas } from './deltas';
export { listDirectory, walkTree, openFile, type TreeEntry, type EntryKind, type DirectoryPage, type WalkItem, type WalkOptions, type OpenedFile, DEFAULT_TREE_PAGE, MAX_TREE_PAGE } from './listing';
export { resolvePath, pathSegments, type Resolved } from './trees';
export { diffCommits, ostreeDiffLines, type CommitDiff, type DiffModified, type DiffEntry, type DiffSide, type XattrChange, type DiffOptions } from './diff';
export { unifiedFileDiff, type TextDiff, MAX_TEXT_DIFF_BYTES } from './text-diff';
export { promote, rollback, deleteRef, type PromoteRequest, type RollbackRequest, type RollbackResult, type DeleteRefRequest, type OperatorResult, type OperatorWriteOptions } from './operator';
export { TrafficRecorder, OTHER as TRAFFIC_OTHER, type RefTraffic, type RepoTraffic, type DeltaUpdates, type PlainUpdates, type RefCommit, type TrafficOptions } from './traffic';
export type { Json, BytesJson, MetadataEntry, XattrJson } from './json';
