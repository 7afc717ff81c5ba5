// The HTTP/1.1 front (server/http1/front.ts) with a toy answerer before a toy
// node app, over real sockets: order of answers on one connection, heads
// split anywhere, pipelining, the hand-over to node in the middle of a
// connection (with the bytes already read), streaming with backpressure,
// connection close rules and a graceful stop.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { listen, type ListeningServer } from '../../server/listen';
import { installFront, type Answerer, type FrontAnswer } from '../../server/http1/front';
import { exchange, openIdle, parseResponses, readLateUntilClosed, requestText, singleBytes, untilClosed } from '../helpers/raw-http';
import type { BlobReader } from '../../storage/backends/backend';
import { pseudoRandomBytes } from '../helpers/ostree';
import { mulberry32 } from '../helpers/prng';

const i32 = (rnd: () => number, n: number) => Math.floor(rnd() * n);

const done: { target: string; bytes: number; aborted: boolean }[] = [];
let destroyedStreams = 0;
let readersClosed = 0;

function answer(target: string, body: Buffer, extra: Partial<FrontAnswer> = {}): FrontAnswer {
  return {
    status: 200,
    head: `Content-Type: text/plain\r\nContent-Length: ${body.length}\r\n`,
    body,
    done: (bytes, aborted) => done.push({ target, bytes, aborted }),
    ...extra,
  };
}

const answerer: Answerer = (head) => {
  const t = head.target;
  let m;
  if ((m = /^\/fast\/(\w+)$/.exec(t))) return answer(t, Buffer.from(`fast ${m[1]}`));
  if ((m = /^\/async\/(\w+)$/.exec(t))) {
    const body = Buffer.from(`async ${m[1]}`);
    return new Promise((r) => setTimeout(() => r(answer(t, body)), 5));
  }
  if ((m = /^\/slow\/(\w+)$/.exec(t))) {
    const body = Buffer.from(`slow ${m[1]}`);
    return new Promise((r) => setTimeout(() => r(answer(t, body)), 300));
  }
  if ((m = /^\/stream\/(\d+)$/.exec(t))) {
    const size = Number(m[1]);
    const data = pseudoRandomBytes(size, size);
    async function* chunks() {
      for (let i = 0; i < size; i += 65536) yield data.subarray(i, i + 65536);
    }
    const stream = Readable.from(chunks());
    stream.once('close', () => {
      if (!stream.readableEnded) destroyedStreams++;
    });
    return answer(t, Buffer.alloc(0), { head: `Content-Length: ${size}\r\n`, body: undefined, stream });
  }
  if ((m = /^\/file\/(\d+)$/.exec(t))) {
    const size = Number(m[1]);
    const data = pseudoRandomBytes(size, size);
    const reader: BlobReader = {
      info: { size, mtimeMs: 0, version: 'v' },
      read: async (buffer, length, position) => data.copy(buffer, 0, position, Math.min(size, position + length)),
      close: async () => {
        readersClosed++;
      },
    };
    return answer(t, Buffer.alloc(0), { head: `Content-Length: ${size}\r\n`, body: undefined, file: { reader, start: 0, end: size - 1 } });
  }
  if (t === '/throw') throw new Error('answerer failed');
  if (t === '/null-async') return Promise.resolve(null);
  if (t === '/reject-async') return Promise.reject(new Error('async answerer failed'));
  return null;
};

function nodeApp(req: IncomingMessage, res: ServerResponse): void {
  let n = 0;
  req.on('data', (c: Buffer) => (n += c.length));
  req.on('end', () => {
    const body = Buffer.from(`node ${req.method} ${req.url} ${n}`);
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
    res.end(body);
  });
}

let server: ListeningServer;
let port: number;
before(async () => {
  server = await listen(nodeApp, { port: 0, host: '127.0.0.1', front: { answer: answerer } });
  port = server.port;
});
after(async () => {
  await server.close(100);
});

const text = (r: { body: Buffer }) => r.body.toString('latin1');

