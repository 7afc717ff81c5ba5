/**
 * The request heads the HTTP/1.1 front (./front.ts) answers itself: a GET or
 * HEAD without a body, in the plainest form of RFC 9112. This parser is
 * deliberately narrow: whatever it does not recognise with certainty (other
 * methods, a body, bare LF line ends, obsolete line folding, odd characters,
 * repeated headers that matter, upgrades) is `null`, and the connection goes
 * to node's HTTP server, which parses it in full and answers (or refuses) it.
 * So a bug here can make Cairn slower, never laxer than node.
 *
 * It reads client bytes with hand-written scans over lookup tables, one pass,
 * never a regular expression: its cost is linear in the bytes of the head
 * whatever they are (a backtracking pattern over a header line of spaces
 * stalled the process for minutes). test/unit/http1-fuzz.test.ts checks every
 * head it accepts against node's own parser.
 */

export interface RequestHead {
  method: 'GET' | 'HEAD';
  /** The origin-form target as sent (path and query). */
  target: string;
  /** Whether the connection stays open after the answer (HTTP/1.1 unless `close`; HTTP/1.0 only with `keep-alive`). */
  keepAlive: boolean;
  /** Lower-cased names; only the headers a file answer reads (see KEPT). */
  headers: Record<string, string>;
  /** Every header as sent, [name, value, …] (as node's rawHeaders). */
  rawHeaders: string[];
}

/** Largest head accepted (node's default --max-http-header-size). */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Longest request target accepted. */
const MAX_TARGET_BYTES = 8192;
/**
 * Most header lines accepted. node's server reads only the first
 * maxHeadersCount (1000 by default) of a head and ignores the rest (a Host
 * past them is missing: 400), so a head with more is node's; real clients
 * send a dozen.
 */
const MAX_HEADERS = 100;

/** Headers whose value the answer depends on: each may appear at most once. */
const KEPT = new Set(['host', 'if-none-match', 'if-modified-since', 'range', 'if-range', 'connection', 'upgrade', 'authorization', 'x-request-id']);
/** Headers that mean a body: node's business. */
const REFUSED = new Set(['content-length', 'transfer-encoding', 'expect']);

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;

function table(accepts: (byte: number) => boolean): Uint8Array {
  const t = new Uint8Array(256);
  for (let b = 0; b < 256; b++) t[b] = accepts(b) ? 1 : 0;
  return t;
}
/** tchar (RFC 9110 §5.6.2): the characters of a header name. */
const TOKEN = table((b) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(b)));
/** A header value: visible ASCII, spaces, tabs or obs-text (no other control, no DEL). */
const VALUE = table((b) => b === HTAB || (b >= 0x20 && b <= 0x7e) || b >= 0x80);
/** An origin-form target after its `/`: visible ASCII. */
const TARGET = table((b) => b >= 0x21 && b <= 0x7e);

/** Whether `buf[at, end)` starts with the ASCII `text`. */
function startsWith(buf: Buffer, at: number, end: number, text: string): boolean {
  if (end - at < text.length) return false;
  for (let k = 0; k < text.length; k++) if (buf[at + k] !== text.charCodeAt(k)) return false;
  return true;
}

/**
 * Parses the head in `buf[start, end)`, where `end` is the index of the
 * CRLFCRLF that ends it. Returns null for anything the front leaves to node.
 *
 * Accepted: `GET` or `HEAD`, one space, `/` and visible ASCII (at most 8192
 * bytes), one space, `HTTP/1.0` or `HTTP/1.1`; then header lines, each a
 * token, a colon, a value of visible ASCII, spaces, tabs or obs-text (its
 * surrounding spaces and tabs are not part of it); every line ends in CRLF.
 */
