// Where a delta's parts go (storage/deltas/placement.ts): inline while the superblock stays within
// the client's limit; over it, metadata parts and the best-saving parts inline and the rest's
// objects as fallbacks (never an object paid twice); fewer than three inline parts repeated when
// what they put at risk costs more than the copies; from-scratch deltas keep part files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FALLBACK_ENTRY_BYTES, HEADER_OBJECT_BYTES, INLINE_BUDGET, INLINE_ENTRY_OVERHEAD, placeParts, type PartFacts } from '../../storage/deltas/placement';

const MB = 1000 * 1000;
const part = (size: number, looseBytes: number, hasMetadata = false, objects = 10): PartFacts => ({ size, looseBytes, hasMetadata, objects });
const inline = (inl: number[], fallback: number[] = []) => ({ kind: 'inline', inline: inl, fallback });

test('a delta between two commits that fits is all inline', () => {
  const parts = [part(2 * MB, 3 * MB, true), part(2 * MB, 4 * MB), part(2 * MB, 2.5 * MB), part(1 * MB, 1.1 * MB)];
  assert.deepEqual(placeParts({ parts, baseBytes: 50_000, fromScratch: false }), inline([0, 1, 2, 3]));
  // exactly at the budget still fits; one byte more does not
  const exact = INLINE_BUDGET - 4 * INLINE_ENTRY_OVERHEAD - parts.reduce((n, p) => n + p.size, 0);
  assert.deepEqual(placeParts({ parts, baseBytes: exact, fromScratch: false }), inline([0, 1, 2, 3]));
  assert.notDeepEqual(placeParts({ parts, baseBytes: exact + 1, fromScratch: false }), inline([0, 1, 2, 3]));
});

test('a from-scratch delta keeps its part files, within the budget or over it', () => {
  const parts = Array.from({ length: 8 }, (_, i) => part(2 * MB, 3 * MB, i === 0));
  assert.deepEqual(placeParts({ parts, baseBytes: 100_000, fromScratch: true }), { kind: 'files' });
  assert.deepEqual(placeParts({ parts: parts.slice(0, 1), baseBytes: 1_000, fromScratch: true }), { kind: 'files' });
});

test('over the budget: metadata parts, then the best savings per byte inline, the rest fallbacks', () => {
  const parts = [
    part(2 * MB, 2.2 * MB, true), // metadata: always inline
    part(2 * MB, 2.1 * MB), // saves 5%
    part(2 * MB, 6 * MB), // saves 3×
    part(2 * MB, 4 * MB), // saves 2×
    part(2 * MB, 1.9 * MB), // costs more than its objects loose: never inline
    part(2 * MB, 5 * MB), // saves 2.5×
    part(2 * MB, 3 * MB), // 1.5×
  ];
  // 9.5 MiB ≈ 9.96 MB: metadata + the three best (3×, 2.5×, 2×) fit, a fifth 2 MB part does not
  assert.deepEqual(placeParts({ parts, baseBytes: 100_000, fromScratch: false }), inline([0, 2, 3, 5], [1, 4, 6]));
});

test('a smaller part further down the ranking still takes the room left', () => {
  // 1 + 4 + 4 MB inline (the two best), the 2 MB part (1.1×) no longer fits, the 0.5 MB one (1.2×) does
  const parts = [part(1 * MB, 1 * MB, true), part(4 * MB, 16 * MB), part(4 * MB, 12 * MB), part(2 * MB, 2.2 * MB), part(0.5 * MB, 0.6 * MB)];
  assert.deepEqual(placeParts({ parts, baseBytes: 100_000, fromScratch: false }), inline([0, 1, 2, 4], [3]));
});

test('metadata that alone exceeds the budget: every part a file', () => {
  const parts = [part(6 * MB, 6 * MB, true), part(5 * MB, 5.5 * MB, true), part(1 * MB, 9 * MB)];
  assert.deepEqual(placeParts({ parts, baseBytes: 100_000, fromScratch: false }), { kind: 'files' });
});

test('dropping a part counts its fallback entries against the budget', () => {
  // Many tiny objects: dropping the big part would add 400,000 fallback entries (~9 MB), which no longer fits
  const many = 400_000;
  const parts = [part(1 * MB, 1 * MB, true, 10), part(20 * MB, 40 * MB, false, many)];
  assert.ok(many * (FALLBACK_ENTRY_BYTES - HEADER_OBJECT_BYTES) + 1 * MB > INLINE_BUDGET);
  assert.deepEqual(placeParts({ parts, baseBytes: 100_000, fromScratch: false }), { kind: 'files' });
});

test('fewer than three parts: the riskiest carried three times when that costs less than what it puts at risk', () => {
  // a 2 kB patch of a 5 MB binary: three copies (6 kB) against 5 MB fetched loose
  assert.deepEqual(placeParts({ parts: [part(2_000, 5 * MB, true, 4)], baseBytes: 1_000, fromScratch: false }), inline([0, 0, 0]));
  // two parts: the one with more at risk is carried three times
  assert.deepEqual(placeParts({ parts: [part(1_000, 0, true, 3), part(50_000, 900_000)], baseBytes: 1_000, fromScratch: false }), inline([0, 1, 1, 1]));
  // nothing at risk (a deleted folder: metadata only), or less than the copies cost: no copies
  assert.deepEqual(placeParts({ parts: [part(1_000, 0, true, 2)], baseBytes: 1_000, fromScratch: false }), inline([0]));
  assert.deepEqual(placeParts({ parts: [part(10_000, 15_000, true, 2)], baseBytes: 1_000, fromScratch: false }), inline([0]));
  // copies that would not fit the budget are not made
  assert.deepEqual(placeParts({ parts: [part(4 * MB, 12 * MB, true)], baseBytes: 1_000, fromScratch: false }), inline([0]));
});

test('placement is a pure function of the parts (ties broken by position)', () => {
  const parts = Array.from({ length: 12 }, (_, i) => part(1.5 * MB, 3 * MB, i === 5));
  const a = placeParts({ parts, baseBytes: 10_000, fromScratch: false });
  const b = placeParts({ parts: parts.map((p) => ({ ...p })), baseBytes: 10_000, fromScratch: false });
  assert.deepEqual(a, b);
  // equal savings: the earliest parts win, the metadata part always
  assert.deepEqual(a, inline([0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]));
});
