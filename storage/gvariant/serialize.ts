import { CairnError } from '../errors';
import { type GType, alignUp, offsetSizeFor, parseType } from './types';
import { Variant } from './variant';

/** Serializes `value` as `type` in GVariant normal form (little-endian). */
export function serialize(type: string | GType, value: unknown): Buffer {
  const t = typeof type === 'string' ? parseType(type) : type;
  return ser(t, value);
}

function bad(t: GType, why: string): never {
  throw new CairnError('INVALID_ARGUMENT', `cannot serialize value as ${t.str}: ${why}`);
}

function ser(t: GType, v: unknown): Buffer {
  switch (t.kind) {
    case 'basic':
      return serBasic(t, v);
    case 'variant': {
      if (!(v instanceof Variant)) bad(t, 'expected a Variant');
      const inner = ser(parseType(v.type), v.value);
      return Buffer.concat([inner, Buffer.from([0]), Buffer.from(v.type, 'latin1')]);
    }
    case 'maybe': {
      if (v === null || v === undefined) return Buffer.alloc(0);
      const inner = ser(t.elem, v);
      return t.elem.fixedSize !== null ? inner : Buffer.concat([inner, Buffer.from([0])]);
    }
    case 'array':
      return serArray(t, v);
    case 'tuple':
    case 'dictentry': {
      if (!Array.isArray(v) || v.length !== t.members.length) bad(t, `expected ${t.members.length} members`);
      return serMembers(t, t.members, v);
    }
  }
}

function serBasic(t: GType & { kind: 'basic' }, v: unknown): Buffer {
  const c = t.char;
  if (c === 's' || c === 'o' || c === 'g') {
    if (typeof v !== 'string') bad(t, 'expected a string');
    const b = Buffer.from(v, 'utf8');
    if (b.includes(0)) bad(t, 'string contains NUL');
    return Buffer.concat([b, Buffer.from([0])]);
  }
  const b = Buffer.alloc(t.fixedSize!);
  switch (c) {
    case 'b':
      if (typeof v !== 'boolean') bad(t, 'expected a boolean');
      b[0] = v ? 1 : 0;
      break;
    case 'y':
      b.writeUInt8(num(t, v));
      break;
    case 'n':
      b.writeInt16LE(num(t, v));
      break;
    case 'q':
      b.writeUInt16LE(num(t, v));
      break;
    case 'i':
    case 'h':
      b.writeInt32LE(num(t, v));
      break;
    case 'u':
      b.writeUInt32LE(num(t, v));
      break;
    case 'x':
      b.writeBigInt64LE(big(t, v));
      break;
    case 't':
      b.writeBigUInt64LE(big(t, v));
      break;
    case 'd':
      b.writeDoubleLE(typeof v === 'number' ? v : bad(t, 'expected a number'));
      break;
  }
  return b;
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

function serArray(t: GType & { kind: 'array' }, v: unknown): Buffer {
  const elem = t.elem;
  if (elem.kind === 'basic' && elem.char === 'y') {
    if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.from(v);
    bad(t, 'expected a Buffer');
  }
  if (!Array.isArray(v)) bad(t, 'expected an array');
  if (elem.fixedSize !== null) return Buffer.concat(v.map((x) => ser(elem, x)));
  const parts: Buffer[] = [];
  const ends: number[] = [];
  let pos = 0;
  for (const x of v) {
    const padLen = alignUp(pos, elem.align) - pos;
    if (padLen) parts.push(Buffer.alloc(padLen));
    const b = ser(elem, x);
    parts.push(b);
    pos += padLen + b.length;
    ends.push(pos);
  }
  return withOffsets(parts, pos, ends);
}

function serMembers(t: GType, members: GType[], values: unknown[]): Buffer {
  const parts: Buffer[] = [];
  const ends: number[] = [];
  let pos = 0;
  members.forEach((m, i) => {
    const padLen = alignUp(pos, m.align) - pos;
    if (padLen) parts.push(Buffer.alloc(padLen));
    const b = ser(m, values[i]);
    if (m.fixedSize !== null && b.length !== m.fixedSize) bad(t, 'fixed member has wrong size');
    parts.push(b);
    pos += padLen + b.length;
    if (m.fixedSize === null && i !== members.length - 1) ends.push(pos);
  });
  if (t.fixedSize !== null) {
    // Fixed-size containers are padded to their alignment; the unit tuple is one zero byte.
    const total = t.fixedSize;
    if (total > pos) parts.push(Buffer.alloc(total - pos));
    return Buffer.concat(parts);
  }
  return withOffsets(parts, pos, ends.reverse());
}

/** Appends framing offsets (in the order given) with the smallest width that can address the whole. */
function withOffsets(parts: Buffer[], bodySize: number, offsets: number[]): Buffer {
  if (offsets.length === 0) return Buffer.concat(parts);
  let w = 1;
  while (offsetSizeFor(bodySize + offsets.length * w) > w) w *= 2;
  const table = Buffer.alloc(offsets.length * w);
  offsets.forEach((o, i) => writeUIntLE(table, o, i * w, w));
  return Buffer.concat([...parts, table]);
}

export function writeUIntLE(buf: Buffer, value: number, at: number, width: number): void {
  if (width === 8) buf.writeBigUInt64LE(BigInt(value), at);
  else buf.writeUIntLE(value, at, width);
}
