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
 *
 * Limits, as node's server has them: a request head must arrive whole within
 * headersTimeoutMs of its first byte (bytes trickling in do not extend it),
 * else 408 and close; a connection with no byte of a new request is closed
 * after the keep-alive timeout; an answer being sent is never cut by either
 * (node: server.timeout 0); past maxConnections open connections, a new one
 * gets 503 and is closed. A connection handed to node is node's: its
 * headersTimeout/requestTimeout apply from the hand-over on (node's
 * connection listener enters the socket in the server's connection list,
 * whose checks run every connectionsCheckingInterval; the socket's own idle
 * timeout, which the front turns off, plays no part in them). node's window
 * starts afresh at the hand-over (its parser starts the request then), so a
 * request the front had started timing gets at most the front's
 * headersTimeoutMs + node's timeout + connectionsCheckingInterval in all,
 * never an unlimited one. In practice the only requests handed over before
 * they are whole are those with a body (node's requestTimeout times it) and
 * heads node refuses at once (a bare LF: 400, more than 16 KiB: 431; unless
 * the server runs with insecureHTTPParser, then node's headersTimeout).
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

/** The answer to a request, or null to hand the connection to node (nothing may have been written). `conn` identifies the connection (summary-pair.ts pins a summary.sig's pair to it). */
export type Answerer = (head: RequestHead, conn?: object) => FrontAnswer | null | Promise<FrontAnswer | null>;

export interface FrontOptions {
  answer: Answerer;
  /** Told each time a connection goes to node (a metric: a pull should need none). */
  onHandOver?: () => void;
  /** Idle time before a kept-alive connection is closed (default: the server's keepAliveTimeout, as node's own connections). */
  keepAliveTimeoutMs?: number;
  /**
   * Time for a request head to arrive whole from its first byte, else 408 and
   * close (default: the server's headersTimeout, or its requestTimeout if
   * shorter, as node's own connections; 0: no limit).
   */
  headersTimeoutMs?: number;
  /** Most connections open at once, those handed to node included (default 10,000); past it a new one gets 503 and is closed. */
  maxConnections?: number;
  /** Told each time a connection is refused for maxConnections (a metric). */
  onRefused?: () => void;
  /**
   * How long an answer may make no progress (not one byte taken by a client
   * that does not read) before the connection is cut (default 60 s, as
   * nginx's send_timeout; 0: no limit).
   */
  sendTimeoutMs?: number;
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
  /** The head deadline (0: none). */
  headersMs: number;
  /** The send-progress deadline (0: none). */
  sendMs: number;
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
  const maxConnections = opts.maxConnections ?? 10_000;
  /** Every connection accepted and not closed yet, the front's and node's. */
  let connections = 0;
  const shared: Shared = {
    answer: opts.answer,
    keepAliveMs,
    headersMs: opts.headersTimeoutMs ?? headDeadline(server),
    sendMs: opts.sendTimeoutMs ?? 60_000,
    keepAliveLines: `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(keepAliveMs / 1000)}\r\n\r\n`,
    stopping: false,
  };
  server.on('connection', (socket: Socket) => {
    if (shared.stopping) {
      socket.destroy();
      return;
    }
    if (connections >= maxConnections) {
      refuse(socket);
      opts.onRefused?.();
      return;
    }
    connections++;
    socket.once('close', () => connections--);
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
/** How long a connection refused for maxConnections may stay once its 503 is written. */
const REFUSED_LINGER_MS = 1000;

/** node's deadline for a request without a body: the shorter of headersTimeout and requestTimeout (0 is none). */
function headDeadline(server: Server): number {
  const limits = [server.headersTimeout, server.requestTimeout].filter((ms) => ms > 0);
  return limits.length === 0 ? 0 : Math.min(...limits);
}

/**
 * Ends the socket (a FIN after what is written) and destroys it `lingerMs`
 * after that is sent: time for the client to read the answer and close its
 * side, not to hold the connection open.
 */
function endAndLinger(s: Socket, lingerMs: number, text?: string): void {
  if (text === undefined) s.end();
  else s.end(text, 'latin1');
  s.once('finish', () => {
    const timer = setTimeout(() => s.destroy(), lingerMs);
    timer.unref();
    s.once('close', () => clearTimeout(timer));
  });
}

/** A connection past maxConnections: 503 at once, without reading a request. */
function refuse(socket: Socket): void {
  socket.on('error', onSocketError);
  socket.pause();
  endAndLinger(socket, REFUSED_LINGER_MS, `HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\nDate: ${httpNow()}\r\n\r\n`);
}

class Connection {
  /** Bytes received and not yet answered; the head being answered stays in front until it is. */
  private buf: Buffer = EMPTY;
  /** An allocation of ours that buf ends in, with room after it for the next chunks (see append). */
  private room: Buffer | null = null;
  /** How much of buf findHeadEnd has seen without finding the end of the head. */
  private scanned = 0;
  /** The head being received must be complete by then (armed when the front waits for the rest of a head). */
  private deadline: NodeJS.Timeout | null = null;
  /** An answer is being computed or streamed: requests behind it wait. */
  private busy = false;
  private ended = false;
  /** The client has closed its side: the requests buffered are the last. */
  private peerEnded = false;
  /** Armed when the socket went idle with an answer pending: cuts the connection if no byte moves meanwhile. */
  private stallTimer: NodeJS.Timeout | null = null;

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
    socket.once('close', this.clearDeadline);
    socket.once('close', () => this.stallTimer && clearTimeout(this.stallTimer));
    socket.once('end', this.onEnd);
  }

  get idle(): boolean {
    return !this.busy && this.buf.length === 0;
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.ended) return;
    this.append(chunk);
    if (!this.busy) this.next();
    else if (this.buf.length > IN_LIMIT) this.socket.pause();
  };

  /**
   * Adds a chunk to buf: in place when buf ends in an allocation of ours with
   * room left, else in a new one twice the size, so a head arriving in many
   * small chunks costs linear time (no concatenation of all on each).
   */
  private append(chunk: Buffer): void {
    const len = this.buf.length;
    if (len === 0) {
      this.buf = chunk;
      return;
    }
    const room = this.room;
    if (room !== null && this.buf.buffer === room.buffer) {
      const used = this.buf.byteOffset - room.byteOffset + len;
      if (used + chunk.length <= room.length) {
        chunk.copy(room, used);
        this.buf = room.subarray(used - len, used + chunk.length);
        return;
      }
    }
    const next = Buffer.allocUnsafeSlow(Math.max(2 * (len + chunk.length), 4096));
    this.buf.copy(next, 0);
    chunk.copy(next, len);
    this.room = next;
    this.buf = next.subarray(0, len + chunk.length);
  }

  /** The client closed its side (as node's server with httpAllowHalfOpen off: the connection ends after the requests received). */
  private readonly onEnd = (): void => {
    this.peerEnded = true;
    if (!this.busy) this.next();
  };

  /** The answer in progress is over: read again and go on with the requests buffered. */
  private readonly resume = (): void => {
    this.busy = false;
    if (this.ended || this.socket.destroyed) return;
    this.socket.resume();
    this.next();
  };

  private readonly onTimeout = (): void => {
    // An answer in progress, or still in the socket's buffer, is the client's
    // to read at its pace — as long as it reads: one that takes no byte for
    // sendMs more is cut (a client that never reads would hold its
    // connection, its buffers and a place under maxConnections for ever).
    // Any progress re-arms the socket's idle timer, which brings us back here
    // at the next stall. A head on its way has its own deadline.
    const s = this.socket;
    if (this.busy || s.writableLength > 0) {
      if (this.shared.sendMs <= 0 || this.stallTimer) return;
      const written = s.bytesWritten;
      this.stallTimer = setTimeout(() => {
        this.stallTimer = null;
        if (s.bytesWritten === written && (this.busy || s.writableLength > 0)) s.destroy();
      }, this.shared.sendMs);
      this.stallTimer.unref();
      return;
    }
    if (this.deadline !== null) return;
    s.destroy();
  };

  private armDeadline(): void {
    if (this.deadline !== null || this.shared.headersMs <= 0) return;
    this.deadline = setTimeout(this.onDeadline, this.shared.headersMs);
    this.deadline.unref();
  }

  private readonly clearDeadline = (): void => {
    if (this.deadline === null) return;
    clearTimeout(this.deadline);
    this.deadline = null;
  };

  /** The head did not arrive in time: 408, as node's server answers it, and close. */
  private readonly onDeadline = (): void => {
    this.deadline = null;
    // Waiting for the client to read earlier answers: it is timed again once they are out.
    if (this.busy || this.ended || this.socket.destroyed) return;
    this.ended = true;
    this.buf = EMPTY;
    this.room = null;
    endAndLinger(this.socket, this.shared.keepAliveMs, `HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\nDate: ${httpNow()}\r\n\r\n`);
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
      const end = findHeadEnd(this.buf, 0, this.scanned);
      if (end === -1) {
        // Wait for the rest of the head, until the deadline at most.
        this.scanned = this.buf.length;
        this.armDeadline();
        break;
      }
      this.clearDeadline();
      const head = end === -2 ? null : parseRequestHead(this.buf, 0, end);
      if (!head) return this.handOver();
      let result: ReturnType<Answerer>;
      try {
        result = this.shared.answer(head, this);
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
    if (this.peerEnded && !this.busy && !this.ended && !this.socket.destroyed) {
      // Nothing more will come: not a head left half-received either.
      this.ended = true;
      this.clearDeadline();
      endAndLinger(this.socket, this.shared.keepAliveMs);
    }
  }

  private consume(headEnd: number): void {
    const rest = headEnd + 4;
    this.scanned = 0;
    if (rest < this.buf.length) this.buf = this.buf.subarray(rest);
    else {
      this.buf = EMPTY;
      this.room = null; // an idle connection holds no buffer
    }
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
    if (this.ended) endAndLinger(s, this.shared.keepAliveMs);
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
        if (this.ended) endAndLinger(s, this.shared.keepAliveMs);
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
      if (this.ended) endAndLinger(s, this.shared.keepAliveMs);
      else this.resume();
    });
    stream.pipe(s, { end: false });
  }

  /**
   * Gives the connection, and every byte not answered yet, to node's HTTP
   * server. Its timeouts take over: the socket's own idle timeout is node's
   * (server.timeout, set by its connection listener), and node's
   * headersTimeout/requestTimeout do not depend on it (its connection list,
   * which the listener enters the socket in, checks them).
   */
  private handOver(): void {
    const s = this.socket;
    this.busy = false;
    this.ended = true;
    this.clearDeadline();
    s.off('data', this.onData);
    s.off('timeout', this.onTimeout);
    s.off('end', this.onEnd);
    s.setTimeout(0);
    s.pause();
    // A client that closed its side before an answerer declined (async)
    // cannot have its bytes put back: the stream has ended.
    if (s.readableEnded) s.destroy();
    else if (this.buf.length > 0) s.unshift(this.buf);
    this.buf = EMPTY;
    this.room = null;
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
