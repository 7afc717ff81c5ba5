import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Response } from 'superagent';
import request from 'supertest';
import { FsBackend } from '../../storage/backends/fs';
import { serialize } from '../../storage/gvariant';
import { sha256Hex } from '../../storage/objects/checksum';
import { ARCHIVE_EXTENSION } from '../../storage/objects/types';
import { objectName, walkCommitTree, type ObjectRef } from '../../storage/repo/closure';
import { RepoRegistry } from '../../storage/repo/registry';
import { Repo } from '../../storage/repo/repo';
import { createApp, type AppOptions, type CairnApp } from '../../server/app';
import { issueToken, type IssueOptions } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { ServerContext } from '../../server/context';
import { createLogger } from '../../server/logging';
import { FIXTURE_REPO, ROOT_DIRMETA, S1, S1_ROOT_DIRTREE } from '../helpers/fixtures';

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

/** What a test token says: repository `main` unless `repos` names others; it is valid for ten minutes. */
export type TokenRequest = Omit<IssueOptions, 'repos' | 'ttlSeconds'> & { repos?: string[] };

/** The publishing API's test bed: see publishingSetup. */
export interface PublishingSetup {
  data: TestData;
  ctx: ServerContext;
  app: CairnApp;
  /** Repository `main`, created (and so owned) by Cairn. */
  main: Repo;
  /** A token signed with the context's secret. */
  token(claims: TokenRequest): Promise<string>;
}

/**
 * A data folder (with the reference repository as `sample`) and repository
 * `main` created by Cairn in it, a server context without background delta
 * jobs, and an app on that context (`appOpts` added).
 */
export async function publishingSetup(appOpts: Partial<AppOptions> = {}): Promise<PublishingSetup> {
  const data = makeDataDir();
  const main = await data.registry.create('main');
  const ctx = await createServerContext(data.dataDir, data.registry, { deltas: false });
  const app = makeApp(data, { context: ctx, ...appOpts });
  const token = async (claims: TokenRequest) =>
    (await issueToken(ctx.auth.secret, { repos: ['main'], ttlSeconds: 600, ...claims })).token;
  return { data, ctx, app, main, token };
}

/** The reference repository, read in place. */
export const fixtureRepo = new Repo('fixture', new FsBackend(FIXTURE_REPO));

/** An object's bytes as the reference repository stores them. */
export function fixtureBytes(o: ObjectRef): Buffer {
  return readFileSync(path.join(FIXTURE_REPO, 'objects', o.checksum.slice(0, 2), `${o.checksum.slice(2)}.${ARCHIVE_EXTENSION[o.type]}`));
}

/** Every object of a reference commit's tree, commit included, as upload parts. */
export async function fixtureTree(commit: string): Promise<Array<[string, Buffer]>> {
  const walk = await walkCommitTree(fixtureRepo, commit);
  return walk.objects.map((o) => [objectName(o), fixtureBytes(o)]);
}

/** A commit of S1's tree without a ref binding (publishable under any ref), and its checksum. */
export function unboundCommit(subject: string): { checksum: string; bytes: Buffer } {
  const bytes = serialize('(a{sv}aya(say)sstayay)', [[], Buffer.alloc(0), [], subject, '', 0n, Buffer.from(S1_ROOT_DIRTREE, 'hex'), Buffer.from(ROOT_DIRMETA, 'hex')]);
  return { checksum: sha256Hex(bytes), bytes };
}

/** A multipart upload to repository `main`, one part per [name, bytes], each named like its file. */
export function upload(app: CairnApp, token: string, parts: Array<[string, Buffer]>): request.Test {
  let r = request(app).post('/api/repos/main/objects').set('Authorization', `Bearer ${token}`);
  for (const [name, bytes] of parts) r = r.attach(name, bytes, name);
  return r;
}

/**
 * Uploads S1's tree and a commit of it without a ref binding (publishable
 * under any ref) to repository `main`; answers that commit's checksum.
 */
export async function uploadUnboundCommit(app: CairnApp, token: string): Promise<string> {
  await upload(app, token, await fixtureTree(S1)).expect(200);
  const commit = unboundCommit('unbound');
  await upload(app, token, [[`${commit.checksum}.commit`, commit.bytes]]).expect(200);
  return commit.checksum;
}

/** A ref update of repository `main`. */
export function moveRefs(app: CairnApp, token: string, updates: unknown[]): request.Test {
  return request(app).post('/api/repos/main/refs').set('Authorization', `Bearer ${token}`).send({ updates });
}

/** Where `repo` keeps object `checksum.ext`. */
export function objectFile(repo: Repo, checksum: string, ext: string): string {
  return path.join(repo.backend.location, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.${ext}`);
}

/** The `cairn-*` temporary files in `repo`'s tmp/ (only those ending in `suffix`, if given). */
export function tempFiles(repo: Repo, suffix = ''): string[] {
  const tmp = path.join(repo.backend.location, 'tmp');
  return existsSync(tmp) ? readdirSync(tmp).filter((f) => f.startsWith('cairn-') && f.endsWith(suffix)) : [];
}

/** Nothing of a refused upload may remain: not the object, not a temp file. */
export function assertNoTrace(repo: Repo, checksum: string, ext: string): void {
  assert.equal(existsSync(objectFile(repo, checksum, ext)), false, `${checksum}.${ext} was stored`);
  assert.deepEqual(tempFiles(repo), [], 'temporary files left behind');
}
