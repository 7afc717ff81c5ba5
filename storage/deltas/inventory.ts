import { sha256Hex } from '../objects/checksum';
import { compareBytes, type Repo } from '../repo/repo';
import { decodeSuperblock, deltaName, parseDeltaKey, superblockKey } from './format';

/** One static delta as the API and `cairn delta list` show it. */
export interface DeltaInfo {
  /** `FROM-TO` or `TO` in hex. */
  name: string;
  from: string | null;
  to: string;
  /** SHA-256 of the superblock (what the summary and the index list). */
  digest: string;
  /** Bytes of the superblock and its part files. */
  size: number;
  /** Parts listed by the superblock (inline ones included); null if it cannot be decoded. */
  parts: number | null;
}

/**
 * Every delta of the repository that has a superblock (a folder without one
 * is an interrupted generation and is not a delta), sorted by name.
 */
export async function listDeltas(repo: Repo): Promise<DeltaInfo[]> {
  const dirs = new Map<string, { from: string | null; to: string; files: string[] }>();
  for await (const key of repo.backend.list('deltas')) {
    const k = parseDeltaKey(key);
    if (!k) continue;
    const name = deltaName(k.from, k.to);
    let d = dirs.get(name);
    if (!d) dirs.set(name, (d = { from: k.from, to: k.to, files: [] }));
    d.files.push(key);
  }
  const out: DeltaInfo[] = [];
  for (const [name, d] of dirs) {
    const sb = await repo.backend.read(superblockKey(d.from, d.to));
    if (!sb) continue;
    let size = 0;
    for (const f of d.files) size += (await repo.backend.stat(f))?.size ?? 0;
    let parts: number | null = null;
    try {
      parts = decodeSuperblock(sb.data).parts.length;
    } catch {
      /* listed anyway: `cairn delta show` says what is wrong with it */
    }
    out.push({ name, from: d.from, to: d.to, digest: sha256Hex(sb.data), size, parts });
  }
  return out.sort((a, b) => compareBytes(a.name, b.name));
}

/** Whether the delta `from → to` exists (its superblock is there: parts are written before it). */
export async function deltaExists(repo: Repo, from: string | null, to: string): Promise<boolean> {
  return (await repo.backend.stat(superblockKey(from, to))) !== null;
}
