// A pass-through HTTP reverse proxy on loopback that records every request (method, path, status)
// before forwarding it unchanged to `target`. Used to count what the ostree client asks a server
// for when the server's own log does not say.

import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LoggedRequest } from './cairn-process';

export interface RecordingProxy {
  /** Base URL of the proxy: `http://127.0.0.1:PORT`, same paths as the target. */
  url: string;
  requests: LoggedRequest[];
  close(): Promise<void>;
}

export async function startRecordingProxy(target: string): Promise<RecordingProxy> {
  const t = new URL(target);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const requests: LoggedRequest[] = [];
  const server = http.createServer((req, res) => {
    const headers = { ...req.headers, host: t.host };
    const up = http.request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers, agent },
      (ur) => {
        const q = (req.url ?? '').indexOf('?');
        requests.push({
          method: req.method ?? 'GET',
          path: q >= 0 ? req.url!.slice(0, q) : req.url!,
          status: ur.statusCode ?? 0,
        });
        res.writeHead(ur.statusCode ?? 502, ur.rawHeaders);
        ur.pipe(res);
      },
    );
    up.on('error', (err) => {
      requests.push({ method: req.method ?? 'GET', path: req.url ?? '', status: 502 });
      res.writeHead(502).end(String(err));
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
