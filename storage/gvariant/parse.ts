import { CairnError } from '../errors';
import { type GType, alignUp, offsetSizeFor, parseType } from './types';
import { serialize } from './serialize';
import { Variant } from './variant';

const utf8 = new TextDecoder('utf-8', { fatal: true });

function invalid(why: string, details?: Record<string, unknown>): never {
  throw new CairnError('INVALID_GVARIANT', `invalid GVariant data: ${why}`, details);
}

/**
 * Bounds on the work one parse may do. Every value the parser produces (each
 * basic value, string, array, tuple, dict entry, variant, maybe) costs one
 * element; `ay` is returned as a view of the input and costs one in all. An
 * array's element count is known from its size (fixed-size elements) or its
 * offset table before any element is read, so an over-long array is refused
 * before anything is allocated for it. Time and memory follow from the count
 * (each element is O(1) work plus its bytes, and the normal-form check
 * re-serializes what was parsed).
 */
export interface ParseLimits {
  /** Values produced by one parse, all containers together. */
  maxElements: number;
  /** Elements of any one array. */
  maxContainerElements: number;
}

/**
 * The defaults fit every legitimate OSTree object under the 10 MiB metadata
 * limit: a dirtree entry costs 3 elements and at least 36 bytes, so a 10 MiB
 * dirtree stays under 900k elements and 300k entries in one array.
 */
export const DEFAULT_PARSE_LIMITS: Readonly<ParseLimits> = Object.freeze({ maxElements: 1_000_000, maxContainerElements: 500_000 });

export interface ParseOptions {
  /** Refuse bytes that are not in normal form (default true). */
  requireNormal?: boolean;
  /** Overrides of DEFAULT_PARSE_LIMITS. */
  limits?: Partial<ParseLimits>;
}

/** Remaining budget of one parse. */
interface Budget {
  left: number;
  maxElements: number;
  maxContainer: number;
}

function charge(b: Budget, n: number): void {
  b.left -= n;
  if (b.left < 0) invalid(`more than ${b.maxElements} elements`, { limit: 'maxElements', max: b.maxElements });
}

/** Refuses an array of `n` elements before any of them is built. */
function reserveArray(b: Budget, n: number): void {
  if (n > b.maxContainer) invalid(`array of ${n} elements exceeds the limit of ${b.maxContainer}`, { limit: 'maxContainerElements', max: b.maxContainer });
  if (n > b.left) invalid(`more than ${b.maxElements} elements`, { limit: 'maxElements', max: b.maxElements });
}

/**
 * Parses `data` as `type`. Every offset is bounds-checked; malformed framing
 * throws INVALID_GVARIANT. With `requireNormal` (the default), bytes that parse
 * but are not in normal form (non-zero padding, wide offsets, booleans other
 * than 0/1, …) are refused too: the normal form is unique, so re-serializing
 * must give back exactly the input. More elements than `limits` allow (see
 * ParseLimits) is INVALID_GVARIANT too, with `details.limit` naming the limit.
 */
export function parse(type: string | GType, data: Buffer, opts: ParseOptions = {}): any {
  const t = typeof type === 'string' ? parseType(type) : type;
  const maxElements = opts.limits?.maxElements ?? DEFAULT_PARSE_LIMITS.maxElements;
  const maxContainer = opts.limits?.maxContainerElements ?? DEFAULT_PARSE_LIMITS.maxContainerElements;
  const budget: Budget = { left: maxElements, maxElements, maxContainer };
  let value: unknown;
  try {
    value = parseAt(t, data, 0, data.length, 0, budget);
  } catch (e) {
    if (e instanceof CairnError) throw e;
    // RangeError from Buffer reads or a stack overflow on hostile nesting.
    invalid((e as Error).message);
  }
  if (opts.requireNormal !== false) {
    const again = serialize(t, value);
    if (!again.equals(data)) invalid(`not in normal form for type ${t.str}`);
  }
  return value;
}

/** Convenience: true when `data` is valid normal-form `type`. */
export function isNormalForm(type: string, data: Buffer): boolean {
  try {
    parse(type, data);
    return true;
  } catch {
    return false;
  }
}

const MAX_DEPTH = 128;

function readOffset(buf: Buffer, at: number, w: number): number {
  if (w === 8) {
    const v = buf.readBigUInt64LE(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) invalid('offset out of range');
    return Number(v);
  }
  return buf.readUIntLE(at, w);
}

/** A type string is at most 255 bytes: the separator of a variant is within the last 256. */
const MAX_VARIANT_TYPE_TAIL = 256;

