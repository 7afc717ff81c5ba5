// The HTTP/1.1 front's request-head parser (server/http1/head.ts): it must
// accept the plain GET/HEAD heads real clients send, and refuse (null: the
// connection goes to node) everything it is not sure about, never throwing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findHeadEnd, MAX_HEAD_BYTES, parseRequestHead } from '../../server/http1/head';
import { mulberry32 } from '../helpers/prng';

function parse(text: string) {
  const buf = Buffer.from(text, 'latin1');
  const end = findHeadEnd(buf, 0);
  assert.ok(end >= 0, `no head end in ${JSON.stringify(text)}`);
  return parseRequestHead(buf, 0, end);
}

test('accepts what libostree (libcurl) and wrk send', () => {
  const h = parse('GET /repo/main/objects/ab/cd.filez HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: libostree/2022.7\r\nAccept: */*\r\n\r\n');
  assert.ok(h);
  assert.equal(h.method, 'GET');
  assert.equal(h.target, '/repo/main/objects/ab/cd.filez');
  assert.equal(h.keepAlive, true);
  assert.deepEqual(h.headers, { host: '127.0.0.1:8080' });
  assert.deepEqual(h.rawHeaders, ['Host', '127.0.0.1:8080', 'User-Agent', 'libostree/2022.7', 'Accept', '*/*']);
  const c = parse('HEAD /repo/main/summary?x=1 HTTP/1.1\r\nhost: a\r\nIf-None-Match:  "abc" \r\nIf-Modified-Since: Fri, 27 Nov 2026 12:45:33 UTC\r\n\r\n');
  assert.ok(c);
  assert.equal(c.method, 'HEAD');
  assert.equal(c.target, '/repo/main/summary?x=1');
  assert.equal(c.headers['if-none-match'], '"abc"'); // surrounding whitespace is not part of the value
  assert.equal(c.headers['if-modified-since'], 'Fri, 27 Nov 2026 12:45:33 UTC');
});

test('accepts the h2c upgrade offer libcurl adds to every request (and ignores it)', () => {
  const h = parse('GET /repo/bench/summary HTTP/1.1\r\nHost: 127.0.0.1:9011\r\nUser-Agent: libostree/2022.7\r\nAccept: */*\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n');
  assert.ok(h);
  assert.equal(h.keepAlive, true);
  assert.equal(parse('GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'), null);
});

test('keep-alive follows the version and the Connection header', () => {
  assert.equal(parse('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')?.keepAlive, false);
  assert.equal(parse('GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n')?.keepAlive, true);
  assert.equal(parse('GET / HTTP/1.0\r\n\r\n')?.keepAlive, false);
  assert.equal(parse('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n')?.keepAlive, true);
  assert.equal(parse('GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n')?.keepAlive, false);
});

test('refuses what it leaves to node', () => {
  const refused = [
    'POST /repo/main/x HTTP/1.1\r\nHost: a\r\n\r\n', // other methods
    'get / HTTP/1.1\r\nHost: a\r\n\r\n',
    'GET / HTTP/2.0\r\nHost: a\r\n\r\n',
    'GET / HTTP/1.1\r\n\r\n', // no Host in HTTP/1.1
    'GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n', // absolute form
    'GET * HTTP/1.1\r\nHost: a\r\n\r\n',
    'GET /a b HTTP/1.1\r\nHost: a\r\n\r\n',
    'GET  / HTTP/1.1\r\nHost: a\r\n\r\n',
    'GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n', // any body framing
    'GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nConnection: TE\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', // repeated headers that matter
    'GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\nrange: bytes=2-3\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n', // obs-fold
    'GET / HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x00\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rx\r\n\r\n',
    '\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n', // a leading empty line
  ];
  for (const text of refused) assert.equal(parse(text), null, JSON.stringify(text));
});

