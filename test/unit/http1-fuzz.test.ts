// Differential fuzzing of the HTTP/1.1 front's request-head parser
// (server/http1/head.ts) against node's own (llhttp, through an http.Server):
// whatever head the front accepts, node must accept too and read the same
// method, target and headers, and not close where the front keeps the
// connection open. What the front refuses goes to node, which decides: no
// requirement there, only counts.
//
// Heads are generated (GET/HEAD heads with random targets, header names and
// values, cases, whitespace, versions, body framing, upgrades…) and mutated
// (bytes inserted, deleted or replaced, CR/LF/NUL/TAB/SP/obs-text, lines
// duplicated, line ends broken). Deterministic: CAIRN_FUZZ_SEED=<n> (or
// `random`) and CAIRN_FUZZ_COUNT=<n> change the run; the seed is printed.
//
// node's side: one http.Server that never listens; each head is a fresh
// in-memory socket given to it with `emit('connection')`, its bytes handed to
// the server's data listener synchronously, so node's decision is known at
// once (a 'request' event, or none: a parse error, a 400 for a missing Host,
// or a head node still waits the end of).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Duplex } from 'node:stream';
import { findHeadEnd, MAX_HEAD_BYTES, parseRequestHead, type RequestHead } from '../../server/http1/head';
import { mulberry32 } from '../helpers/prng';

const envSeed = process.env.CAIRN_FUZZ_SEED;
const SEED = envSeed === undefined || envSeed === '' ? 0x0ca1a5 : envSeed === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(envSeed);
const COUNT = process.env.CAIRN_FUZZ_COUNT ? Number(process.env.CAIRN_FUZZ_COUNT) : 100_000;

interface NodeView {
  method: string;
  url: string;
  rawHeaders: string[];
  httpVersion: string;
  keepAlive: boolean;
}

/** node's http.Server as a function: the first request it reads in `bytes`, or null if it reads none. */
class NodeParser {
  private readonly server = createServer();
  private seen: NodeView | null = null;
  clientErrors = 0;

  constructor() {
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      req.on('error', () => undefined);
      res.on('error', () => undefined);
      this.seen ??= {
        method: req.method!,
        url: req.url!,
        rawHeaders: req.rawHeaders,
        httpVersion: req.httpVersion,
        // llhttp's own keep-alive decision (Connection tokens and version).
        keepAlive: res.shouldKeepAlive,
      };
    });
    this.server.on('clientError', (_err: Error, socket: Duplex) => {
      this.clientErrors++;
      socket.destroy();
    });
  }

  parse(bytes: Buffer): NodeView | null {
    this.seen = null;
    const socket = new Duplex({
      read() {},
      write(_chunk, _encoding, callback) {
        callback();
      },
    });
    socket.on('error', () => undefined);
    this.server.emit('connection', socket);
    // What a readable socket does with a chunk, minus the turns of the event loop.
    socket.emit('data', bytes);
    const seen = this.seen;
    socket.destroy();
    return seen;
  }
}

type Front = { kind: 'accepted'; head: RequestHead; end: number } | { kind: 'refused' | 'incomplete' };

function front(buf: Buffer): Front {
  const end = findHeadEnd(buf, 0);
  if (end === -1) return { kind: 'incomplete' };
  const head = end === -2 ? null : parseRequestHead(buf, 0, end);
  return head ? { kind: 'accepted', head, end } : { kind: 'refused' };
}

