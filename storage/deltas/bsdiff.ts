/**
 * bsdiff 4 / bspatch as OSTree static deltas use them (the `B` BSPATCH opcode).
 *
 * libostree embeds mendsley/bsdiff and feeds it a plain write callback, so the
 * patch inside a delta part is the raw stream, with no `BSDIFF40` header and no
 * per-block compression (the whole part is xz-compressed by the caller).
 * The stream is a sequence of chunks, each
 *
 *   ctrl:  3 × 8-byte little-endian sign-magnitude integers
 *          (top bit of byte 7 is the sign, NOT two's complement):
 *            diffLen   bytes to produce by adding diff bytes to old bytes
 *            extraLen  bytes to copy verbatim
 *            seek      added to the old position after diff and extra
 *   diff:  diffLen bytes, each added mod 256 to old[oldPos + i]
 *   extra: extraLen bytes
 *
 * repeated until the new file (whose size travels out of band, in the delta's
 * `o` op) is complete. See FORMATS.md §5.
 *
 * `bsdiff` is a faithful port of mendsley's `bsdiff_internal` (Colin Percival's
 * bsdiff 4.3 scan) and, given the same inputs, emits the same bytes as the C
 * code inside ostree: the suffix array is unique, so building it with SA-IS
 * instead of qsufsort changes only the speed (O(n) instead of O(n log n)).
 */
import { CairnError } from '../errors';

/** Bytes in one control block (three 64-bit integers). */
const CTRL_SIZE = 24;

/** mendsley's bspatch rejects control lengths above INT_MAX; so do we. */
const MAX_CTRL_LENGTH = 0x7fffffff;

/** The suffix array is an Int32Array holding oldSize + 1 entries. */
const MAX_OLD_SIZE = 0x7ffffffe;

// ---------------------------------------------------------------------------
// Public API

/**
 * Computes the bsdiff-4 stream turning `oldData` into `newData`: what the
 * OSTree `B` opcode expects between its offset and length in the part blob.
 *
 * Memory: an Int32Array suffix array of old (4 × (oldSize + 1) bytes), SA-IS
 * scratch of the same order while it is built, and the output (newSize plus
 * 24 bytes per chunk).
 */
export function bsdiff(oldData: Buffer, newData: Buffer): Buffer {
  const old = asBuffer(oldData);
  const nw = asBuffer(newData);
  if (old.length > MAX_OLD_SIZE) {
    throw new CairnError('TOO_LARGE', `bsdiff: old file of ${old.length} bytes is too large to index`);
  }
  return diffScan(old, nw, suffixArray(old));
}

/**
 * Applies a bsdiff-4 stream to `oldData`, producing exactly `newSize` bytes.
 *
 * Behaves like mendsley's `bspatch` (which ostree's dispatch_bspatch calls):
 * diff bytes whose old position falls outside `oldData` are added to 0, and
 * the old position may wander anywhere through `seek`. Unlike the C code, it
 * never trusts the patch: every length is checked against the patch and the
 * output before use, and a patch that does not end exactly where the output is
 * complete is refused. All failures are CairnError('INVALID_OBJECT').
 * Runtime is O(patch.length): each loop iteration consumes a 24-byte control.
 */
