import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RequestListener } from 'node:http';
import { installFront, type Front, type FrontOptions } from './http1/front';

export interface ListeningServer {
  server: Server;
  port: number;
  url: string;
  /** Stops accepting, lets in-flight responses finish (cut after `graceMs`). */
  close(graceMs?: number): Promise<void>;
}

export interface ListenOptions {
  port: number;
  host: string;
  /** The HTTP/1.1 front (server/http1/front.ts); without it node's server reads every connection. */
  front?: FrontOptions;
}

/** Starts an HTTP server for `app`; resolves once it listens (port 0 picks a free port). */
export function listen(app: RequestListener, opts: ListenOptions): Promise<ListeningServer> {
  const server = createServer(app);
  const front = opts.front ? installFront(server, opts.front) : undefined;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      const port = (server.address() as AddressInfo).port;
      const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
      const close = (graceMs = 5000) => closeGracefully(server, front, graceMs);
      resolve({
        server,
        port,
        url: `http://${host}:${port}`,
        close,
      });
    });
  });
}

/**
 * Stops accepting, closes idle connections (node's and the front's), lets
 * answers in progress finish and cuts what is left after `graceMs`.
 */
export function closeGracefully(server: Server, front: Front | undefined, graceMs: number): Promise<void> {
  return new Promise<void>((done) => {
    server.close(() => done());
    server.closeIdleConnections();
    front?.stop();
    setTimeout(() => {
      server.closeAllConnections();
      front?.closeAll();
    }, graceMs).unref();
  });
}
