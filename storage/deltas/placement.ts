/**
 * Where each compiled part of a static delta goes: inside the superblock
 * ("inline"), in a part file of its own ("file"), or nowhere, its objects
 * listed as fallbacks the client fetches loose ("fallback").
 *
 * Why it matters (docs/delta-bytes.md has the evidence): ostree 2022.x marks
 * the to-commit partial and walks its tree while the delta's parts are still
 * being applied (ostree #2053, fixed only in 2023.7), and fetches loose every
 * object not written yet: for a root filesystem update the host downloaded
 * 1.4× the bytes of a pull without delta. Parts carried inline are executed as
 * soon as the superblock is read, each counted as an outstanding write, and
 * with three or more of them outstanding the client starts no fetch at all, so
 * the tree walk finds nearly everything already written: 0.6× instead.
 *
 * The rule:
 *   - a from-scratch delta keeps its part files: a host with nothing has no
 *     tree to race with (bench:delta: it downloads the delta and its
 *     fallbacks, nothing more), and ostree's layout and size are kept;
 *   - parts that are small together (under INLINE_MIN) stay files: the client
 *     applies them in milliseconds, there is nothing to race for, and each
 *     inline entry would add its key to the superblock;
 *   - everything inline when the superblock stays within INLINE_BUDGET (the
 *     client reads a superblock of at most 10 MiB);
 *   - otherwise: the parts holding metadata
 *     (the client refuses metadata fallbacks) and then the parts that save the
 *     most against their objects' loose size, inline up to the budget; the
 *     objects of the other parts become fallbacks, fetched loose once, as a
 *     pull without delta would: no object is ever paid twice. When the
 *     metadata alone does not fit, every part is a file of its own.
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

export type Placement = 'inline' | 'file' | 'fallback';

/** The client's limit on a superblock (OSTREE_MAX_METADATA_SIZE, 10 MiB), less a margin. */
export const CLIENT_SUPERBLOCK_LIMIT = 10 * 1024 * 1024;
export const INLINE_BUDGET = Math.floor(9.5 * 1024 * 1024);
/** Parts smaller than this together stay files. */
export const INLINE_MIN = 64 * 1024;

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

export function placeParts(input: PlacementInput): Placement[] {
  const budget = input.budget ?? INLINE_BUDGET;
  const { parts } = input;
  const files = parts.map((): Placement => 'file');
  if (input.fromScratch || parts.reduce((n, p) => n + p.size, 0) < INLINE_MIN) return files;
  const inlineCost = (p: PartFacts) => p.size + INLINE_ENTRY_OVERHEAD;
  const allInline = input.baseBytes + parts.reduce((n, p) => n + inlineCost(p), 0);
  if (allInline <= budget) return parts.map(() => 'inline');

  const placement = parts.map((): Placement => 'fallback');
  let used = input.baseBytes;
  // A dropped part leaves its header and gains its objects as fallbacks.
  const dropCost = (p: PartFacts) => p.objects * (FALLBACK_ENTRY_BYTES - HEADER_OBJECT_BYTES);
  for (const p of parts) used += dropCost(p);
  parts.forEach((p, i) => {
    if (!p.hasMetadata) return;
    placement[i] = 'inline';
    used += inlineCost(p) - dropCost(p);
  });
  if (used > budget) return files;
  // Best savings per inline byte first; ties by position, so the result is deterministic.
  const rest = parts
    .map((p, i) => ({ p, i }))
    .filter(({ p }) => !p.hasMetadata && p.looseBytes > p.size)
    .sort((a, b) => b.p.looseBytes / b.p.size - a.p.looseBytes / a.p.size || a.i - b.i);
  for (const { p, i } of rest) {
    const extra = inlineCost(p) - dropCost(p);
    if (used + extra > budget) continue;
    placement[i] = 'inline';
    used += extra;
  }
  return placement;
}