test('findHeadEnd: complete, incomplete, bare LF, too long', () => {
  const b = (s: string) => Buffer.from(s, 'latin1');
  const one = 'GET / HTTP/1.1\r\nHost: a\r\n\r\n';
  assert.equal(findHeadEnd(b(`${one}GET`), 0), one.length - 4);
  assert.equal(findHeadEnd(b(one + one), one.length), 2 * one.length - 4);
  assert.equal(findHeadEnd(b('GET / HTTP/1.1\r\nHost: a\r\n'), 0), -1);
  assert.equal(findHeadEnd(b('GET / HTTP/1.1\r\nHost: a\r\n\r'), 0), -1);
  assert.equal(findHeadEnd(b('GET / HTTP/1.1\nHost: a\n\n'), 0), -2);
  assert.equal(findHeadEnd(b('GET / HTTP/1.1\r\nHost: a\n'), 0), -2); // incomplete, but already bare LF
  assert.equal(findHeadEnd(b('\n'), 0), -2);
  assert.equal(findHeadEnd(b(`GET / HTTP/1.1\r\nX: ${'a'.repeat(MAX_HEAD_BYTES)}`), 0), -2);
  assert.equal(findHeadEnd(b(`GET / HTTP/1.1\r\nX: ${'a'.repeat(MAX_HEAD_BYTES / 2)}`), 0), -1);
});

test('hostile and mutated heads never throw, and only GET/HEAD of origin-form targets are accepted', () => {
  const rnd = mulberry32(11);
  const base = Buffer.from('GET /repo/main/objects/ab/cd.filez HTTP/1.1\r\nHost: a\r\nRange: bytes=0-5\r\nConnection: keep-alive\r\n\r\n', 'latin1');
  const alphabet = Buffer.from(' \t\r\n:/,-"\x00\x7f\xffaZ0', 'latin1');
  for (let n = 0; n < 20_000; n++) {
    const buf = Buffer.from(base);
    const edits = 1 + Math.floor(rnd() * 4);
    for (let e = 0; e < edits; e++) buf[Math.floor(rnd() * (buf.length - 4))] = alphabet[Math.floor(rnd() * alphabet.length)]!;
    const end = findHeadEnd(buf, 0);
    if (end < 0) continue;
    const h = parseRequestHead(buf, 0, end);
    if (!h) continue;
    assert.ok(h.method === 'GET' || h.method === 'HEAD');
    assert.match(h.target, /^\/[\x21-\x7e]*$/);
    assert.ok(h.headers.host !== undefined || buf.includes('HTTP/1.0'));
  }
});

/**
 * The parser as it was before it scanned by hand (two regular expressions,
 * super-linear on long runs of spaces): the reference its decisions must
 * keep, on inputs small enough for it (and with fewer than 100 headers, the
 * most the parser takes now: node reads no more than 1000).
 */
function legacyParse(buf: Buffer, start: number, end: number) {
  if (end - start > MAX_HEAD_BYTES) return null;
  const KEPT = new Set(['host', 'if-none-match', 'if-modified-since', 'range', 'if-range', 'connection', 'upgrade']);
  const REFUSED = new Set(['content-length', 'transfer-encoding', 'expect']);
  const REQUEST_LINE = /^(GET|HEAD) (\/[\x21-\x7e]*) HTTP\/1\.([01])$/;
  const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*$/;
  const text = buf.toString('latin1', start, end);
  const lines = text.split('\r\n');
  const first = REQUEST_LINE.exec(lines[0]!);
  if (!first || first[2]!.length > 8192) return null;
  const http11 = first[3] === '1';
  const headers: Record<string, string> = {};
  const rawHeaders: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.includes('\r') || line.includes('\n')) return null;
    const m = HEADER_LINE.exec(line);
    if (!m) return null;
    const name = m[1]!.toLowerCase();
    if (REFUSED.has(name)) return null;
    if (KEPT.has(name)) {
      if (headers[name] !== undefined) return null;
      headers[name] = m[2]!;
    }
    rawHeaders.push(m[1]!, m[2]!);
  }
  if (http11 && headers.host === undefined) return null;
  const upgrade = headers.upgrade;
  if (upgrade !== undefined && upgrade.toLowerCase() !== 'h2c') return null;
  let keepAlive = http11;
  const connection = headers.connection;
  if (connection !== undefined) {
    const tokens = connection.toLowerCase().split(',');
    // The line, up to its last tab (or nothing): whether a tab follows the value.
    const connectionLine = lines.find((l) => /^connection:/i.test(l))!.replace(/ +$/, '');
    for (const [k, token] of tokens.entries()) {
      const t = token.trim();
      if (t === 'close') keepAlive = false;
      // The one change since: HTTP/1.0 keeps alive only for a keep-alive
      // node reads as such (no tab or other whitespace after it; found by
      // test/unit/http1-fuzz.test.ts).
      else if (t === 'keep-alive') keepAlive = keepAlive || (!http11 && /^[ \t]*keep-alive *$/.test(token) && (k < tokens.length - 1 || !connectionLine.endsWith('\t')));
      else if (t !== '' && t !== 'upgrade' && t !== 'http2-settings') return null;
    }
  }
  return { method: first[1] as 'GET' | 'HEAD', target: first[2]!, keepAlive, headers, rawHeaders };
}

