/**
 * The request heads the HTTP/1.1 front (./front.ts) answers itself: a GET or
 * HEAD without a body, in the plainest form of RFC 9112. This parser is
 * deliberately narrow: whatever it does not recognise with certainty (other
 * methods, a body, bare LF line ends, obsolete line folding, odd characters,
 * repeated headers that matter, upgrades) is `null`, and the connection goes
 * to node's HTTP server, which parses it in full and answers (or refuses) it.
 * So a bug here can make Cairn slower, never laxer than node.
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

/** Headers whose value the answer depends on: each may appear at most once. */
const KEPT = new Set(['host', 'if-none-match', 'if-modified-since', 'range', 'if-range', 'connection', 'upgrade']);
/** Headers that mean a body: node's business. */
const REFUSED = new Set(['content-length', 'transfer-encoding', 'expect']);

const REQUEST_LINE = /^(GET|HEAD) (\/[\x21-\x7e]*) HTTP\/1\.([01])$/;
/** A token name, a colon, optional whitespace, a value of visible ASCII, spaces, tabs or obs-text. */
const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*$/;

/**
 * Parses the head in `buf[start, end)`, where `end` is the index of the
 * CRLFCRLF that ends it. Returns null for anything the front leaves to node.
 */
export function parseRequestHead(buf: Buffer, start: number, end: number): RequestHead | null {
  if (end - start > MAX_HEAD_BYTES) return null;
  const text = buf.toString('latin1', start, end);
  const lines = text.split('\r\n');
  const first = REQUEST_LINE.exec(lines[0]!);
  if (!first || first[2]!.length > 8192) return null;
  const http11 = first[3] === '1';
  const headers: Record<string, string> = {};
  const rawHeaders: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    // A lone CR or LF inside a line is not HTTP/1.1 framing we accept.
    if (line.includes('\r') || line.includes('\n')) return null;
    const m = HEADER_LINE.exec(line);
    if (!m) return null; // includes obs-fold (a line starting with space or tab)
    const name = m[1]!.toLowerCase();
    if (REFUSED.has(name)) return null;
    if (KEPT.has(name)) {
      if (headers[name] !== undefined) return null;
      headers[name] = m[2]!;
    }
    rawHeaders.push(m[1]!, m[2]!);
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
    for (const token of connection.toLowerCase().split(',')) {
      const t = token.trim();
      if (t === 'close') keepAlive = false;
      else if (t === 'keep-alive') keepAlive = keepAlive || !http11;
      else if (t !== '' && t !== 'upgrade' && t !== 'http2-settings') return null;
    }
  }
  return { method: first[1] as 'GET' | 'HEAD', target: first[2]!, keepAlive, headers, rawHeaders };
}

/**
 * Where the head that starts at `from` ends (the index of its CRLFCRLF), -1
 * if it is not complete yet, or -2 if it never will be in a form the front
 * accepts: a bare LF (node decides what that means) or more than
 * MAX_HEAD_BYTES without an end.
 */
export function findHeadEnd(buf: Buffer, from: number): number {
  const end = buf.indexOf('\r\n\r\n', from, 'latin1');
  const scanTo = end === -1 ? buf.length : end;
  for (let i = buf.indexOf(10, from); i !== -1 && i < scanTo; i = buf.indexOf(10, i + 1)) {
    if (i === from || buf[i - 1] !== 13) return -2;
  }
  if (end === -1) return buf.length - from > MAX_HEAD_BYTES ? -2 : -1;
  return end;
}