function parseAt(t: GType, buf: Buffer, start: number, end: number, depth: number, b: Budget): unknown {
  if (depth > MAX_DEPTH) invalid('nested too deeply');
  charge(b, 1);
  const size = end - start;
  if (t.fixedSize !== null && size !== t.fixedSize) invalid(`${t.str} needs ${t.fixedSize} bytes, has ${size}`);
  switch (t.kind) {
    case 'basic':
      return parseBasic(t, buf, start, end);
    case 'variant': {
      if (size === 0) invalid('empty variant');
      let sep = end - 1;
      const lowest = Math.max(start, end - MAX_VARIANT_TYPE_TAIL);
      while (sep >= lowest && buf[sep] !== 0) sep--;
      if (sep < lowest) invalid('variant without type separator');
      const typeStr = buf.toString('latin1', sep + 1, end);
      const inner = parseType(typeStr);
      return new Variant(typeStr, parseAt(inner, buf, start, sep, depth + 1, b));
    }
    case 'maybe': {
      if (size === 0) return null;
      if (t.elem.fixedSize !== null) return parseAt(t.elem, buf, start, end, depth + 1, b);
      if (buf[end - 1] !== 0) invalid('maybe without trailing zero');
      return parseAt(t.elem, buf, start, end - 1, depth + 1, b);
    }
    case 'array':
      return parseArray(t, buf, start, end, depth, b);
    case 'tuple':
    case 'dictentry':
      return parseMembers(t.members, buf, start, end, depth, b);
  }
}

function parseBasic(t: GType & { kind: 'basic' }, buf: Buffer, start: number, end: number): unknown {
  switch (t.char) {
    case 's':
    case 'o':
    case 'g': {
      if (end - start < 1 || buf[end - 1] !== 0) invalid('string not NUL-terminated');
      const bytes = buf.subarray(start, end - 1);
      if (bytes.includes(0)) invalid('string contains NUL');
      try {
        return utf8.decode(bytes);
      } catch {
        invalid('string is not valid UTF-8');
      }
    }
    // falls through (unreachable: invalid() throws)
    case 'b':
      return buf[start] !== 0;
    case 'y':
      return buf.readUInt8(start);
    case 'n':
      return buf.readInt16LE(start);
    case 'q':
      return buf.readUInt16LE(start);
    case 'i':
    case 'h':
      return buf.readInt32LE(start);
    case 'u':
      return buf.readUInt32LE(start);
    case 'x':
      return buf.readBigInt64LE(start);
    case 't':
      return buf.readBigUInt64LE(start);
    case 'd':
      return buf.readDoubleLE(start);
  }
}

function parseArray(t: GType & { kind: 'array' }, buf: Buffer, start: number, end: number, depth: number, b: Budget): unknown {
  const elem = t.elem;
  const size = end - start;
  if (elem.kind === 'basic' && elem.char === 'y') return buf.subarray(start, end);
  if (elem.fixedSize !== null) {
    if (size % elem.fixedSize !== 0) invalid(`array of ${elem.str} has ragged size ${size}`);
    reserveArray(b, size / elem.fixedSize);
    const out: unknown[] = [];
    if (elem.kind === 'basic') {
      // No recursion per element: one charge for all, then plain reads.
      charge(b, size / elem.fixedSize);
      for (let p = start; p < end; p += elem.fixedSize) out.push(parseBasic(elem, buf, p, p + elem.fixedSize));
      return out;
    }
    for (let p = start; p < end; p += elem.fixedSize) out.push(parseAt(elem, buf, p, p + elem.fixedSize, depth + 1, b));
    return out;
  }
  if (size === 0) return [];
  const w = offsetSizeFor(size);
  const lastEnd = readOffset(buf, end - w, w);
  if (lastEnd > size) invalid('array offset out of range');
  const tableSize = size - lastEnd;
  if (tableSize % w !== 0 || tableSize === 0) invalid('array offset table has bad size');
  const n = tableSize / w;
  reserveArray(b, n);
  const out: unknown[] = [];
  let pos = 0;
  for (let i = 0; i < n; i++) {
    const elemEnd = readOffset(buf, start + lastEnd + i * w, w);
    const elemStart = alignUp(pos, elem.align);
    if (elemStart > elemEnd || elemEnd > lastEnd) invalid('array element offsets out of order');
    out.push(parseAt(elem, buf, start + elemStart, start + elemEnd, depth + 1, b));
    pos = elemEnd;
  }
  return out;
}

function parseMembers(members: GType[], buf: Buffer, start: number, end: number, depth: number, b: Budget): unknown[] {
  const size = end - start;
  const w = offsetSizeFor(size);
  let framesUsed = 0;
  let pos = 0;
  const out: unknown[] = [];
  members.forEach((m, i) => {
    const mStart = alignUp(pos, m.align);
    let mEnd: number;
    if (m.fixedSize !== null) {
      mEnd = mStart + m.fixedSize;
    } else if (i === members.length - 1) {
      mEnd = size - framesUsed * w;
    } else {
      framesUsed++;
      const at = size - framesUsed * w;
      // w is 0 when the container is empty: there is no room for the frame this member needs.
      if (at < 0 || w === 0) invalid('tuple framing offsets out of range');
      mEnd = readOffset(buf, start + at, w);
    }
    const limit = size - framesUsed * w;
    if (mStart > mEnd || mEnd > limit) invalid('tuple member out of range');
    out.push(parseAt(m, buf, start + mStart, start + mEnd, depth + 1, b));
    pos = mEnd;
  });
  return out;
}