export function parseRequestHead(buf: Buffer, start: number, end: number): RequestHead | null {
  if (end - start > MAX_HEAD_BYTES) return null;
  // The request line.
  let i = start;
  let method: 'GET' | 'HEAD';
  if (startsWith(buf, i, end, 'GET ')) {
    method = 'GET';
    i += 4;
  } else if (startsWith(buf, i, end, 'HEAD ')) {
    method = 'HEAD';
    i += 5;
  } else return null;
  if (i >= end || buf[i] !== 0x2f) return null; // origin form only
  const targetStart = i;
  i++;
  while (i < end && TARGET[buf[i]!] === 1) i++;
  const targetEnd = i;
  if (targetEnd - targetStart > MAX_TARGET_BYTES) return null;
  if (!startsWith(buf, i, end, ' HTTP/1.')) return null;
  i += 8;
  if (i >= end) return null;
  const minor = buf[i];
  if (minor !== 0x30 && minor !== 0x31) return null;
  const http11 = minor === 0x31;
  i++;
  const headers: Record<string, string> = {};
  const rawHeaders: string[] = [];
  /** A tab among the spaces after the Connection value (see isPlainKeepAlive). */
  let connectionTabAfter = false;
  // Here i is at the end of a line: `end`, or a CRLF before the next line.
  while (i < end) {
    if (buf[i] !== CR || i + 1 >= end || buf[i + 1] !== LF) return null; // a lone CR or LF, or more after the version
    i += 2;
    // A header line: a token, a colon (no space before it; a line starting
    // with space or tab is obsolete folding: refused like an empty line).
    const nameStart = i;
    while (i < end && TOKEN[buf[i]!] === 1) i++;
    const nameEnd = i;
    if (nameEnd === nameStart || i >= end || buf[i] !== 0x3a) return null;
    i++;
    while (i < end && (buf[i] === SP || buf[i] === HTAB)) i++;
    const valueStart = i;
    while (i < end && VALUE[buf[i]!] === 1) i++;
    // The line must end here (any other byte is a control character, a lone CR or LF).
    let valueEnd = i;
    while (valueEnd > valueStart && (buf[valueEnd - 1] === SP || buf[valueEnd - 1] === HTAB)) valueEnd--;
    const rawName = buf.toString('latin1', nameStart, nameEnd);
    const value = buf.toString('latin1', valueStart, valueEnd);
    const name = rawName.toLowerCase();
    if (REFUSED.has(name)) return null;
    if (KEPT.has(name)) {
      if (headers[name] !== undefined) return null;
      headers[name] = value;
      if (name === 'connection') for (let k = valueEnd; k < i; k++) if (buf[k] === HTAB) connectionTabAfter = true;
    }
    rawHeaders.push(rawName, value);
    if (rawHeaders.length > 2 * MAX_HEADERS) return null;
  }
  if (http11 && headers.host === undefined) return null; // node answers 400
  // libcurl (so libostree) offers HTTP/2 on every plain-http request
  // (`Connection: Upgrade, HTTP2-Settings`, `Upgrade: h2c`); a server without
  // h2c ignores the offer and answers in HTTP/1.1 (RFC 9110 §7.8), as node
  // and nginx do. Any other upgrade (WebSocket, …) is node's.
  const upgrade = headers.upgrade;
  if (upgrade !== undefined && upgrade.toLowerCase() !== 'h2c') return null;
  let keepAlive = http11;
  const connection = headers.connection;
  if (connection !== undefined) {
    const tokens = connection.toLowerCase().split(',');
    for (let k = 0; k < tokens.length; k++) {
      const token = tokens[k]!;
      const t = token.trim();
      if (t === 'close') keepAlive = false;
      // HTTP/1.0 keeps the connection only for a keep-alive node sees too:
      // llhttp reads none followed by a tab (nor one within other
      // whitespace trim() removes), and closes where the front would not.
      else if (t === 'keep-alive') keepAlive = keepAlive || (!http11 && isPlainKeepAlive(token) && (k < tokens.length - 1 || !connectionTabAfter));
      else if (t !== '' && t !== 'upgrade' && t !== 'http2-settings') return null;
    }
  }
  return { method, target: buf.toString('latin1', targetStart, targetEnd), keepAlive, headers, rawHeaders };
}

/** `keep-alive` (lower-cased) with spaces or tabs before it and nothing but spaces after it. */
function isPlainKeepAlive(token: string): boolean {
  let a = 0;
  while (a < token.length && (token.charCodeAt(a) === SP || token.charCodeAt(a) === HTAB)) a++;
  let b = token.length;
  while (b > a && token.charCodeAt(b - 1) === SP) b--;
  return b - a === 10 && token.startsWith('keep-alive', a);
}

/**
 * Where the head that starts at `from` ends (the index of its CRLFCRLF), -1
 * if it is not complete yet, or -2 if it never will be in a form the front
 * accepts: a bare LF (node decides what that means) or more than
 * MAX_HEAD_BYTES without an end.
 *
 * `scanned` (default `from`): how far an earlier call that returned -1, on
 * the same bytes then shorter, got (that buffer's length); the scan resumes
 * there, so a head that arrives one byte at a time costs linear time in all.
 */
export function findHeadEnd(buf: Buffer, from: number, scanned = from): number {
  const resume = Math.max(from, scanned);
  const end = buf.indexOf('\r\n\r\n', Math.max(from, resume - 3), 'latin1');
  const scanTo = end === -1 ? buf.length : end;
  for (let i = buf.indexOf(LF, resume); i !== -1 && i < scanTo; i = buf.indexOf(LF, i + 1)) {
    if (i === from || buf[i - 1] !== CR) return -2;
  }
  if (end === -1) return buf.length - from > MAX_HEAD_BYTES ? -2 : -1;
  return end;
}