export function bspatch(oldData: Buffer, patch: Buffer, newSize: number): Buffer {
  const old = asBuffer(oldData);
  const p = asBuffer(patch);
  if (!Number.isSafeInteger(newSize) || newSize < 0) invalid(`new size ${newSize} is not a byte count`);
  // Every output byte is a diff or extra byte carried by the patch, so a patch
  // shorter than the output cannot succeed. Checking first keeps a hostile
  // size from making us allocate.
  if (newSize > p.length) invalid(`patch of ${p.length} bytes cannot produce ${newSize} bytes`);

  const out = Buffer.alloc(newSize);
  let newPos = 0;
  let oldPos = 0;
  let at = 0;
  while (newPos < newSize) {
    if (p.length - at < CTRL_SIZE) invalid('truncated control block', { at });
    const diffLen = readOff(p, at);
    const extraLen = readOff(p, at + 8);
    const seek = readOff(p, at + 16);
    at += CTRL_SIZE;

    // Sanity checks of bspatch.c, plus the patch-length checks its read
    // callback (ostree's bspatch_read) only g_assert()s.
    if (diffLen < 0 || diffLen > MAX_CTRL_LENGTH) invalid(`bad diff length ${diffLen}`, { at });
    if (extraLen < 0 || extraLen > MAX_CTRL_LENGTH) invalid(`bad extra length ${extraLen}`, { at });
    if (diffLen > newSize - newPos) invalid('diff runs past the end of the new file', { at, diffLen, newPos });
    if (diffLen > p.length - at) invalid('diff runs past the end of the patch', { at, diffLen });

    // new[i] = diff[i] + old[oldPos + i], with old bytes outside old reading
    // as 0 (bspatch.c adds only when 0 <= oldPos + i < oldSize). Copy the diff,
    // then add the in-range window [lo, hi) only, so nothing reads outside old.
    p.copy(out, newPos, at, at + diffLen);
    const lo = clamp(-oldPos, 0, diffLen);
    const hi = clamp(old.length - oldPos, lo, diffLen);
    for (let i = lo; i < hi; i++) out[newPos + i] = out[newPos + i] + old[oldPos + i]; // Uint8 store wraps mod 256
    at += diffLen;
    newPos += diffLen;
    oldPos += diffLen;

    if (extraLen > newSize - newPos) invalid('extra runs past the end of the new file', { at, extraLen, newPos });
    if (extraLen > p.length - at) invalid('extra runs past the end of the patch', { at, extraLen });
    p.copy(out, newPos, at, at + extraLen);
    at += extraLen;
    newPos += extraLen;

    oldPos += seek;
    // Out-of-range positions are legal (they read as 0), but must stay exact.
    if (!Number.isSafeInteger(oldPos)) invalid('old position overflows', { at });
  }
  if (at !== p.length) invalid(`${p.length - at} trailing bytes after the new file is complete`, { at });
  return out;
}

// ---------------------------------------------------------------------------
// Control integers: 8-byte little-endian sign-magnitude (offtout / offtin)

/** bsdiff.c offtout(). `x` is a safe integer, so the magnitude fits 53 bits. */
function writeOff(buf: Buffer, at: number, x: number): void {
  const mag = Math.abs(x);
  const hi = Math.floor(mag / 0x1_0000_0000);
  buf.writeUInt32LE(mag >>> 0, at);
  buf.writeUInt32LE((x < 0 ? hi | 0x8000_0000 : hi) >>> 0, at + 4);
}

/**
 * bspatch.c offtin(). Magnitudes above 2^53 − 1 cannot be represented exactly
 * and no real patch has them (they exceed any buffer), so they are refused.
 * A negative zero (0x80 in byte 7) reads as 0, as in C.
 */
function readOff(buf: Buffer, at: number): number {
  const lo = buf.readUInt32LE(at);
  const hiRaw = buf.readUInt32LE(at + 4);
  const hi = hiRaw & 0x7fff_ffff;
  if (hi > 0x1f_ffff) invalid('control value out of range', { at });
  const mag = hi * 0x1_0000_0000 + lo;
  return hiRaw & 0x8000_0000 ? -mag || 0 : mag;
}

// ---------------------------------------------------------------------------
// The bsdiff scan (bsdiff.c bsdiff_internal, bsdiff 4.3)

