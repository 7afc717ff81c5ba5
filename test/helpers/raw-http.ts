import { connect } from 'node:net';

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