/** Checks the front's reading of an accepted head against node's; returns whether node closes where the front keeps alive is not the case (always) and whether the front closes where node would not. */
function compare(buf: Buffer, f: Extract<Front, { kind: 'accepted' }>, n: NodeView | null): { frontClosesMore: boolean } {
  const show = () => JSON.stringify(buf.toString('latin1'));
  assert.ok(n, `the front accepts a head node refuses: ${show()}`);
  assert.equal(n.method, f.head.method, show());
  assert.equal(n.url, f.head.target, show());
  assert.deepEqual(n.rawHeaders, f.head.rawHeaders, show());
  assert.equal(n.httpVersion === '1.1', buf.toString('latin1', 0, f.end).split('\r\n')[0]!.endsWith('1.1'), show());
  // The front may close where node would keep the connection (always safe), never the reverse.
  if (f.head.keepAlive) assert.equal(n.keepAlive, true, `the front keeps alive what node closes: ${show()}`);
  // The headers the answer reads are the last of their name in rawHeaders (each at most once).
  for (const [name, value] of Object.entries(f.head.headers)) {
    const i = n.rawHeaders.findIndex((h, k) => k % 2 === 0 && h.toLowerCase() === name);
    assert.equal(n.rawHeaders[i + 1], value, show());
  }
  return { frontClosesMore: !f.head.keepAlive && n.keepAlive };
}

// --- generation ------------------------------------------------------------

const TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const PATH_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-._~/%=&;:@!$'()*+,?";
const ODD_PATH_CHARS = '#"<>\\^`{|}[]';
const VALUE_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,;=/"-_.:*()[]{}<>@?!#$%&+^`|~\'\\';
const KNOWN = ['Host', 'User-Agent', 'Accept', 'Accept-Encoding', 'Range', 'If-None-Match', 'If-Modified-Since', 'If-Range', 'Connection', 'Upgrade', 'HTTP2-Settings', 'Keep-Alive', 'TE', 'Trailer', 'Proxy-Connection', 'Cookie', 'Authorization', 'X-Forwarded-For', 'Content-Length', 'Transfer-Encoding', 'Expect', 'Content-Type', 'Via', 'Date'];
const CONNECTION_TOKENS = ['close', 'keep-alive', 'Keep-Alive', 'CLOSE', 'upgrade', 'Upgrade', 'HTTP2-Settings', 'http2-settings', 'TE', 'foo', '', 'close2', 'keep-alive-x', 'x-close'];
const INTERESTING = ['\r', '\n', '\r\n', '\x00', '\t', ' ', '  ', '\x7f', '\x80', '\xa0', '\xff', '\x01', '\x0b', '\x0c', '\x1f', ':', ',', ';', '"', '/', '?', '#', 'H', '1', '\r\n\r\n', '\r\n '];
const EXTRA_LINES = ['Content-Length: 0', 'Content-Length: 5', 'Transfer-Encoding: chunked', 'Host: b', 'host: a', 'Connection: close', 'Connection: keep-alive', 'Connection: Upgrade', 'Upgrade: h2c', 'Upgrade: websocket', 'Expect: 100-continue', 'Range: bytes=0-1', 'X: y', ' folded', '\tfolded', ':empty', 'Bad Name: x'];

