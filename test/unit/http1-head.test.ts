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