test('answers requests one after the other on a kept-alive connection, with Date and keep-alive', async () => {
  const x = await exchange(port, [requestText('/fast/1'), requestText('/fast/2'), requestText('/fast/3')], { expect: 3, gapMs: 5 });
  assert.deepEqual(x.responses.map(text), ['fast 1', 'fast 2', 'fast 3']);
  for (const r of x.responses) {
    assert.equal(r.status, 200);
    assert.equal(r.headers.connection, 'keep-alive');
    assert.match(r.headers.date ?? '', /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
  }
});

test('pipelined requests of every kind are answered in order', async () => {
  const reqs = ['/fast/a', '/async/b', '/stream/300000', '/fast/c', '/async/d'].map((p) => requestText(p)).join('');
  const x = await exchange(port, [reqs], { expect: 5 });
  assert.deepEqual(
    x.responses.map((r) => (r.body.length > 1000 ? `${r.body.length} bytes` : text(r))),
    ['fast a', 'async b', '300000 bytes', 'fast c', 'async d'],
  );
  assert.ok(x.responses[2]!.body.equals(pseudoRandomBytes(300000, 300000)));
});

test('a client that sends much and reads late gets every answer, in order (flow control)', async () => {
  const paths = Array.from({ length: 3000 }, (_, i) => (i % 100 === 50 ? '/stream/200000' : `/fast/${i}`));
  const x = await exchange(port, [paths.map((p) => requestText(p)).join('')], { expect: paths.length, readDelayMs: 300, timeoutMs: 30_000 });
  assert.deepEqual(
    x.responses.map((r) => (r.body.length === 200000 ? '/stream/200000' : `/fast/${text(r).slice(5)}`)),
    paths,
  );
});

test('a head split into single bytes is answered once complete', async () => {
  const bytes = [...Buffer.from(requestText('/fast/split') + requestText('/fast/after'))].map((b) => Buffer.from([b]));
  const x = await exchange(port, bytes, { expect: 2 });
  assert.deepEqual(x.responses.map(text), ['fast split', 'fast after']);
});

test('pipelined requests cut at random places, answered while more arrive, come back whole and in order', async () => {
  const rnd = mulberry32(7);
  const paths = Array.from({ length: 400 }, (_, i) => (i % 7 === 3 ? `/async/${i}` : i % 50 === 25 ? '/stream/70000' : `/fast/${i}`));
  const all = Buffer.from(paths.map((p) => requestText(p, [`X-Pad: ${'p'.repeat(i32(rnd, 300))}`])).join(''), 'latin1');
  const chunks: Buffer[] = [];
  for (let at = 0; at < all.length; ) {
    const n = 1 + i32(rnd, rnd() < 0.5 ? 8 : 3000);
    chunks.push(all.subarray(at, at + n));
    at += n;
  }
  const x = await exchange(port, chunks, { expect: paths.length, timeoutMs: 30_000 });
  assert.deepEqual(
    x.responses.map((r) => (r.body.length === 70000 ? '/stream/70000' : `/${text(r).replace(' ', '/')}`)),
    paths,
  );
});

test('a request the front does not take hands the connection to node, bytes and order kept', async () => {
  const post = 'POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello';
  const x = await exchange(port, [requestText('/fast/1') + post + requestText('/fast/3')], { expect: 3 });
  // From the hand-over on, node answers everything on that connection.
  assert.deepEqual(x.responses.map(text), ['fast 1', 'node POST /upload 5', 'node GET /fast/3 0']);
  const y = await exchange(port, [requestText('/fast/1'), post, requestText('/fast/3')], { expect: 3, gapMs: 10 });
  assert.deepEqual(y.responses.map(text), ['fast 1', 'node POST /upload 5', 'node GET /fast/3 0']);
});

test('answerers that decline, throw or reject leave the request to node', async () => {
  for (const path of ['/elsewhere', '/throw', '/null-async', '/reject-async']) {
    const x = await exchange(port, [requestText(path)], { expect: 1 });
    assert.equal(text(x.responses[0]!), `node GET ${path} 0`);
  }
});

test('HEAD gets the head without the body', async () => {
  const x = await exchange(port, [requestText('/fast/h', [], 'HEAD') + requestText('/stream/100000', [], 'HEAD') + requestText('/fast/g')], { expect: 3, heads: [true, true, false] });
  assert.equal(x.responses[0]!.headers['content-length'], '6');
  assert.equal(x.responses[1]!.headers['content-length'], '100000');
  assert.equal(text(x.responses[2]!), 'fast g'); // nothing stray between the answers
});

test('Connection: close and HTTP/1.0 end the connection after the answer', async () => {
  const x = await exchange(port, [requestText('/fast/1', ['Connection: close']) + requestText('/fast/2')], { expect: 1, lingerMs: 200 });
  assert.equal(text(x.responses[0]!), 'fast 1');
  assert.equal(x.responses[0]!.headers.connection, 'close');
  assert.equal(x.closedByServer, true);
  const y = await exchange(port, ['GET /fast/old HTTP/1.0\r\n\r\n'], { expect: 1, lingerMs: 200 });
  assert.equal(text(y.responses[0]!), 'fast old');
  assert.equal(y.closedByServer, true);
  const z = await exchange(port, ['GET /fast/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n', 'GET /fast/2 HTTP/1.0\r\n\r\n'], { expect: 2, gapMs: 10, lingerMs: 200 });
  assert.deepEqual(z.responses.map(text), ['fast 1', 'fast 2']);
  assert.equal(z.closedByServer, true);
});

test('malformed or oversized heads are node’s to refuse', async () => {
  const bareLf = await exchange(port, ['GET /fast/1 HTTP/1.1\nHost: test\n\n'], { expect: 1, lingerMs: 50 }).catch((e: Error) => e);
  // node either refuses it or answers it through the app: never the front.
  if (!(bareLf instanceof Error)) assert.ok(bareLf.responses[0]!.status === 400 || text(bareLf.responses[0]!).startsWith('node'));
  const huge = await exchange(port, [`GET /fast/1 HTTP/1.1\r\nHost: test\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`], { expect: 1, lingerMs: 50 });
  assert.equal(huge.responses[0]!.status, 431);
});

test('blobs sent from a reader arrive whole, in order, and the reader is closed; a client leaving cuts it', async () => {
  const before = readersClosed;
  const x = await exchange(port, [requestText('/file/700000') + requestText('/fast/after') + requestText('/file/5', [], 'HEAD')], { expect: 3, heads: [false, false, true] });
  assert.ok(x.responses[0]!.body.equals(pseudoRandomBytes(700000, 700000)));
  assert.equal(text(x.responses[1]!), 'fast after');
  assert.equal(x.responses[2]!.headers['content-length'], '5');
  assert.equal(readersClosed, before + 2); // the HEAD's reader too
  await new Promise<void>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(requestText('/file/50000000')));
    let got = 0;
    s.on('data', (d: Buffer) => {
      got += d.length;
      if (got > 1_000_000 && !s.destroyed) {
        s.destroy();
        resolve();
      }
    });
    s.on('error', reject);
  });
  for (let i = 0; i < 100 && readersClosed === before + 2; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(readersClosed, before + 3);
  const entry = done.find((d) => d.target === '/file/50000000');
  assert.ok(entry);
  assert.equal(entry.aborted, true);
});

