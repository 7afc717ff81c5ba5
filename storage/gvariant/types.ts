import { CairnError } from '../errors';

/** A parsed GVariant type string, with its alignment and fixed size (null when variable). */
export type GType =
  | { kind: 'basic'; char: BasicChar; align: number; fixedSize: number | null; str: string }
  | { kind: 'variant'; align: 8; fixedSize: null; str: 'v' }
  | { kind: 'array'; elem: GType; align: number; fixedSize: null; str: string }
  | { kind: 'maybe'; elem: GType; align: number; fixedSize: null; str: string }
  | { kind: 'tuple'; members: GType[]; align: number; fixedSize: number | null; str: string }
  | { kind: 'dictentry'; members: [GType, GType]; align: number; fixedSize: number | null; str: string };

export type BasicChar = 'y' | 'b' | 'n' | 'q' | 'i' | 'u' | 'h' | 'x' | 't' | 'd' | 's' | 'o' | 'g';

const FIXED: Record<string, number> = { y: 1, b: 1, n: 2, q: 2, i: 4, u: 4, h: 4, x: 8, t: 8, d: 8 };
const STRINGLIKE = new Set(['s', 'o', 'g']);

/** GLib refuses deeper nesting; so do we, which bounds recursion on hostile variant type strings. */
export const MAX_TYPE_DEPTH = 64;
const MAX_TYPE_LENGTH = 255;

const cache = new Map<string, GType>();

function invalid(str: string, why: string): never {
  throw new CairnError('INVALID_GVARIANT', `invalid GVariant type "${str.slice(0, 64)}": ${why}`);
}

/** Parses one complete definite type string, e.g. `(a{sv}aya(say)sstayay)`. */
export function parseType(str: string): GType {
  const hit = cache.get(str);
  if (hit) return hit;
  if (str.length === 0 || str.length > MAX_TYPE_LENGTH) invalid(str, 'bad length');
  const [t, end] = parseAt(str, 0, 0);
  if (end !== str.length) invalid(str, 'trailing characters');
  if (cache.size < 1024) cache.set(str, t);
  return t;
}

function alignUp(n: number, a: number): number {
  return (n + a - 1) & ~(a - 1);
}

function parseAt(s: string, i: number, depth: number): [GType, number] {
  if (depth > MAX_TYPE_DEPTH) invalid(s, 'nested too deeply');
  const c = s[i];
  if (c === undefined) invalid(s, 'incomplete');
  if (c in FIXED) return [{ kind: 'basic', char: c as BasicChar, align: FIXED[c]!, fixedSize: FIXED[c]!, str: c }, i + 1];
  if (STRINGLIKE.has(c)) return [{ kind: 'basic', char: c as BasicChar, align: 1, fixedSize: null, str: c }, i + 1];
  if (c === 'v') return [{ kind: 'variant', align: 8, fixedSize: null, str: 'v' }, i + 1];
  if (c === 'a' || c === 'm') {
    const [elem, end] = parseAt(s, i + 1, depth + 1);
    const str = s.slice(i, end);
    return [c === 'a' ? { kind: 'array', elem, align: elem.align, fixedSize: null, str } : { kind: 'maybe', elem, align: elem.align, fixedSize: null, str }, end];
  }
  if (c === '(' || c === '{') {
    const close = c === '(' ? ')' : '}';
    const members: GType[] = [];
    let j = i + 1;
    while (s[j] !== close) {
      if (s[j] === undefined) invalid(s, 'unterminated container');
      const [m, end] = parseAt(s, j, depth + 1);
      members.push(m);
      j = end;
    }
    const str = s.slice(i, j + 1);
    let align = 1;
    let offset = 0;
    let fixed = true;
    for (const m of members) {
      align = Math.max(align, m.align);
      if (m.fixedSize === null) fixed = false;
      else offset = alignUp(offset, m.align) + m.fixedSize;
    }
    const fixedSize = fixed ? (offset === 0 ? 1 : alignUp(offset, align)) : null;
    if (c === '{') {
      if (members.length !== 2) invalid(s, 'dict entry needs exactly two members');
      if (members[0]!.kind !== 'basic') invalid(s, 'dict entry key must be basic');
      return [{ kind: 'dictentry', members: members as [GType, GType], align, fixedSize, str }, j + 1];
    }
    return [{ kind: 'tuple', members, align, fixedSize, str }, j + 1];
  }
  invalid(s, `unknown type character "${c}"`);
}

/** Width of framing offsets for a container whose total serialized size is `size`. */
export function offsetSizeFor(size: number): number {
  if (size === 0) return 0;
  if (size <= 0xff) return 1;
  if (size <= 0xffff) return 2;
  if (size <= 0xffffffff) return 4;
  return 8;
}

export { alignUp };