/** Growable output; the diff and extra bytes together are exactly newSize. */
class Output {
  buf: Buffer;
  len = 0;
  constructor(capacity: number) {
    this.buf = Buffer.allocUnsafe(capacity);
  }
  reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    // Only control blocks outgrow the initial newSize-based capacity, so grow
    // gently rather than doubling a buffer the size of the new file.
    const next = Buffer.allocUnsafe(Math.max(this.len + n, Math.ceil(this.buf.length * 1.125) + 4096));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  result(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

function diffScan(old: Buffer, nw: Buffer, I: Int32Array): Buffer {
  const oldSize = old.length;
  const newSize = nw.length;
  const out = new Output(newSize + 16 * CTRL_SIZE);
  const found = { pos: 0 };

  let scan = 0;
  let len = 0;
  let pos = 0;
  let lastScan = 0;
  let lastPos = 0;
  let lastOffset = 0;

  while (scan < newSize) {
    // Find the next place worth starting a new chunk. `oldScore` counts how
    // many of new[scsc..scan+len) the *previous* alignment (lastOffset) already
    // matches; a fresh exact match of `len` bytes is only worth a new control
    // if it beats that alignment by more than 8 bytes (the cost of switching).
    // len === oldScore means the old alignment still matches: keep extending
    // the current chunk by jumping over the match.
    let oldScore = 0;
    let scsc = (scan += len);
    for (; scan < newSize; scan++) {
      len = search(I, old, nw, scan, 0, oldSize, found);
      pos = found.pos;

      for (; scsc < scan + len; scsc++) {
        if (scsc + lastOffset < oldSize && old[scsc + lastOffset] === nw[scsc]) oldScore++;
      }
      if ((len === oldScore && len !== 0) || len > oldScore + 8) break;
      if (scan + lastOffset < oldSize && old[scan + lastOffset] === nw[scan]) oldScore--;
    }

    if (len !== oldScore || scan === newSize) {
      // Forward extension: how far past lastScan the previous alignment is
      // still "mostly" right (more than half of the bytes equal). Those bytes
      // become the diff, which compresses to nearly nothing where equal.
      let s = 0;
      let sf = 0;
      let lenf = 0;
      for (let i = 0; lastScan + i < scan && lastPos + i < oldSize; ) {
        if (old[lastPos + i] === nw[lastScan + i]) s++;
        i++;
        if (s * 2 - i > sf * 2 - lenf) {
          sf = s;
          lenf = i;
        }
      }

      // Backward extension: the same, from the new match at (scan, pos) back.
      let lenb = 0;
      if (scan < newSize) {
        let sb = 0;
        s = 0;
        for (let i = 1; scan >= lastScan + i && pos >= i; i++) {
          if (old[pos - i] === nw[scan - i]) s++;
          if (s * 2 - i > sb * 2 - lenb) {
            sb = s;
            lenb = i;
          }
        }
      }

      // If the two extensions overlap, split the overlap where the forward
      // alignment stops scoring better than the backward one.
      if (lastScan + lenf > scan - lenb) {
        const overlap = lastScan + lenf - (scan - lenb);
        s = 0;
        let ss = 0;
        let lens = 0;
        for (let i = 0; i < overlap; i++) {
          if (nw[lastScan + lenf - overlap + i] === old[lastPos + lenf - overlap + i]) s++;
          if (nw[scan - lenb + i] === old[pos - lenb + i]) s--;
          if (s > ss) {
            ss = s;
            lens = i + 1;
          }
        }
        lenf += lens - overlap;
        lenb -= lens;
      }

      const extraLen = scan - lenb - (lastScan + lenf);
      out.reserve(CTRL_SIZE + lenf + extraLen);
      const buf = out.buf;
      let w = out.len;
      writeOff(buf, w, lenf);
      writeOff(buf, w + 8, extraLen);
      writeOff(buf, w + 16, pos - lenb - (lastPos + lenf));
      w += CTRL_SIZE;
      for (let i = 0; i < lenf; i++) buf[w + i] = nw[lastScan + i] - old[lastPos + i]; // wraps mod 256
      w += lenf;
      nw.copy(buf, w, lastScan + lenf, lastScan + lenf + extraLen);
      out.len = w + extraLen;

      lastScan = scan - lenb;
      lastPos = pos - lenb;
      lastOffset = pos - scan;
    }
  }
  return out.result();
}

/**
 * bsdiff.c search(): binary search of the suffix array I[st..en] for the
 * suffix of old sharing the longest prefix with new[from..]; returns that
 * length and sets `found.pos`. Iterative, but the same midpoints and the same
 * tie-breaks (prefer I[en] on equal lengths) as the recursive C, so the output
 * matches byte for byte.
 */
function search(I: Int32Array, old: Buffer, nw: Buffer, from: number, st: number, en: number, found: { pos: number }): number {
  while (en - st >= 2) {
    const x = st + ((en - st) >>> 1);
    if (suffixLess(old, I[x], nw, from)) st = x;
    else en = x;
  }
  const a = I[st];
  const b = I[en];
  const x = matchLen(old, a, nw, from);
  const y = matchLen(old, b, nw, from);
  if (x > y) {
    found.pos = a;
    return x;
  }
  found.pos = b;
  return y;
}

/** memcmp(old + a, new + b, min(lengths)) < 0. Short prefixes are compared
 * inline (the common case); long equal runs go to native memcmp. */
function suffixLess(old: Buffer, a: number, nw: Buffer, b: number): boolean {
  const n = Math.min(old.length - a, nw.length - b);
  const inline = Math.min(n, 32);
  for (let i = 0; i < inline; i++) {
    const d = old[a + i] - nw[b + i];
    if (d !== 0) return d < 0;
  }
  if (n === inline) return false;
  return old.compare(nw, b + inline, b + n, a + inline, a + n) < 0;
}

/** bsdiff.c matchlen(): length of the common prefix of old[a..] and new[b..]. */
function matchLen(old: Buffer, a: number, nw: Buffer, b: number): number {
  const n = Math.min(old.length - a, nw.length - b);
  let i = 0;
  while (i < n && old[a + i] === nw[b + i]) i++;
  return i;
}

// ---------------------------------------------------------------------------
// Suffix array (SA-IS: Nong, Zhang & Chan 2009)

/**
 * The suffix array of `data` in the layout bsdiff's qsufsort produces: length
 * n + 1, I[0] = n (the empty suffix, smallest), then the start offsets of all
 * suffixes in lexicographic order (a proper prefix sorts first).
 * Exported for tests.
 */
export function suffixArray(data: Uint8Array): Int32Array {
  const n = data.length;
  if (n > MAX_OLD_SIZE) throw new CairnError('TOO_LARGE', `cannot index ${n} bytes`);
  const I = new Int32Array(n + 1);
  I[0] = n;
  // A plain Uint8Array view (not a Buffer) keeps the element accesses in
  // saIs to two typed-array kinds, which V8 optimizes far better.
  saIs(new Uint8Array(data.buffer, data.byteOffset, n), 255, I.subarray(1));
  return I;
}

/** Below this, a comparison sort is faster than setting up SA-IS. */
const NAIVE_THRESHOLD = 16;

/**
 * Fills `sa` (length n = s.length) with the suffix array of `s`, whose values
 * lie in [0, upper]. The end of the string acts as a sentinel smaller than
 * every symbol. Recurses on the reduced string of LMS substrings, which is at
 * most n/2 long, so total work and memory are O(n).
 */
function saIs(s: Uint8Array | Int32Array, upper: number, sa: Int32Array): void {
  const n = s.length;
  if (n === 0) return;
  if (n === 1) {
    sa[0] = 0;
    return;
  }
  if (n < NAIVE_THRESHOLD) {
    saNaive(s, sa);
    return;
  }

  // Classify suffixes: S-type if smaller than the suffix after it, else L.
  // The last suffix is L: the virtual sentinel after it is smaller. Symbol and
  // type are packed into one array, ts[i] = s[i] << 1 | isS, because induced
  // sorting looks both up at random positions: one cache miss instead of two.
  const ts = upper < 0x8000 ? new Uint16Array(n) : new Int32Array(n);
  ts[n - 1] = s[n - 1] << 1;
  for (let i = n - 2; i >= 0; i--) {
    const c = s[i];
    const d = s[i + 1];
    ts[i] = (c << 1) | (c === d ? ts[i + 1] & 1 : c < d ? 1 : 0);
  }

  // Bucket boundaries per symbol c: sumL[c] is where c's bucket (its L-type
  // part) starts, sumS[c] where its S-type part starts.
  const sumL = new Int32Array(upper + 1);
  const sumS = new Int32Array(upper + 1);
  for (let i = 0; i < n; i++) {
    const t = ts[i];
    if ((t & 1) === 0) sumS[t >> 1]++;
    else sumL[(t >> 1) + 1]++; // an S-type symbol is < upper, so c + 1 is in range
  }
  for (let c = 0; c <= upper; c++) {
    sumS[c] += sumL[c];
    if (c < upper) sumL[c + 1] += sumS[c];
  }
  const buf = new Int32Array(upper + 1);

  // Induced sorting: seed the LMS positions at the ends of their buckets'
  // S-parts, induce L-types left to right, then S-types right to left.
  const induce = (lms: Int32Array): void => {
    sa.fill(-1);
    buf.set(sumS);
    for (let i = 0; i < lms.length; i++) {
      const d = lms[i];
      sa[buf[ts[d] >> 1]++] = d;
    }
    buf.set(sumL);
    sa[buf[ts[n - 1] >> 1]++] = n - 1;
    for (let i = 0; i < n; i++) {
      const v = sa[i];
      if (v < 1) continue;
      const t = ts[v - 1];
      if ((t & 1) === 0) sa[buf[t >> 1]++] = v - 1;
    }
    buf.set(sumL);
    for (let i = n - 1; i >= 0; i--) {
      const v = sa[i];
      if (v < 1) continue;
      const t = ts[v - 1];
      if ((t & 1) === 1) sa[--buf[(t >> 1) + 1]] = v - 1;
    }
  };

  // LMS (leftmost S) positions: S-type right after an L-type.
  const lmsMap = new Int32Array(n + 1).fill(-1);
  let m = 0;
  for (let i = 1; i < n; i++) if ((ts[i - 1] & 1) === 0 && (ts[i] & 1) === 1) lmsMap[i] = m++;
  const lms = new Int32Array(m);
  for (let i = 1, j = 0; i < n; i++) if ((ts[i - 1] & 1) === 0 && (ts[i] & 1) === 1) lms[j++] = i;

  // First pass sorts the LMS substrings (not yet whole suffixes).
  induce(lms);
  if (m === 0) return;

  const sortedLms = new Int32Array(m);
  for (let i = 0, j = 0; i < n; i++) {
    const v = sa[i];
    if (lmsMap[v] !== -1) sortedLms[j++] = v;
  }

  // Name each LMS substring by rank; equal substrings share a name.
  const recS = new Int32Array(m);
  let recUpper = 0;
  recS[lmsMap[sortedLms[0]]] = 0;
  for (let i = 1; i < m; i++) {
    let l = sortedLms[i - 1];
    let r = sortedLms[i];
    const endL = lmsMap[l] + 1 < m ? lms[lmsMap[l] + 1] : n;
    const endR = lmsMap[r] + 1 < m ? lms[lmsMap[r] + 1] : n;
    let same = true;
    if (endL - l !== endR - r) {
      same = false;
    } else {
      while (l < endL && s[l] === s[r]) {
        l++;
        r++;
      }
      if (l === n || s[l] !== s[r]) same = false;
    }
    if (!same) recUpper++;
    recS[lmsMap[sortedLms[i]]] = recUpper;
  }

  // Sort the reduced string; when all names differ its order is immediate.
  const recSa = new Int32Array(m);
  if (recUpper + 1 === m) {
    for (let i = 0; i < m; i++) recSa[recS[i]] = i;
  } else {
    saIs(recS, recUpper, recSa);
  }
  for (let i = 0; i < m; i++) sortedLms[i] = lms[recSa[i]];

  // Second pass: with LMS suffixes in true order, induction sorts everything.
  induce(sortedLms);
}

function saNaive(s: Uint8Array | Int32Array, sa: Int32Array): void {
  const n = s.length;
  const idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => {
    if (a === b) return 0;
    while (a < n && b < n) {
      if (s[a] !== s[b]) return s[a] - s[b];
      a++;
      b++;
    }
    return a === n ? -1 : 1; // the one that ran out is a prefix: it sorts first
  });
  sa.set(idx);
}

// ---------------------------------------------------------------------------
// helpers

function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function invalid(why: string, details?: Record<string, unknown>): never {
  throw new CairnError('INVALID_OBJECT', `invalid bsdiff patch: ${why}`, details);
}
