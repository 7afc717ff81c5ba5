// The HTTP/1.1 front (server/http1/front.ts) with a toy answerer before a toy
// node app, over real sockets: order of answers on one connection, heads
// split anywhere, pipelining, the hand-over to node in the middle of a
// connection (with the bytes already read), streaming with backpressure,
// connection close rules and a graceful stop.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { listen, type ListeningServer } from '../../server/listen';
import type { Answerer, FrontAnswer } from '../../server/http1/front';
import { exchange, requestText } from '../helpers/raw-http';
import type { BlobReader } from '../../storage/backends/backend';
import { pseudoRandomBytes } from '../helpers/ostree';

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