test('a client leaving in the middle of a stream destroys the stream and reports it aborted', async () => {
  const before = destroyedStreams;
  await new Promise<void>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(requestText('/stream/50000000')));
    let got = 0;
    s.on('data', (d: Buffer) => {
      got += d.length;
      if (got > 1_000_000) {
        s.destroy();
        resolve();
      }
    });
    s.on('error', reject);
  });
  for (let i = 0; i < 100 && destroyedStreams === before; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(destroyedStreams, before + 1);
  const entry = done.find((d) => d.target === '/stream/50000000');
  assert.ok(entry);
  assert.equal(entry.aborted, true);
  assert.ok(entry.bytes < 50_000_000);
});

test('done() reports the body bytes of each answer', async () => {
  done.length = 0;
  await exchange(port, [requestText('/fast/xyz') + requestText('/stream/123456') + requestText('/fast/h', [], 'HEAD')], { expect: 3, heads: [false, false, true] });
  assert.deepEqual(done, [
    { target: '/fast/xyz', bytes: 8, aborted: false },
    { target: '/stream/123456', bytes: 123456, aborted: false },
    { target: '/fast/h', bytes: 0, aborted: false },
  ]);
});

test('a graceful stop closes idle connections and lets the answer in progress finish', async () => {
  const s2 = await listen(nodeApp, { port: 0, host: '127.0.0.1', front: { answer: answerer } });
  const idle = connect(s2.port, '127.0.0.1');
  await new Promise((r) => idle.once('connect', r));
  const idleClosed = new Promise((r) => idle.once('close', r));
  const busy = exchange(s2.port, [requestText('/slow/last')], { expect: 1 });
  await new Promise((r) => setTimeout(r, 100)); // the request is in, its answer 200 ms away
  const closed = s2.close(2000);
  const x = await busy;
  assert.equal(text(x.responses[0]!), 'slow last');
  assert.equal(x.responses[0]!.headers.connection, 'close');
  await idleClosed;
  await closed;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('slowloris: a head trickling in gets 408 and a close once its deadline passes, however often bytes come', async () => {
  const s2 = await listen(nodeApp, { port: 0, host: '127.0.0.1', front: { answer: answerer, headersTimeoutMs: 500 } });
  try {
    const started = Date.now();
    // One byte every 100 ms: 20 s for the whole head, each byte well within the keep-alive timeout.
    const x = await exchange(s2.port, singleBytes(requestText('/fast/slow', [`X-Pad: ${'p'.repeat(150)}`])), { expect: 1, gapMs: 100, lingerMs: 1000 });
    const elapsed = Date.now() - started;
    assert.equal(x.responses[0]!.status, 408);
    assert.equal(x.responses[0]!.headers.connection, 'close');
    assert.equal(x.responses[0]!.headers['content-length'], '0');
    assert.equal(x.closedByServer, true);
    assert.ok(elapsed < 4000, `answered after ${elapsed} ms`);
    // A head that trickles in but is whole within the deadline is answered.
    const y = await exchange(s2.port, singleBytes(requestText('/fast/ok')), { expect: 1, gapMs: 5 });
    assert.equal(text(y.responses[0]!), 'fast ok');
  } finally {
    await s2.close(100);
  }
});

test('a kept-alive connection with no byte of a new request is closed after the keep-alive timeout; one that never sent a byte too', async () => {
  const s2 = await listen(nodeApp, { port: 0, host: '127.0.0.1', front: { answer: answerer, keepAliveTimeoutMs: 300, headersTimeoutMs: 5000 } });
  try {
    const x = await exchange(s2.port, [requestText('/fast/1')], { expect: 1, lingerMs: 2000 });
    assert.equal(text(x.responses[0]!), 'fast 1');
    assert.equal(x.closedByServer, true);
    const idle = await openIdle(s2.port);
    const bytes = await untilClosed(idle);
    assert.equal(bytes.length, 0); // closed without a word, as node does
  } finally {
    await s2.close(100);
  }
});

test('connection cap: past maxConnections (node’s connections included) a new connection reads 503 and EOF', async () => {
  let refused = 0;
  const s2 = await listen(nodeApp, { port: 0, host: '127.0.0.1', front: { answer: answerer, maxConnections: 2, onRefused: () => refused++ } });
  try {
    const first = await openIdle(s2.port);
    // The second is handed to node (a POST) and kept alive there: it counts too.
    const second = await openIdle(s2.port);
    second.write('POST /up HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\n\r\nx');
    const got = await new Promise<string>((r) => second.once('data', (d: Buffer) => r(d.toString('latin1'))));
    assert.match(got, /node POST \/up 1/);
    const third = await openIdle(s2.port);
    const answer = (await untilClosed(third)).toString('latin1');
    assert.match(answer, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
    assert.match(answer, /\r\nConnection: close\r\n/);
    assert.match(answer, /\r\nRetry-After: 1\r\n/);
    assert.match(answer, /\r\nContent-Length: 0\r\n/);
    assert.ok(answer.endsWith('\r\n\r\n'));
    assert.equal(refused, 1);
    // Once one closes, there is room again.
    first.destroy();
    let x;
    for (let i = 0; i < 50; i++) {
      await sleep(20);
      x = await exchange(s2.port, [requestText('/fast/room')], { expect: 1 }).catch(() => undefined);
      if (x?.responses[0]!.status === 200) break;
    }
    assert.ok(x);
    assert.equal(text(x.responses[0]!), 'fast room');
    second.destroy();
  } finally {
    await s2.close(100);
  }
});

test('a client that takes no byte of an answer for sendTimeoutMs is cut (it would hold its connection for ever)', async () => {
  const s2 = await listen(nodeApp, { port: 0, host: '127.0.0.1', front: { answer: answerer, headersTimeoutMs: 200, keepAliveTimeoutMs: 200, sendTimeoutMs: 500 } });
  try {
    const size = 30_000_000;
    for (const kind of ['stream', 'file']) {
      // Nothing read for 3 s: the server gives up on the answer and closes; what was in flight is all the client gets.
      const all = await readLateUntilClosed(s2.port, requestText(`/${kind}/${size}`), 3000);
      assert.ok(all.length > 0 && all.length < size, `${kind}: ${all.length} bytes reached the client`);
    }
  } finally {
    await s2.close(100);
  }
});

test('the deadlines do not cut an answer the client reads slowly, nor the requests behind it', async () => {
  const s2 = await listen(nodeApp, { port: 0, host: '127.0.0.1', front: { answer: answerer, headersTimeoutMs: 200, keepAliveTimeoutMs: 200 } });
  try {
    const size = 30_000_000;
    const expected = pseudoRandomBytes(size, size);
    for (const kind of ['stream', 'file']) {
      // Nothing read for 1.5 s: the answer waits, far beyond both timeouts,
      // then the request behind it is answered, and the idle connection closed.
      const all = await readLateUntilClosed(s2.port, requestText(`/${kind}/${size}`) + requestText('/fast/behind'), 1500);
      const [big, behind, ...more] = parseResponses(all);
      assert.equal(big!.body.length, size, kind);
      assert.ok(big!.body.equals(expected), kind);
      assert.equal(text(behind!), 'fast behind');
      assert.equal(more.length, 0);
    }
    // A head that started behind a long answer is timed from the end of that answer: the answer is whole, then 408.
    const all = await readLateUntilClosed(s2.port, `${requestText(`/stream/${size}`)}GET /fast/never HTTP/1.1\r\nHo`, 1500);
    const [big, late] = parseResponses(all);
    assert.ok(big!.body.equals(expected));
    assert.equal(late!.status, 408);
  } finally {
    await s2.close(100);
  }
});

test('after a hand-over node’s own timeouts apply, from the hand-over, also to a request the front had started timing', async () => {
  // The front hands node no head half-received but those node refuses at
  // once (a bare LF: 400; past 16 KiB: 431), so what node has to time is a
  // body: requestTimeout. node checks every connectionsCheckingInterval, short here.
  const server = createServer({ connectionsCheckingInterval: 100, headersTimeout: 800, requestTimeout: 800 }, nodeApp);
  installFront(server, { answer: answerer, headersTimeoutMs: 600 });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port2 = (server.address() as AddressInfo).port;
  try {
    const post = 'POST /up HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n';
    // A body trickling in, a byte every 100 ms: node answers 408 though the front's socket timeout is off.
    const started = Date.now();
    const x = await exchange(port2, [post, ...singleBytes('b'.repeat(100))], { expect: 1, gapMs: 100, lingerMs: 200 });
    assert.equal(x.responses[0]!.status, 408);
    assert.equal(x.responses[0]!.headers['content-length'], undefined); // node's 408, not the front's
    assert.equal(x.closedByServer, true);
    assert.ok(Date.now() - started < 4000);
    // 400 ms into the front's 600 ms the head is whole and node's: node's 800 ms run from there, the front's are off.
    const y = await exchange(port2, [post.slice(0, 20), post.slice(20), ...singleBytes('b'.repeat(100))], { expect: 1, gapMs: 400, lingerMs: 200 });
    assert.equal(y.responses[0]!.status, 408);
    assert.equal(y.responses[0]!.headers['content-length'], undefined);
    // The bare LF itself: node refuses it at once.
    const z = await exchange(port2, ['GET /fast/1 HTTP/1.1\r\nHost: test\nX: y\r\n\r\n'], { expect: 1, lingerMs: 200 });
    assert.equal(z.responses[0]!.status, 400);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
