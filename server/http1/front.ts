import { STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { pump, type FileRange } from '../files/pump';
import { findHeadEnd, parseRequestHead, type RequestHead } from './head';

/**
 * A thin HTTP/1.1 front for the requests that make up a pull: GET and HEAD of
 * repository files, answered straight on the socket. node's HTTP server costs
 * more per request than everything Cairn does for a cached object (its
 * IncomingMessage and ServerResponse objects, header validation, stream
 * machinery): on 2 cores a bare node:http server answering from a Map makes
 * ~50k req/s under 64 connections, the same on a socket ~75k.
 *
 * It is installed in front of the http.Server that runs the app (installFront
 * takes over the server's 'connection' listener), reads each connection first,
 * and answers what the answerer accepts. The first request it does not
 * answer (another method, a body, anything parseRequestHead refuses, a
 * private repository, a missing delta file, …) hands the connection, with every
 * byte not yet answered, to node's own connection listener for good: from then
 * on the app sees it like any other connection. So everything but the hot
 * path keeps node's full HTTP handling, and answers on one connection keep
 * their order.
 */

export interface FrontAnswer {
  status: number;
  /** Header lines, `Name: value\r\n` each, without Date and Connection (the front adds those). */
  head: string;
  /** The body; nothing for HEAD. */
  body?: Buffer;
  /** A body to stream instead (exactly the Content-Length announced); destroyed if the client goes away. */
  stream?: Readable;
  /** A body to send from an open blob with pump() instead; its reader is closed in every case. */
  file?: FileRange;
  /** Called once, when the answer has been handed to the socket (or cut short). */
  done?(bodyBytes: number, aborted: boolean): void;
}

/** The answer to a request, or null to hand the connection to node (nothing may have been written). */
export type Answerer = (head: RequestHead) => FrontAnswer | null | Promise<FrontAnswer | null>;

export interface FrontOptions {
  answer: Answerer;
  /** Told each time a connection goes to node (a metric: a pull should need none). */
  onHandOver?: () => void;
  /** Idle time before a kept-alive connection is closed (default: the server's keepAliveTimeout, as node's own connections). */
  keepAliveTimeoutMs?: number;
}

export interface Front {
  /** For a graceful stop: closes the connections waiting for a request, and every other one after its answer in progress. */
  stop(): void;
  /** Closes every connection the front still holds. */
  closeAll(): void;
}

type ConnectionListener = (this: Server, socket: Socket) => void;

interface Shared {
  answer: Answerer;
  keepAliveMs: number;
  /** The end of a kept-alive answer's head, announcing keepAliveMs as node does. */
  keepAliveLines: string;
  /** The server is stopping: no request after the one in progress. */
  stopping: boolean;
}

export function installFront(server: Server, opts: FrontOptions): Front {
  const listeners = server.listeners('connection') as ConnectionListener[];
  if (listeners.length !== 1) throw new Error(`expected node's one connection listener, found ${listeners.length}`);
  const nodeListener = listeners[0]!;
  server.removeListener('connection', nodeListener);
  const open = new Set<Connection>();
  const keepAliveMs = opts.keepAliveTimeoutMs ?? server.keepAliveTimeout;
  const shared: Shared = {
    answer: opts.answer,
    keepAliveMs,
    keepAliveLines: `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(keepAliveMs / 1000)}\r\n\r\n`,
    stopping: false,
  };
  server.on('connection', (socket: Socket) => {
    if (shared.stopping) {
      socket.destroy();
      return;
    }
    const c = new Connection(socket, shared, (from) => {
      open.delete(from);
      opts.onHandOver?.();
      nodeListener.call(server, socket);
    });
    open.add(c);
    socket.once('close', () => open.delete(c));
  });
  return {
    stop: () => {
      shared.stopping = true;
      for (const c of open) if (c.idle) c.socket.destroy();
    },
    closeAll: () => {
      for (const c of open) c.socket.destroy();
    },
  };
}

const EMPTY = Buffer.alloc(0);
/**
 * Flow control, as node's server does it: requests received while an answer
 * is in progress are buffered up to IN_LIMIT, then the socket stops being
 * read; answers waiting in the socket beyond OUT_LIMIT (a client that sends
 * but does not read) stop the processing of requests until they drain.
 */
const IN_LIMIT = 64 * 1024;
const OUT_LIMIT = 1024 * 1024;
const CLOSE = 'Connection: close\r\n\r\n';

class Connection {
  /** Bytes received and not yet answered; the head being answered stays in front until it is. */
  private buf: Buffer = EMPTY;
  /** An answer is being computed or streamed: requests behind it wait. */
  private busy = false;
  private ended = false;

  constructor(
    readonly socket: Socket,
    private readonly shared: Shared,
    private readonly toNode: (c: Connection) => void,
  ) {
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('error', onSocketError);
    socket.setTimeout(shared.keepAliveMs);
    socket.on('timeout', this.onTimeout);
  }

  get idle(): boolean {
    return !this.busy && this.buf.length === 0;
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.ended) return;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (!this.busy) this.next();
    else if (this.buf.length > IN_LIMIT) this.socket.pause();
  };

  /** The answer in progress is over: read again and go on with the requests buffered. */
  private readonly resume = (): void => {
    this.busy = false;
    if (this.ended || this.socket.destroyed) return;
    this.socket.resume();
    this.next();
  };

  private readonly onTimeout = (): void => {
    // An answer in progress is the client's to read at its pace (node: server.timeout 0).
    if (!this.busy) this.socket.destroy();
  };

  /** Answers the complete requests buffered, in order, until one must wait or go to node. */
  private next(): void {
    while (!this.busy && !this.ended && this.buf.length > 0) {
      if (this.socket.writableLength > OUT_LIMIT) {
        this.busy = true;
        this.socket.pause();
        this.socket.once('drain', this.resume);
        return;
      }
      const end = findHeadEnd(this.buf, 0);
      if (end === -1) return; // wait for the rest of the head
      const head = end === -2 ? null : parseRequestHead(this.buf, 0, end);
      if (!head) return this.handOver();
      let result: ReturnType<Answerer>;
      try {
        result = this.shared.answer(head);
      } catch {
        return this.handOver(); // node's app answers it, errors included
      }
      if (result === null) return this.handOver();
      if (result instanceof Promise) {
        this.busy = true;
        result.then(
          (a) => {
            if (!a) return this.handOver();
            this.consume(end);
            if (!this.send(head, a)) this.resume();
          },
          () => this.handOver(),
        );
        return;
      }
      this.consume(end);
      this.send(head, result);
    }
  }

  private consume(headEnd: number): void {
    const rest = headEnd + 4;
    this.buf = rest >= this.buf.length ? EMPTY : this.buf.subarray(rest);
  }

  /** Writes an answer; true when its body is being streamed (the connection resumes at its end). */
  private send(head: RequestHead, a: FrontAnswer): boolean {
    const s = this.socket;
    const headOnly = head.method === 'HEAD';
    if (s.destroyed || headOnly) {
      // Release what will not be sent.
      a.stream?.destroy();
      void a.file?.reader.close().catch(() => undefined);
    }
    if (s.destroyed) {
      a.done?.(0, true);
      return false;
    }
    if (!head.keepAlive || this.shared.stopping) this.ended = true;
    const text = `HTTP/1.1 ${a.status} ${STATUS_CODES[a.status] ?? 'Unknown'}\r\n${a.head}Date: ${httpNow()}\r\n${this.ended ? CLOSE : this.shared.keepAliveLines}`;
    if (!headOnly && a.file) {
      this.pumpFile(s, text, a.file, a);
      return true;
    }
    if (!headOnly && a.stream) {
      this.stream(s, text, a.stream, a);
      return true;
    }
    const body = headOnly ? undefined : a.body;
    s.cork();
    s.write(text, 'latin1');
    if (body && body.length > 0) s.write(body);
    s.uncork();
    a.done?.(body?.length ?? 0, false);
    if (this.ended) s.end();
    return false;
  }

  /** A large body from an open blob (see pump.ts); the connection's next request waits for its end. */
  private pumpFile(s: Socket, text: string, file: FileRange, a: FrontAnswer): void {
    this.busy = true;
    s.write(text, 'latin1');
    const stop = pump(file, s, (err, bytes) => {
      s.off('close', stop);
      const aborted = err !== null || s.destroyed;
      a.done?.(bytes, aborted);
      // After the head, only a cut connection tells the client the body is short.
      if (err) s.destroy();
      else if (!aborted) {
        if (this.ended) s.end();
        else this.resume();
      }
    });
    s.once('close', stop);
  }

  /** A large body: piped with backpressure; the connection's next request waits for its end. */
  private stream(s: Socket, text: string, stream: Readable, a: FrontAnswer): void {
    this.busy = true;
    let bytes = 0;
    let finished = false;
    const finish = (aborted: boolean) => {
      if (finished) return;
      finished = true;
      s.off('close', onClose);
      a.done?.(bytes, aborted);
    };
    const onClose = () => {
      count();
      stream.destroy();
      finish(true);
    };
    s.on('close', onClose);
    s.write(text, 'latin1');
    // Counted on the way to the socket: a 'data' listener here would keep the
    // stream flowing past the socket's backpressure.
    const bodyStart = s.bytesWritten;
    const count = () => (bytes = s.bytesWritten - bodyStart);
    stream.once('error', () => {
      // After the head: only a cut connection tells the client the body is short.
      count();
      s.destroy();
      finish(true);
    });
    stream.once('end', () => {
      count();
      finish(false);
      if (this.ended) s.end();
      else this.resume();
    });
    stream.pipe(s, { end: false });
  }

  /** Gives the connection, and every byte not answered yet, to node's HTTP server. */
  private handOver(): void {
    const s = this.socket;
    this.busy = false;
    this.ended = true;
    s.off('data', this.onData);
    s.off('timeout', this.onTimeout);
    s.setTimeout(0);
    s.pause();
    if (this.buf.length > 0) s.unshift(this.buf);
    this.buf = EMPTY;
    if (s.destroyed) return;
    this.toNode(this);
    // node's listener reads the socket from here on (our bytes first: they are in its buffer).
    process.nextTick(() => s.resume());
  }
}

function onSocketError(): void {
  // A reset by the client: 'close' follows, and the answer in progress (if any) is cut.
}

/** The Date header, formatted once per second. */
let dateSecond = -1;
let dateText = '';
function httpNow(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(second * 1000).toUTCString();
  }
  return dateText;
}
