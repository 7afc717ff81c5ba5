import { CairnError } from '../errors';
import { type GType, alignUp, offsetSizeFor, parseType } from './types';
import { Variant } from './variant';

/** Serializes `value` as `type` in GVariant normal form (little-endian). */
export function serialize(type: string | GType, value: unknown): Buffer {
  const t = typeof type === 'string' ? parseType(type) : type;
  const w = new Writer();
  ser(w, t, value);
  return w.result();
}

function bad(t: GType, why: string): never {
  throw new CairnError('INVALID_ARGUMENT', `cannot serialize value as ${t.str}: ${why}`);
}

/**
 * One growing buffer for the whole value: containers are written in place and
 * their framing offsets appended after their body, so serializing costs one
 * pass and no buffer per element (the normal-form check of parse() runs this
 * on every upload).
 */
class Writer {
  buf = Buffer.alloc(256);
  len = 0;

  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /** Zero bytes up to `base + alignUp(len - base, align)`. */
  pad(base: number, align: number): void {
    const to = base + alignUp(this.len - base, align);
    this.zeros(to - this.len);
  }

  zeros(n: number): void {
    if (n <= 0) return;
    this.ensure(n);
    this.buf.fill(0, this.len, this.len + n);
    this.len += n;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  /** Reserves `n` bytes and returns where they start. */
  take(n: number): number {
    this.ensure(n);
    const at = this.len;
    this.len += n;
    return at;
  }

  result(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }
}

function ser(w: Writer, t: GType, v: unknown): void {
  switch (t.kind) {
    case 'basic':
      serBasic(w, t, v);
      return;
    case 'variant': {
      if (!(v instanceof Variant)) bad(t, 'expected a Variant');
      ser(w, parseType(v.type), v.value);
      w.zeros(1);
      w.ensure(v.type.length);
      w.len += w.buf.write(v.type, w.len, 'latin1');
      return;
    }
    case 'maybe': {
      if (v === null || v === undefined) return;
      ser(w, t.elem, v);
      if (t.elem.fixedSize === null) w.zeros(1);
      return;
    }
    case 'array':
      serArray(w, t, v);
      return;
    case 'tuple':
    case 'dictentry': {
      if (!Array.isArray(v) || v.length !== t.members.length) bad(t, `expected ${t.members.length} members`);
      serMembers(w, t, t.members, v);
      return;
    }
  }
}

function serBasic(w: Writer, t: GType & { kind: 'basic' }, v: unknown): void {
  const c = t.char;
  if (c === 's' || c === 'o' || c === 'g') {
    if (typeof v !== 'string') bad(t, 'expected a string');
    // UTF-8 has a 0 byte exactly where the string has U+0000.
    if (v.includes('\0')) bad(t, 'string contains NUL');
    const n = Buffer.byteLength(v, 'utf8');
    const at = w.take(n + 1);
    w.buf.write(v, at, 'utf8');
    w.buf[at + n] = 0;
    return;
  }
  const at = w.take(t.fixedSize!); // before reading w.buf: take() may grow it
  writeFixedBasic(t, v, w.buf, at);
}

/** Writes a fixed-size basic value at `at` of `b` (which has room for it). */
function writeFixedBasic(t: GType & { kind: 'basic' }, v: unknown, b: Buffer, at: number): void {
  switch (t.char) {
    case 'b':
      if (typeof v !== 'boolean') bad(t, 'expected a boolean');
      b[at] = v ? 1 : 0;
      break;
    case 'y':
      b.writeUInt8(num(t, v), at);
      break;
    case 'n':
      b.writeInt16LE(num(t, v), at);
      break;
    case 'q':
      b.writeUInt16LE(num(t, v), at);
      break;
    case 'i':
    case 'h':
      b.writeInt32LE(num(t, v), at);
      break;
    case 'u':
      b.writeUInt32LE(num(t, v), at);
      break;
    case 'x':
      b.writeBigInt64LE(big(t, v), at);
      break;
    case 't':
      b.writeBigUInt64LE(big(t, v), at);
      break;
    case 'd':
      b.writeDoubleLE(typeof v === 'number' ? v : bad(t, 'expected a number'), at);
      break;
    default:
      bad(t, 'not a fixed-size basic type');
  }
}

function num(t: GType, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) bad(t, 'expected an integer');
  return v;
}

function big(t: GType, v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
  bad(t, 'expected a bigint');
}

function serArray(w: Writer, t: GType & { kind: 'array' }, v: unknown): void {
  const elem = t.elem;
  if (elem.kind === 'basic' && elem.char === 'y') {
    if (Buffer.isBuffer(v) || v instanceof Uint8Array) return w.bytes(v);
    bad(t, 'expected a Buffer');
  }
  if (!Array.isArray(v)) bad(t, 'expected an array');
  if (elem.fixedSize !== null) {
    // Fixed-size elements: sizes are multiples of the alignment, no padding, no offsets.
    for (const x of v) serFixed(w, elem, x);
    return;
  }
  const base = w.len;
  const ends: number[] = [];
  for (const x of v) {
    w.pad(base, elem.align);
    ser(w, elem, x);
    ends.push(w.len - base);
  }
  writeOffsets(w, base, ends);
}

/** A fixed-size value, checked to take exactly its size. */
function serFixed(w: Writer, t: GType, v: unknown): void {
  if (t.kind === 'basic') {
    const at = w.take(t.fixedSize!); // before reading w.buf: take() may grow it
    writeFixedBasic(t, v, w.buf, at);
    return;
  }
  const start = w.len;
  ser(w, t, v);
  if (w.len - start !== t.fixedSize) bad(t, 'fixed member has wrong size');
}

function serMembers(w: Writer, t: GType, members: GType[], values: unknown[]): void {
  const base = w.len;
  const ends: number[] = [];
  members.forEach((m, i) => {
    w.pad(base, m.align);
    if (m.fixedSize !== null) serFixed(w, m, values[i]);
    else ser(w, m, values[i]);
    if (m.fixedSize === null && i !== members.length - 1) ends.push(w.len - base);
  });
  if (t.fixedSize !== null) {
    // Fixed-size containers are padded to their alignment; the unit tuple is one zero byte.
    w.zeros(base + t.fixedSize - w.len);
    return;
  }
  writeOffsets(w, base, ends.reverse());
}

/** Appends framing offsets (in the order given) with the smallest width that can address the whole container. */
function writeOffsets(w: Writer, base: number, offsets: number[]): void {
  if (offsets.length === 0) return;
  const bodySize = w.len - base;
  let width = 1;
  while (offsetSizeFor(bodySize + offsets.length * width) > width) width *= 2;
  const at = w.take(offsets.length * width);
  offsets.forEach((o, i) => writeUIntLE(w.buf, o, at + i * width, width));
}

export function writeUIntLE(buf: Buffer, value: number, at: number, width: number): void {
  if (width === 8) buf.writeBigUInt64LE(BigInt(value), at);
  else buf.writeUIntLE(value, at, width);
}
