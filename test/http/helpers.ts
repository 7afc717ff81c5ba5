import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Response } from 'superagent';
import { RepoRegistry } from '../../storage/repo/registry';
import { createApp, type AppOptions, type CairnApp } from '../../server/app';
import { createLogger } from '../../server/logging';
import { FIXTURE_REPO } from '../helpers/fixtures';

/** A temporary data folder holding the reference repository as DATA/repos/sample. */
export interface TestData {
  dataDir: string;
  repoDir: string;
  registry: RepoRegistry;
  cleanup(): void;
}

export function makeDataDir(): TestData {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'cairn-http-'));
  const repoDir = path.join(dataDir, 'repos', 'sample');
  cpSync(FIXTURE_REPO, repoDir, { recursive: true, preserveTimestamps: true });
  return { dataDir, repoDir, registry: new RepoRegistry(dataDir), cleanup: () => rmSync(dataDir, { recursive: true, force: true }) };
}

export function makeApp(data: TestData, opts: Partial<AppOptions> = {}): CairnApp {
  return createApp({ registry: data.registry, logger: createLogger({ level: 'silent' }), ...opts });
}

/** supertest parser that keeps bodies as exact bytes whatever the content type. */
export function binary(res: Response, cb: (err: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => cb(null, Buffer.concat(chunks)));
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * A request whose path goes on the wire exactly as given (superagent and
 * URL parsers would normalise `..` and friends away).
 */
export function rawRequest(port: number, rawPath: string, opts: { method?: string; headers?: OutgoingHttpHeaders } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: rawPath, method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Listens on a free loopback port. */
export async function listenApp(app: CairnApp): Promise<{ port: number; close(): Promise<void> }> {
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
