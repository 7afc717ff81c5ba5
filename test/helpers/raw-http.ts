import { connect, type Socket } from 'node:net';

/**
 * A raw HTTP/1.1 client for tests that need control over the bytes: requests
 * split anywhere, pipelined, malformed. It parses the answers itself
 * (status, headers, Content-Length bodies) so that it judges the server's
 * framing rather than trusting node's client.
 */

export interface ParsedResponse {
  status: number;
  /** Lower-cased names; a repeated header keeps its last value. */
  headers: Record<string, string>;
  /** Header names in the order sent. */
  names: string[];
  body: Buffer;
}

export interface Exchange {
  responses: ParsedResponse[];
  /** The server closed the connection (before the client did). */
  closedByServer: boolean;
}

export interface ExchangeOptions {
  /** How many answers to wait for. */
  expect: number;
  /** For each expected answer, whether it answers a HEAD (no body whatever Content-Length says). */
  heads?: boolean[];
  /** Delay between chunks (default: the next turn of the event loop). */
  gapMs?: number;
  /** After the expected answers, wait this long to see whether the server closes (default 0: don't wait). */
  lingerMs?: number;
  /** Read nothing for this long after connecting (answers pile up at the server). */
  readDelayMs?: number;
  timeoutMs?: number;
}

/** Sends `chunks` one after the other on one connection and parses what comes back. */
export function exchange(port: number, chunks: (string | Buffer)[], opts: ExchangeOptions): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const responses: ParsedResponse[] = [];
    let closedByServer = false;
    let settled = false;
    const timer = setTimeout(() => finish(new Error(`timed out with ${responses.length}/${opts.expect} answers; pending bytes: ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`)), opts.timeoutMs ?? 10_000);
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve({ responses, closedByServer });
    };
    const parse = () => {
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const lines = buf.toString('latin1', 0, end).split('\r\n');
        const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]!);
        if (!m) return finish(new Error(`bad status line ${JSON.stringify(lines[0])}`));
        const headers: Record<string, string> = {};
        const names: string[] = [];
        for (const line of lines.slice(1)) {
          const i = line.indexOf(':');
          const name = line.slice(0, i);
          names.push(name);
          headers[name.toLowerCase()] = line.slice(i + 1).trim();
        }
        const status = Number(m[1]);
        const isHead = opts.heads?.[responses.length] ?? false;
        const length = isHead || status === 304 ? 0 : Number(headers['content-length'] ?? 0);
        if (buf.length < end + 4 + length) return;
        responses.push({ status, headers, names, body: Buffer.from(buf.subarray(end + 4, end + 4 + length)) });
        buf = buf.subarray(end + 4 + length);
        if (responses.length === opts.expect) {
          if (!opts.lingerMs) return finish();
          setTimeout(() => finish(), opts.lingerMs);
          return;
        }
      }
    };
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      parse();
    });
    socket.on('end', () => {
      closedByServer = true;
      if (responses.length >= opts.expect) finish();
      else finish(new Error(`server closed after ${responses.length}/${opts.expect} answers`));
    });
    socket.on('error', (e) => finish(e));
    if (opts.readDelayMs) {
      socket.pause();
      setTimeout(() => socket.resume(), opts.readDelayMs);
    }
    socket.on('connect', async () => {
      for (const c of chunks) {
        if (settled || socket.destroyed) return;
        socket.write(c);
        await new Promise((r) => (opts.gapMs ? setTimeout(r, opts.gapMs) : setImmediate(r)));
      }
    });
  });
}

/** A GET (or other method) request head, HTTP/1.1 with Host, plus `extra` header lines. */
export function requestText(path: string, extra: string[] = [], method = 'GET'): string {
  return `${method} ${path} HTTP/1.1\r\nHost: test\r\n${extra.map((h) => `${h}\r\n`).join('')}\r\n`;
}

/** `text` as one-byte chunks, for exchange(): a client trickling its request. */
export function singleBytes(text: string): Buffer[] {
  return [...Buffer.from(text, 'latin1')].map((b) => Buffer.from([b]));
}

/** A connection that sends nothing (yet): resolves once connected. */
export function openIdle(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.off('error', reject);
      socket.on('error', () => undefined);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Resolves when the server ends (or resets) `socket`, with the bytes it sent. */
export function untilClosed(socket: Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.once('close', () => resolve(Buffer.concat(chunks)));
    socket.once('end', () => socket.destroy());
  });
}

/** Splits the bytes of a whole exchange into answers (Content-Length framing; `heads` as in ExchangeOptions); throws on anything else. */
export function parseResponses(all: Buffer, heads: boolean[] = []): ParsedResponse[] {
  const responses: ParsedResponse[] = [];
  let at = 0;
  while (at < all.length) {
    const end = all.indexOf('\r\n\r\n', at);
    if (end === -1) throw new Error(`incomplete answer head at ${at}: ${JSON.stringify(all.toString('latin1', at, at + 200))}`);
    const lines = all.toString('latin1', at, end).split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]!);
    if (!m) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
    const headers: Record<string, string> = {};
    const names: string[] = [];
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      names.push(line.slice(0, i));
      headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
    }
    const status = Number(m[1]);
    const length = heads[responses.length] || status === 304 ? 0 : Number(headers['content-length'] ?? 0);
    if (end + 4 + length > all.length) throw new Error(`answer ${responses.length} cut: ${all.length - end - 4} of ${length} body bytes`);
    responses.push({ status, headers, names, body: all.subarray(end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
  return responses;
}

/**
 * Sends `text`, reads nothing for `readDelayMs` (the answers wait in the
 * server and the socket buffers), then reads everything until the server
 * closes the connection; resolves with all the bytes (collected without
 * copying them over and over: fit for bodies of tens of MB).
 */
export function readLateUntilClosed(port: number, text: string, readDelayMs: number, timeoutMs = 30_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server did not close within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.pause();
    socket.on('connect', () => socket.write(text));
    setTimeout(() => socket.resume(), readDelayMs);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('end', () => socket.destroy());
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}