class Gen {
  constructor(private readonly rnd: () => number) {}
  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }
  pick<T>(xs: readonly T[] | string): T {
    return xs[this.int(xs.length)] as T;
  }
  chars(alphabet: string, n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
  cased(s: string): string {
    const r = this.rnd();
    if (r < 0.6) return s;
    if (r < 0.75) return s.toLowerCase();
    if (r < 0.85) return s.toUpperCase();
    return [...s].map((c) => (this.chance(0.5) ? c.toUpperCase() : c.toLowerCase())).join('');
  }
  ows(): string {
    const r = this.rnd();
    if (r < 0.6) return '';
    if (r < 0.8) return ' ';
    if (r < 0.9) return '\t';
    return this.chars(' \t', 1 + this.int(6));
  }

  target(): string {
    const r = this.rnd();
    if (r < 0.02) return this.pick(['*', 'http://a/b', 'a/b', '', '//x', '/\x7f', '/a b']);
    let len = this.int(60);
    if (r < 0.04) len = 8180 + this.int(20); // around the longest target taken
    else if (r < 0.1) len = this.int(2000);
    let path = `/${this.chars(PATH_CHARS, len)}`;
    if (this.chance(0.05)) path += this.pick(ODD_PATH_CHARS) + this.chars(PATH_CHARS, this.int(5));
    if (this.chance(0.02)) path += this.pick(['\x80', '\xff', '\t', '\x00']);
    return path;
  }

  value(name: string): string {
    const lower = name.toLowerCase();
    if (lower === 'host') return this.pick(['a', '127.0.0.1:8080', '[::1]:80', 'example.com', '', 'a b', 'x:1:2']);
    if (lower === 'connection') {
      const n = 1 + this.int(3);
      const tokens: string[] = [];
      for (let i = 0; i < n; i++) tokens.push(this.ows() + this.cased(this.pick(CONNECTION_TOKENS)) + this.ows());
      return tokens.join(',');
    }
    if (lower === 'upgrade') return this.cased(this.pick(['h2c', 'websocket', 'h2c, websocket', 'h2', '']));
    if (lower === 'content-length') return this.pick(['0', '5', '', '-1', '1, 1', 'abc']);
    if (lower === 'transfer-encoding') return this.pick(['chunked', 'gzip', 'identity', '']);
    if (lower === 'range') return this.pick(['bytes=0-5', 'bytes=-10', 'bytes=1-', 'items=1-2']);
    const r = this.rnd();
    let v: string;
    if (r < 0.05) v = '';
    else if (r < 0.07) v = this.chars(VALUE_CHARS, 1000 + this.int(4000));
    else v = this.chars(VALUE_CHARS, this.int(40));
    if (this.chance(0.05)) v += this.pick(['\x80', '\xa0', '\xe9', '\xff', '\t', '\x7f', '\x00']) + this.chars(VALUE_CHARS, this.int(5));
    return v;
  }

  header(): [string, string] {
    const name = this.chance(0.6) ? this.cased(this.pick(KNOWN)) : this.chars(TCHAR, 1 + this.int(20));
    return [name, this.value(name)];
  }

  head(): string {
    const r = this.rnd();
    const method = r < 0.6 ? 'GET' : r < 0.9 ? 'HEAD' : this.pick(['POST', 'PUT', 'OPTIONS', 'DELETE', 'get', 'Get', 'GETX', 'CONNECT', 'PRI', 'HEADS']);
    const v = this.rnd();
    const version = v < 0.7 ? 'HTTP/1.1' : v < 0.95 ? 'HTTP/1.0' : this.pick(['HTTP/2.0', 'HTTP/1.2', 'HTTP/0.9', 'http/1.1', 'HTTP/1.', 'HTTP/1.10']);
    const lines = [`${method} ${this.target()} ${version}`];
    const headers: [string, string][] = [];
    if (this.chance(0.93)) headers.push([this.cased('Host'), this.value('host')]);
    const n = this.chance(0.02) ? 90 + this.int(20) : this.int(8);
    for (let i = 0; i < n; i++) headers.push(this.header());
    if (this.chance(0.15)) headers.push([this.cased('Connection'), this.value('connection')]);
    if (this.chance(0.05)) headers.push([this.cased('Upgrade'), this.value('upgrade')]);
    // Shuffle a little: Host is not always first.
    for (let i = headers.length - 1; i > 0; i--) {
      if (this.chance(0.3)) {
        const j = this.int(i + 1);
        [headers[i], headers[j]] = [headers[j]!, headers[i]!];
      }
    }
    for (const [name, value] of headers) lines.push(`${name}:${this.ows()}${value}${this.chance(0.1) ? this.ows() : ''}`);
    let text = `${lines.join('\r\n')}\r\n\r\n`;
    if (this.chance(0.01)) text = `${lines.join('\r\n')}\r\nX: ${'v'.repeat(Math.max(0, MAX_HEAD_BYTES - text.length - 3 + this.int(8) - 4))}\r\n\r\n`;
    return text;
  }

  mutate(text: string): string {
    let s = text;
    const edits = 1 + this.int(this.chance(0.3) ? 6 : 2);
    for (let e = 0; e < edits; e++) {
      // Mostly within the head, sometimes in its final CRLFCRLF.
      const at = this.chance(0.95) ? this.int(Math.max(1, s.length - 4)) : this.int(s.length + 1);
      const op = this.int(9);
      if (op === 0) s = s.slice(0, at) + this.pick(INTERESTING) + s.slice(at);
      else if (op === 1) s = s.slice(0, at) + s.slice(at + 1 + this.int(3));
      else if (op === 2) s = s.slice(0, at) + this.pick(INTERESTING) + s.slice(at + 1);
      else if (op === 3) s = s.slice(0, at) + String.fromCharCode(this.int(256)) + s.slice(at + 1);
      else if (op === 4) {
        // Duplicate a line.
        const lines = s.split('\r\n');
        if (lines.length > 2) {
          const i = 1 + this.int(lines.length - 3);
          lines.splice(i, 0, lines[i]!);
          s = lines.join('\r\n');
        }
      } else if (op === 5) {
        // Add a line (body framing, a second Host, folding…).
        const i = s.indexOf('\r\n');
        if (i !== -1) s = `${s.slice(0, i)}\r\n${this.pick(EXTRA_LINES)}${s.slice(i)}`;
      } else if (op === 6) {
        // Break a line end.
        const i = s.indexOf('\r\n', at);
        if (i !== -1) s = s.slice(0, i) + this.pick(['\n', '\r', '\n\r', '\r\r\n']) + s.slice(i + 2);
      } else if (op === 7) {
        s = s.replace(this.pick(['HTTP/1.1', 'HTTP/1.0', 'GET', 'HEAD', 'Host']), this.pick(['HTTP/1.0', 'HTTP/1.1', 'HEAD', 'GET', 'Hos', 'Host ', 'X-Host']));
      } else {
        // Flip a character's case.
        const c = s[at];
        if (c !== undefined) s = s.slice(0, at) + (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()) + s.slice(at + 1);
      }
    }
    // Sometimes a second request pipelined behind.
    if (this.chance(0.05)) s += 'GET /next HTTP/1.1\r\nHost: a\r\n\r\n';
    return s;
  }
}

