/**
 * Where the compiled parts of a static delta go: inside the superblock
 * (inline, in an order that may repeat a part), in part files of their own, or
 * nowhere, their objects listed as fallbacks the client fetches loose.
 *
 * Why it matters (docs/delta-bytes.md has the evidence): ostree 2022.x marks
 * the to-commit partial and walks its tree while the delta's parts are still
 * being applied (ostree #2053, fixed only in 2023.7), and fetches loose every
 * object not written yet: for a root filesystem update the host downloaded
 * 1.4× the bytes of a pull without delta, for a 5 MB binary patched by a 2 kB
 * delta the whole 5 MB. Parts carried inline are executed as soon as the
 * superblock is read, each counted as an outstanding write, and with three or
 * more of them outstanding the client starts no fetch at all, so the tree walk
 * finds nearly everything already written: 0.6× of the bytes instead.
 *
 * The rule:
 *   - a from-scratch delta keeps its part files: a host with nothing has no
 *     tree to race with (bench:delta: it downloads the delta and its
 *     fallbacks, nothing more), and ostree's layout and size are kept;
 *   - a delta between two commits goes inline when the superblock stays within
 *     INLINE_BUDGET (the client reads a superblock of at most 10 MiB);
 *   - otherwise the parts holding metadata (the client refuses metadata
 *     fallbacks) and then the parts that save the most against their objects'
 *     loose size go inline up to the budget; the objects of the other parts
 *     become fallbacks, fetched loose once, as a pull without delta would: no
 *     object is ever paid twice. When the metadata alone does not fit, every
 *     part is a file of its own;
 *   - fewer than MIN_OUTSTANDING parts inline leave the client's queue open: the
 *     part with the most at risk is then carried MIN_OUTSTANDING times (same
 *     bytes, same header; the client applies each copy, the later ones finding
 *     their objects written), when its content costs more loose than the
 *     copies do and the copies fit the budget.
 * Pure and deterministic: the same parts give the same placement.
 */

/** What placement needs to know of one compiled part. */
export interface PartFacts {
  /** Bytes of the part file (compression byte + payload). */
  size: number;
  /** Objects the part writes. */
  objects: number;
  /** Whether it writes a dirtree or dirmeta (such parts are never dropped). */
  hasMetadata: boolean;
  /** Sum of the loose (archive) sizes of its content objects: what they cost as fallbacks. */
  looseBytes: number;
}

export type PlacementPlan =
  /** Every part in a file of its own, in order (ostree's layout). */
  | { kind: 'files' }
  /** `inline`: part indexes in superblock order (a part may appear more than once); `fallback`: parts whose objects become fallbacks. */
  | { kind: 'inline'; inline: number[]; fallback: number[] };

/** The client's limit on a superblock (OSTREE_MAX_METADATA_SIZE, 10 MiB). */
export const CLIENT_SUPERBLOCK_LIMIT = 10 * 1024 * 1024;
export const INLINE_BUDGET = Math.floor(9.5 * 1024 * 1024);
/** Writes outstanding at which the 2022.x client starts no fetch (ostree-repo-private.h). */
export const MIN_OUTSTANDING = 3;

/** Superblock bytes one inline part adds beyond its file: its key (`FROM-TO/N`) and framing. */
export const INLINE_ENTRY_OVERHEAD = 200;
/** Superblock bytes of one fallback entry (type, checksum, sizes). */
export const FALLBACK_ENTRY_BYTES = 56;
/** Superblock bytes of one object in a part header (type byte + checksum). */
export const HEADER_OBJECT_BYTES = 33;

export interface PlacementInput {
  parts: PartFacts[];
  /** Superblock bytes without any inline part or dropped-part fallback (commit, headers, existing fallbacks). */
  baseBytes: number;
  fromScratch: boolean;
  budget?: number;
}

export function placeParts(input: PlacementInput): PlacementPlan {
  const budget = input.budget ?? INLINE_BUDGET;
  const { parts } = input;
  if (input.fromScratch || parts.length === 0) return { kind: 'files' };
  const inlineCost = (p: PartFacts) => p.size + INLINE_ENTRY_OVERHEAD;
  /** A repeated part adds its file and its header again. */
  const copyCost = (p: PartFacts) => inlineCost(p) + 64 + p.objects * HEADER_OBJECT_BYTES;
  const all = parts.map((_, i) => i);
  let used = input.baseBytes + parts.reduce((n, p) => n + inlineCost(p), 0);
  let inline = all;
  let fallback: number[] = [];
  if (used > budget) {
    // A dropped part leaves its header and gains its objects as fallbacks.
    const dropCost = (p: PartFacts) => p.objects * (FALLBACK_ENTRY_BYTES - HEADER_OBJECT_BYTES);
    used = input.baseBytes + parts.reduce((n, p) => n + dropCost(p), 0);
    const keep = new Set<number>();
    parts.forEach((p, i) => {
      if (!p.hasMetadata) return;
      keep.add(i);
      used += inlineCost(p) - dropCost(p);
    });
    if (used > budget) return { kind: 'files' };
    // Best savings per inline byte first; ties by position, so the result is deterministic.
    const rest = all.filter((i) => !parts[i]!.hasMetadata && parts[i]!.looseBytes > parts[i]!.size);
    rest.sort((a, b) => parts[b]!.looseBytes / parts[b]!.size - parts[a]!.looseBytes / parts[a]!.size || a - b);
    for (const i of rest) {
      const extra = inlineCost(parts[i]!) - dropCost(parts[i]!);
      if (used + extra > budget) continue;
      keep.add(i);
      used += extra;
    }
    inline = all.filter((i) => keep.has(i));
    fallback = all.filter((i) => !keep.has(i));
  }
  if (inline.length < MIN_OUTSTANDING) {
    // The part with the most at risk (the slow one to apply; ties by position) is carried
    // MIN_OUTSTANDING times: the copies alone keep the queue closed until it is written, however
    // soon the other part is done.
    const riskiest = [...inline].sort((a, b) => parts[b]!.looseBytes - parts[a]!.looseBytes || a - b)[0]!;
    const copies = Array.from({ length: MIN_OUTSTANDING - 1 }, () => riskiest);
    const extra = copies.length * copyCost(parts[riskiest]!);
    if (parts[riskiest]!.looseBytes > extra && used + extra <= budget) inline = [...inline, ...copies];
  }
  return { kind: 'inline', inline, fallback };
}
