// A real HTTP receiver for webhook tests (node's http server on 127.0.0.1): records every request
// with its body and headers, verifies X-Cairn-Signature against the secret, and answers as the
// test says (a status, or never: a hanging receiver).

import { createHmac, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  at: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: Record<string, any>;
  /** X-Cairn-Signature is the HMAC-SHA256 of the body with the receiver's secret. */
  signatureOk: boolean;
}

export interface Receiver {
  url: string;
  received: Received[];
  /** Resolves once `n` requests arrived (rejects after `ms`). */
  waitFor(n: number, ms?: number, what?: (r: Received) => boolean): Promise<Received[]>;
  close(): Promise<void>;
}

/** `answer(i)`: the status of the i-th request (0-based), or 'hang' to never answer. */
export async function startReceiver(secret: string, answer: (i: number, r: Received) => number | 'hang' = () => 200): Promise<Receiver> {
  const received: Received[] = [];
  const hanging = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
      const got = Buffer.from(String(req.headers['x-cairn-signature'] ?? ''));
      let json: Record<string, any> = {};
      try {
        json = JSON.parse(body) as Record<string, any>;
      } catch {
        /* recorded as it is */
      }
      const r: Received = { at: Date.now(), headers: req.headers, body, json, signatureOk: got.length === expected.length && timingSafeEqual(got, expected) };
      const i = received.length;
      received.push(r);
      const a = answer(i, r);
      if (a === 'hang') {
        hanging.add(res);
        return;
      }
      res.writeHead(a, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    async waitFor(n, ms = 30_000, what = () => true) {
      const until = Date.now() + ms;
      for (;;) {
        const got = received.filter(what);
        if (got.length >= n) return got;
        if (Date.now() > until) throw new Error(`waited ${ms} ms for ${n} webhook requests, got ${got.length}: ${JSON.stringify(received.map((r) => r.json.event))}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