test('differential fuzz: every head the front accepts, node reads the same way', (t) => {
  t.diagnostic(`http1 fuzz: seed ${SEED} (CAIRN_FUZZ_SEED), ${COUNT} heads (CAIRN_FUZZ_COUNT)`);
  const gen = new Gen(mulberry32(SEED));
  const node = new NodeParser();
  const counts = { acceptedByBoth: 0, refusedByFront: 0, refusedByFrontAcceptedByNode: 0, incompleteForFront: 0, refusedByNode: 0, frontClosesWhereNodeKeepsAlive: 0 };
  for (let n = 0; n < COUNT; n++) {
    const text = gen.chance(0.4) ? gen.head() : gen.mutate(gen.head());
    const buf = Buffer.from(text, 'latin1');
    const f = front(buf);
    // node gets the same bytes; for a head the front accepts, exactly that head.
    const nv = node.parse(f.kind === 'accepted' ? buf.subarray(0, f.end + 4) : buf);
    if (nv === null) counts.refusedByNode++;
    if (f.kind === 'accepted') {
      if (compare(buf, f, nv).frontClosesMore) counts.frontClosesWhereNodeKeepsAlive++;
      counts.acceptedByBoth++;
    } else if (f.kind === 'refused') {
      counts.refusedByFront++;
      if (nv) counts.refusedByFrontAcceptedByNode++;
    } else counts.incompleteForFront++;
  }
  t.diagnostic(
    `http1 fuzz: ${counts.acceptedByBoth} accepted by both, ${counts.refusedByFront} refused by the front (${counts.refusedByFrontAcceptedByNode} of them read by node), ` +
      `${counts.incompleteForFront} incomplete for the front, ${counts.refusedByNode} refused (or not read) by node; ` +
      `${counts.frontClosesWhereNodeKeepsAlive} answers where the front closes and node would keep alive`,
  );
  // A generator that stopped producing acceptable heads would prove nothing.
  assert.ok(counts.acceptedByBoth >= COUNT * 0.15, `only ${counts.acceptedByBoth} of ${COUNT} heads accepted`);
  assert.ok(counts.refusedByFront >= COUNT * 0.2, `only ${counts.refusedByFront} of ${COUNT} heads refused`);
});

