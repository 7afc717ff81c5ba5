/**
 * GVariant values and raw bytes as plain, bounded JSON data for the browse
 * API: bytes as hex, 64-bit integers as decimal strings, every string, byte
 * array and array capped, and one overall budget per conversion, so that a
 * hostile commit (10 MiB of metadata is legal) turns into a small answer.
 */
import { Variant, type VarDict } from '../gvariant';
import type { Xattr } from '../objects/xattrs';

/** A JSON value (what the API helper puts in its schemas as "any JSON"). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Bytes shown as hex: the first `shown` bytes of `bytes`. */
export interface BytesJson {
  hex: string;
  /** Length of the whole value. */
  bytes: number;
  /** Present (true) when `hex` holds only the start of the value. */
  truncated?: true;
}

/** One metadata entry of a commit or of its detached metadata. */
export interface MetadataEntry {
  key: string;
  /** GVariant type string of the value, e.g. `s`, `as`, `a(ayay)`. */
  type: string;
  value: Json;
  /** Present (true) when the value was cut to fit the limits. */
  truncated?: true;
}

export interface JsonLimits {
  /** Bytes of a byte array shown as hex (default 256). */
  maxBytes?: number;
  /** Characters of a string (default 4096). */
  maxString?: number;
  /** Elements of an array (default 256). */
  maxElements?: number;
  /** Budget of the whole conversion, in characters of output, roughly (default 256 KiB). */
  budget?: number;
}

const DEFAULTS: Required<JsonLimits> = { maxBytes: 256, maxString: 4096, maxElements: 256, budget: 256 * 1024 };
/** Entries of an a{sv} shown at most. */
export const MAX_METADATA_ENTRIES = 512;

export function bytesJson(b: Buffer, maxBytes = DEFAULTS.maxBytes): BytesJson {
  if (b.length <= maxBytes) return { hex: b.toString('hex'), bytes: b.length };
  return { hex: b.subarray(0, maxBytes).toString('hex'), bytes: b.length, truncated: true };
}

/** An extended attribute: its value as hex, and as text when it is UTF-8 without control characters (a trailing NUL, as SELinux labels have, is dropped). */
export interface XattrJson {
  name: string;
  value: BytesJson;
  text: string | null;
}

export function xattrJson(x: Xattr, maxBytes = 4096): XattrJson {
  return { name: x.name.slice(0, 1024), value: bytesJson(x.value, maxBytes), text: asText(x.value, maxBytes) };
}

function asText(v: Buffer, max: number): string | null {
  const body = v.length > 0 && v[v.length - 1] === 0 ? v.subarray(0, -1) : v;
  if (body.length > max) return null;
  const s = body.toString('utf8');
  if (!Buffer.from(s, 'utf8').equals(body)) return null; // not valid UTF-8
  // Control characters other than tab and newlines make it binary.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) || c === 0x7f) return null;
  }
  return s;
}

/**
 * An a{sv} (commit metadata, detached metadata) as a list of entries with
 * JSON values; at most MAX_METADATA_ENTRIES entries and `limits.budget`
 * characters (entries beyond are left out and `truncated` says so).
 */
export function metadataJson(dict: VarDict, limits: JsonLimits = {}): { entries: MetadataEntry[]; truncated: boolean } {
  const ctx = new Ctx({ ...DEFAULTS, ...limits });
  const entries: MetadataEntry[] = [];
  let truncated = false;
  for (const [key, v] of dict) {
    if (entries.length >= MAX_METADATA_ENTRIES || ctx.left <= 0) {
      truncated = true;
      break;
    }
    ctx.cut = false;
    ctx.spend(key.length + v.type.length + 16);
    const value = ctx.value(v.type, v.value, 0);
    const e: MetadataEntry = { key: key.slice(0, ctx.limits.maxString), type: v.type.slice(0, 256), value };
    if (ctx.cut || key.length > ctx.limits.maxString) e.truncated = true;
    entries.push(e);
  }
  return { entries, truncated };
}

/** One GVariant value (as parsed) as JSON, under the same limits. */
export function variantJson(v: Variant, limits: JsonLimits = {}): Json {
  const ctx = new Ctx({ ...DEFAULTS, ...limits });
  return { type: v.type, value: ctx.value(v.type, v.value, 0) };
}

class Ctx {
  left: number;
  cut = false;
  constructor(readonly limits: Required<JsonLimits>) {
    this.left = limits.budget;
  }

  spend(n: number): void {
    this.left -= n;
  }

  value(type: string, v: unknown, depth: number): Json {
    if (this.left <= 0 || depth > 64) {
      this.cut = true;
      return null;
    }
    if (v === null || v === undefined) {
      this.spend(4);
      return null;
    }
    if (v instanceof Variant) {
      this.spend(v.type.length + 16);
      return { type: v.type.slice(0, 256), value: this.value(v.type, v.value, depth + 1) };
    }
    if (Buffer.isBuffer(v)) {
      const b = bytesJson(v, Math.min(this.limits.maxBytes, Math.max(0, Math.floor(this.left / 2))));
      if (b.truncated) this.cut = true;
      this.spend(b.hex.length + 32);
      return b as unknown as Json;
    }
    switch (typeof v) {
      case 'bigint':
        this.spend(24);
        return v.toString();
      case 'number':
        this.spend(24);
        return Number.isFinite(v) ? v : String(v);
      case 'boolean':
        this.spend(5);
        return v;
      case 'string': {
        const max = Math.min(this.limits.maxString, Math.max(0, this.left));
        const s = v.length > max ? v.slice(0, max) : v;
        if (s.length < v.length) this.cut = true;
        this.spend(s.length + 2);
        return s;
      }
    }
    if (Array.isArray(v)) {
      const out: Json[] = [];
      // Element type for arrays (aX), maybes (mX), else (tuples, dict entries) per position unknown: pass ''.
      const inner = type.startsWith('a') || type.startsWith('m') ? type.slice(1) : '';
      for (const el of v) {
        if (out.length >= this.limits.maxElements || this.left <= 0) {
          this.cut = true;
          break;
        }
        this.spend(2);
        out.push(this.value(inner, el, depth + 1));
      }
      return out;
    }
    this.spend(8);
    return String(v).slice(0, 64);
  }
}
