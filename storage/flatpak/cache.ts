/**
 * What flatpak reads about each of its refs beyond plain OSTree, as
 * `flatpak build-update-repo` computes it (flatpak's common/flatpak-repo-utils.c,
 * read_commit_data): installed and download sizes, the app's or runtime's
 * `metadata` key file, the subsets the commit belongs to, and the "sparse"
 * data (end of life, end-of-life rebase, token type).
 *
 * Sizes come from the commit metadata `xa.installed-size` / `xa.download-size`
 * (big-endian, as `flatpak build-export` records them); a commit without them
 * (made by other tools) is measured as flatpak does: every regular file of the
 * tree, path by path, its size rounded up to 512 bytes (installed) and its
 * `.filez` as stored (download).
 */
import { Variant, type VarDict } from '../gvariant';
import { CairnError } from '../errors';
import { decodeCommit, type Commit } from '../objects/commit';
import { bswap64 } from '../objects/endian';
import { isSymlink } from '../objects/content';
import { ObjectType } from '../objects/types';
import type { Repo } from '../repo/repo';
import { loadDirTree } from '../browse/trees';
import { openContent, readContentHead } from '../browse/content';

export interface CommitData {
  installedSize: bigint;
  downloadSize: bigint;
  /** The `metadata` key file (from `xa.metadata`, else the tree's /metadata file, else empty). */
  metadata: string;
  /** `xa.subsets` of the commit. */
  subsets: string[];
  /** `eol`, `eolr`, `tokt` when the commit carries them; null otherwise. */
  sparse: VarDict | null;
  /** Bytes of the .commit object. */
  commitSize: number;
  /** The commit's timestamp as a number (seconds). */
  timestamp: bigint;
}

/** Refs flatpak keeps cache data for (flatpak_is_app_runtime_or_appstream_ref). */
export function isFlatpakRef(ref: string): boolean {
  return ref.startsWith('app/') || ref.startsWith('runtime/') || ref.startsWith('appstream/') || ref.startsWith('appstream2/');
}

/** The architecture a ref is for (flatpak_get_arch_for_ref), or null. */
export function archForRef(ref: string): string | null {
  if (ref.startsWith('appstream/') || ref.startsWith('appstream2/')) {
    const rest = ref.slice(ref.indexOf('/') + 1);
    const dash = rest.lastIndexOf('-');
    return dash === -1 ? rest : rest.slice(dash + 1);
  }
  if (ref.startsWith('app/') || ref.startsWith('runtime/')) {
    const parts = ref.split('/');
    return parts.length >= 3 ? parts[2]! : null;
  }
  return null;
}

/** Most paths (files and directories) a size walk visits before giving up (a hostile or huge tree). */
export const MAX_SIZE_WALK_ENTRIES = 2_000_000;
/** Largest /metadata file read from a tree. */
const MAX_METADATA_FILE = 1024 * 1024;

const memo = new Map<string, CommitData>();

/** CommitData of `checksum` (memoised per repository location and commit: commits are immutable). */
export async function readCommitData(repo: Repo, checksum: string): Promise<CommitData> {
  const k = `${repo.backend.location}\0${checksum}`;
  const hit = memo.get(k);
  if (hit) return hit;
  const bytes = await repo.readMetadata(checksum, ObjectType.Commit);
  if (!bytes) throw new CairnError('NOT_FOUND', `commit ${checksum} is not in the repository`, { commit: checksum });
  const commit = decodeCommit(bytes);
  const md = commit.metadata;
  const str = (key: string): string | undefined => {
    const v = md.find(([n]) => n === key)?.[1];
    return v && v.type === 's' ? (v.value as string) : undefined;
  };
  const u64be = (key: string): bigint | undefined => {
    const v = md.find(([n]) => n === key)?.[1];
    return v && v.type === 't' ? bswap64(v.value as bigint) : undefined;
  };

  let metadata = str('xa.metadata');
  if (metadata === undefined) metadata = (await readTreeFile(repo, commit, 'metadata')) ?? '';
  let installedSize = u64be('xa.installed-size');
  let downloadSize = u64be('xa.download-size');
  if (installedSize === undefined || downloadSize === undefined) {
    const s = await measureTree(repo, commit.rootTree);
    installedSize = s.installed;
    downloadSize = s.download;
  }
  const subsetsV = md.find(([n]) => n === 'xa.subsets')?.[1];
  const subsets = subsetsV && subsetsV.type === 'as' ? (subsetsV.value as string[]) : [];

  const sparse: VarDict = [];
  const eol = str('ostree.endoflife');
  const eolr = str('ostree.endoflife-rebase');
  if (eol !== undefined) sparse.push(['eol', new Variant('s', eol)]);
  if (eolr !== undefined) sparse.push(['eolr', new Variant('s', eolr)]);
  const tokt = md.find(([n]) => n === 'xa.token-type')?.[1];
  // Stored little-endian (GINT32_TO_LE), which is how our parser reads it already.
  if (tokt && tokt.type === 'i' && (tokt.value as number) >= 0) sparse.push(['tokt', new Variant('i', tokt.value)]);

  const data: CommitData = {
    installedSize,
    downloadSize,
    metadata,
    subsets,
    sparse: sparse.length ? sparse : null,
    commitSize: bytes.length,
    timestamp: commit.timestamp,
  };
  if (memo.size >= 4096) memo.clear();
  memo.set(k, data);
  return data;
}

/** A small regular file at the top of a commit's tree, as text; null when absent. */
async function readTreeFile(repo: Repo, commit: Commit, name: string): Promise<string | null> {
  const root = await loadDirTree(repo, commit.rootTree);
  const f = root.files.find((e) => e.name === name);
  if (!f) return null;
  const opened = await openContent(repo, f.checksum);
  if (opened.size > MAX_METADATA_FILE) {
    opened.stream.destroy();
    return null;
  }
  const chunks: Buffer[] = [];
  for await (const c of opened.stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** flatpak_repo_collect_sizes: every regular file, path by path. */
async function measureTree(repo: Repo, rootTree: string): Promise<{ installed: bigint; download: bigint }> {
  let installed = 0n;
  let download = 0n;
  let visited = 0;
  const heads = new Map<string, { size: number; stored: number; link: boolean }>();
  const stack = [rootTree];
  while (stack.length) {
    const tree = await loadDirTree(repo, stack.pop()!);
    // Directories count too: dirtrees may share subtrees, so paths can double at every level with no file anywhere.
    const tooMany = () => new CairnError('TOO_LARGE', `tree ${rootTree} has more than ${MAX_SIZE_WALK_ENTRIES} paths`);
    for (const d of tree.dirs) {
      if (++visited > MAX_SIZE_WALK_ENTRIES) throw tooMany();
      stack.push(d.treeChecksum);
    }
    for (const f of tree.files) {
      if (++visited > MAX_SIZE_WALK_ENTRIES) throw tooMany();
      let h = heads.get(f.checksum);
      if (!h) {
        const head = await readContentHead(repo, f.checksum);
        h = { size: head.size, stored: head.storedSize, link: isSymlink(head.header) };
        heads.set(f.checksum, h);
      }
      if (h.link) continue;
      installed += BigInt(Math.ceil(h.size / 512) * 512);
      download += BigInt(h.stored);
    }
  }
  return { installed, download };
}