test('pathological heads: linear work, the right decision, and node agrees', () => {
  const node = new NodeParser();
  const check = (text: string, expected: ((h: RequestHead) => void) | null) => {
    const buf = Buffer.from(text, 'latin1');
    const f = front(buf);
    const label = `${JSON.stringify(text.slice(0, 60))}… (${text.length} bytes)`;
    if (expected === null) {
      assert.notEqual(f.kind, 'accepted', label);
      return;
    }
    assert.equal(f.kind, 'accepted', label);
    if (f.kind !== 'accepted') return;
    expected(f.head);
    compare(buf, f, node.parse(buf.subarray(0, f.end + 4)));
  };
  const start = 'GET /p HTTP/1.1\r\nHost: a\r\n';
  // A header value of spaces ending in a control character: refused.
  check(`${start}X:${' '.repeat(8000)}\x01\r\n\r\n`, null);
  check(`${start}X:${' \t'.repeat(8000)}\x01\r\n\r\n`, null);
  check(`${start}X:${' '.repeat(8000)}\r\r\n\r\n`, null);
  // Spaces inside a value are the value's; around it they are not.
  check(`${start}X: a${' '.repeat(16000)}b\r\n\r\n`, (h) => assert.deepEqual(h.rawHeaders, ['Host', 'a', 'X', `a${' '.repeat(16000)}b`]));
  check(`${start}X:${' '.repeat(16000)}\r\n\r\n`, (h) => assert.deepEqual(h.rawHeaders, ['Host', 'a', 'X', '']));
  // One value filling the head to its limit: taken; a byte more: node's.
  const fill = (n: number) => `${start}X: ${'v'.repeat(n - start.length - 3)}`;
  check(`${fill(MAX_HEAD_BYTES)}\r\n\r\n`, (h) => assert.equal(h.rawHeaders[3]!.length, MAX_HEAD_BYTES - start.length - 3));
  check(`${fill(MAX_HEAD_BYTES + 1)}\r\n\r\n`, null);
  const big = Buffer.from(`${fill(MAX_HEAD_BYTES + 1)}`, 'latin1');
  assert.equal(findHeadEnd(big, 0), -2); // no end in sight past the limit: node's at once
  // Many short headers: the first hundred are taken, a head with more is node's.
  check(`${start}${'a:b\r\n'.repeat(99)}\r\n`, (h) => assert.equal(h.rawHeaders.length, 200));
  check(`${start}${'a:b\r\n'.repeat(100)}\r\n`, null);
  check(`${start}${'a:b\r\n'.repeat(3000)}\r\n`, null);
  check(`GET /p HTTP/1.1\r\n${'a:b\r\n'.repeat(1200)}Host: a\r\n\r\n`, null); // node reads no Host there
  // A long target, at and past its limit.
  check(`GET /${'t'.repeat(8191)} HTTP/1.1\r\nHost: a\r\n\r\n`, (h) => assert.equal(h.target.length, 8192));
  check(`GET /${'t'.repeat(8192)} HTTP/1.1\r\nHost: a\r\n\r\n`, null);
  // A 16 KiB head arriving one byte at a time: each call scans only the new byte.
  const slow = Buffer.from(`${start}X: ${' '.repeat(MAX_HEAD_BYTES - start.length - 10)}y\r\n\r\n`, 'latin1');
  let scanned = 0;
  let end = -1;
  for (let len = 1; len <= slow.length && end === -1; len++) {
    end = findHeadEnd(slow.subarray(0, len), 0, scanned);
    scanned = len;
  }
  assert.equal(end, slow.length - 4);
  assert.ok(parseRequestHead(slow, 0, end));
});
