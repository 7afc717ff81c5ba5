import type { IncomingHttpHeaders } from 'node:http';
import type { ByteRange } from '../../storage/backends/backend';

/**
 * HTTP validators and byte ranges (RFC 9110 §13, §14), kept free of express
 * and storage so they are easy to test and reuse.
 */

/** `Last-Modified` and `If-Modified-Since` have one-second resolution. */
function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}

/**
 * A modification time is a usable validator only once its second is over
 * (RFC 9110 §8.8.2.2): a file rewritten twice within the same second keeps the
 * same `Last-Modified`, and a client holding the first version would get a
 * wrong 304. So we neither send nor honour it for a file changed this second.
 */
export function lastModifiedUsable(mtimeMs: number, nowMs: number): boolean {
  return seconds(nowMs) > seconds(mtimeMs);
}

export function httpDate(ms: number): string {
  return new Date(seconds(ms) * 1000).toUTCString();
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const IMF_DATE = /^[A-Za-z]{3}, (\d{1,2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) (GMT|UTC|Z|\+0000)$/;

/**
 * Parses an HTTP date into epoch seconds, or null. Accepts the IMF-fixdate
 * form with `UTC` in place of `GMT`: libostree 2022.7 sends
 * `If-Modified-Since: Fri, 27 Nov 2026 12:45:33 UTC`. The obsolete RFC 850
 * and asctime forms go through Date.parse.
 */
export function parseHttpDate(s: string): number | null {
  const v = s.trim();
  const m = IMF_DATE.exec(v);
  if (m) {
    const month = MONTHS.indexOf(m[2].toLowerCase());
    if (month < 0) return null;
    const ms = Date.UTC(Number(m[3]), month, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
    return Number.isNaN(ms) ? null : seconds(ms);
  }
  if (v.length > 64) return null;
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? null : seconds(ms);
}

/** `If-None-Match` uses the weak comparison: W/"x" matches "x". */
function etagListMatches(header: string, etag: string): boolean {
  const bare = etag.replace(/^W\//, '');
  for (const part of header.split(',')) {
    const t = part.trim();
    if (t === '*' || t.replace(/^W\//, '') === bare) return true;
  }
  return false;
}

export interface Validators {
  etag: string;
  mtimeMs: number;
  nowMs: number;
}

/** True when a GET/HEAD can be answered 304 Not Modified. */
export function isNotModified(headers: IncomingHttpHeaders, v: Validators): boolean {
  const inm = headers['if-none-match'];
  // When both are sent (libostree does), If-None-Match alone decides.
  if (inm !== undefined) return etagListMatches(inm, v.etag);
  const ims = headers['if-modified-since'];
  if (ims === undefined || !lastModifiedUsable(v.mtimeMs, v.nowMs)) return false;
  const t = parseHttpDate(ims);
  return t !== null && seconds(v.mtimeMs) <= t;
}

/** `If-Range`: serve the range only if the client's copy is the current one (strong comparison). */
function ifRangeAllows(headers: IncomingHttpHeaders, v: Validators): boolean {
  const ir = headers['if-range'];
  if (ir === undefined) return true;
  if (typeof ir !== 'string') return false;
  const t = ir.trim();
  if (t.startsWith('"')) return t === v.etag;
  if (t.startsWith('W/')) return false;
  const d = parseHttpDate(t);
  return d !== null && lastModifiedUsable(v.mtimeMs, v.nowMs) && d === seconds(v.mtimeMs);
}

export type RangeDecision = { kind: 'full' } | { kind: 'partial'; range: ByteRange } | { kind: 'unsatisfiable' };

const SINGLE_RANGE = /^bytes=(\d{0,15})-(\d{0,15})$/;

/**
 * One `bytes=` range. Anything we do not serve as a range (absent, malformed,
 * several ranges, a failed If-Range) falls back to the full body, as the RFC
 * allows; only a well-formed range outside the file is 416.
 */
export function decideRange(headers: IncomingHttpHeaders, size: number, v: Validators): RangeDecision {
  const h = headers.range;
  if (h === undefined) return { kind: 'full' };
  const m = SINGLE_RANGE.exec(h.trim());
  if (!m || (m[1] === '' && m[2] === '')) return { kind: 'full' };
  if (!ifRangeAllows(headers, v)) return { kind: 'full' };
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', range: { start: Math.max(0, size - n), end: size - 1 } };
  }
  const start = Number(m[1]);
  if (m[2] !== '' && Number(m[2]) < start) return { kind: 'full' }; // invalid range-spec: ignore the header
  if (start >= size) return { kind: 'unsatisfiable' };
  const last = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  return { kind: 'partial', range: { start, end: last } };
}