/** The findHeadEnd of before (rescanning from `from` every time). */
function legacyFindHeadEnd(buf: Buffer, from: number): number {
  const end = buf.indexOf('\r\n\r\n', from, 'latin1');
  const scanTo = end === -1 ? buf.length : end;
  for (let i = buf.indexOf(10, from); i !== -1 && i < scanTo; i = buf.indexOf(10, i + 1)) {
    if (i === from || buf[i - 1] !== 13) return -2;
  }
  if (end === -1) return buf.length - from > MAX_HEAD_BYTES ? -2 : -1;
  return end;
}

test('the hand-written scans decide exactly as the regular expressions they replace', () => {
  const rnd = mulberry32(20240611);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const bases = [
    'GET /repo/main/objects/ab/cd.filez HTTP/1.1\r\nHost: a\r\nRange: bytes=0-5\r\nConnection: keep-alive\r\n\r\n',
    'HEAD /x?y=1 HTTP/1.0\r\nConnection:  Keep-Alive ,\t close \r\nUser-Agent: t\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nX-Empty:\r\nX-Ws: \t \r\n\r\n',
    'GET /a HTTP/1.1\r\nhost:b\r\nIf-None-Match: "x"\t\r\nIf-Range: "x"\r\nIf-Modified-Since: Fri, 27 Nov 2026 12:45:33 GMT\r\n\r\n',
  ];
  const pieces = [' ', '\t', '\r', '\n', '\r\n', ':', '/', ',', '\x00', '\x01', '\x7f', '\x80', '\xa0', '\xff', 'a', 'Z', '0', 'GET ', 'HEAD ', ' HTTP/1.1', 'Host: a\r\n', 'Connection: close\r\n', 'Content-Length: 0\r\n', 'upgrade', 'close', 'keep-alive', '\r\n\r\n'];
  let accepted = 0;
  for (let n = 0; n < 30_000; n++) {
    let s = pick(bases);
    const edits = 1 + Math.floor(rnd() * 4);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(rnd() * (s.length + 1));
      const op = rnd();
      if (op < 0.35) s = s.slice(0, at) + pick(pieces) + s.slice(at);
      else if (op < 0.6) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rnd() * 3));
      else s = s.slice(0, at) + pick(pieces) + s.slice(at + 1);
    }
    const buf = Buffer.from(s, 'latin1');
    const from = rnd() < 0.1 ? Math.floor(rnd() * 4) : 0;
    const end = findHeadEnd(buf, from);
    assert.equal(end, legacyFindHeadEnd(buf, from), JSON.stringify(s));
    // Every end, not only the first CRLFCRLF: the parser takes any range.
    const ends = end >= 0 ? [end, buf.length] : [buf.length, Math.floor(rnd() * buf.length)];
    for (const e of ends) {
      const got = parseRequestHead(buf, from, Math.max(from, e));
      assert.deepEqual(got, legacyParse(buf, from, Math.max(from, e)), JSON.stringify(s));
      if (got) accepted++;
    }
  }
  assert.ok(accepted > 1000, `only ${accepted} accepted: the mutations are too harsh to compare much`);
});

test('findHeadEnd resumes where it stopped: a head byte by byte gives the answers of a full rescan', () => {
  const heads = [
    'GET /a HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\nGET /b HTTP/1.1\r\n',
    'GET /a HTTP/1.1\r\nHost: a\r\nX: y\r\r\n\r\n',
    'GET /a HTTP/1.1\r\nHost: a\nX: y\r\n\r\n',
    '\r\n\r\n',
    '\nGET',
    `GET /a HTTP/1.1\r\nX: ${'a'.repeat(MAX_HEAD_BYTES + 10)}\r\n\r\n`,
  ];
  for (const text of heads) {
    for (const from of [0, 1]) {
      const all = Buffer.from(`${'x'.repeat(from)}${text}`, 'latin1');
      let scanned = from;
      for (let len = from; len <= all.length; len++) {
        const prefix = all.subarray(0, len);
        const got = findHeadEnd(prefix, from, scanned);
        assert.equal(got, legacyFindHeadEnd(prefix, from), `${JSON.stringify(text)} at ${len}`);
        if (got !== -1) break;
        scanned = len;
      }
    }
  }
});
