/**
 * Which files of an archive repository may be cached forever, which change in
 * place, and which are local-only. This is all the HTTP layer needs to know of
 * the layout (FORMATS.md §1); keep OSTree knowledge here, not in handlers.
 */

export type RepoFileKind =
  /** Named by its content: the bytes behind the key never change. */
  | 'immutable'
  /** Replaced in place (config, refs, summary, summary.sig, delta-indexes, commitmeta…). */
  | 'mutable'
  /** Working state of the repository that no client ever fetches. */
  | 'local';

/** Coarse grouping, bounded, for metrics labels and logs. */
export type RepoFileArea = 'object' | 'delta' | 'file';

export interface RepoFileClass {
  kind: RepoFileKind;
  area: RepoFileArea;
  /**
   * For content-addressed objects: a stable identity of the bytes
   * (`<checksum>.<type>`), the same on every server and backend, usable as an
   * ETag. Absent when only the backend's version can vouch for the bytes.
   */
  contentId?: string;
}

/** Top-level entries that only the repository's owner uses (ostree's tmp/, state/, extensions/, and its lock). */
const LOCAL_TOP = new Set(['tmp', 'state', 'extensions', '.lock']);

/**
 * Object types whose file is named by the checksum of its bytes (metadata) or
 * of its content stream (`.filez`, `.file`): once written they never change.
 * `.commitmeta` (signatures get added) and `.tombstone-commit` are keyed by a
 * commit checksum but are NOT content-addressed, so they stay mutable.
 */
const IMMUTABLE_OBJECT_TYPES = new Set(['commit', 'dirtree', 'dirmeta', 'filez', 'file']);

const OBJECT_KEY = /^objects\/([0-9a-f]{2})\/([0-9a-f]{62})\.([a-z-]+)$/;

/** Classifies a backend key (already validated: relative, no `.`/`..` segments). */
export function classifyRepoKey(key: string): RepoFileClass {
  const slash = key.indexOf('/');
  const top = slash === -1 ? key : key.slice(0, slash);
  if (LOCAL_TOP.has(top)) return { kind: 'local', area: 'file' };
  if (top === 'objects') {
    const m = OBJECT_KEY.exec(key);
    if (m && IMMUTABLE_OBJECT_TYPES.has(m[3])) return { kind: 'immutable', area: 'object', contentId: `${m[1]}${m[2]}.${m[3]}` };
    return { kind: 'mutable', area: 'object' };
  }
  // Superblocks and parts live under a name derived from the from/to commits.
  // Regenerating a delta for the same pair may rewrite them, so the ETag comes
  // from the backend's version rather than the path (no contentId).
  if (top === 'deltas' && slash !== -1) return { kind: 'immutable', area: 'delta' };
  if (top === 'delta-indexes') return { kind: 'mutable', area: 'delta' };
  // A flatpak repository's subsummaries, their deltas and index signatures are named by content (storage/flatpak/index.ts).
  if (top === 'summaries' && /^summaries\/[0-9a-f]{64}(?:\.gz|-[0-9a-f]{64}\.delta|\.idx\.sig)$/.test(key)) return { kind: 'immutable', area: 'file' };
  return { kind: 'mutable', area: 'file' };
}

const NESTED_DELTA = /^deltas\/[A-Za-z0-9+_]{2}\/[A-Za-z0-9+_-]{41,}\/(superblock|\d+)$/;

/**
 * For a folder that holds repositories somewhere below it (e.g. libostree's
 * test httpd folder with `ostree/gnomerepo/…`): finds a content-addressed
 * object or delta file at any depth, by its exact shape only, so that a ref
 * or other mutable file is never mistaken for one. Anything else is
 * classified as a key at the folder's top.
 */
export function classifyNestedKey(key: string): RepoFileClass {
  const segments = key.split('/');
  for (let i = 1; i < segments.length - 1; i++) {
    if (segments[i] !== 'objects' && segments[i] !== 'deltas') continue;
    const rest = segments.slice(i).join('/');
    const cls = classifyRepoKey(rest);
    if ((cls.area === 'object' && cls.kind === 'immutable') || NESTED_DELTA.test(rest)) return cls;
  }
  return classifyRepoKey(key);
}
