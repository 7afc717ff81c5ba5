// Reads redirected to presigned URLs (issue #13, `cairn serve --s3-redirect`, server/files/redirect.ts)
// against a real Ceph RGW:
// - in process, through both transports (the HTTP/1.1 front and node's server): a GET of an object,
//   a delta superblock or part answers 307 to a presigned URL that the store serves; summary,
//   summary.sig, config and refs are always Cairn's own 200; HEAD and validators are answered by
//   Cairn; a missing object is Cairn's 404, never a redirect; a private repository without a token
//   (or with a token for another repository) is the 404 of a missing one, never a redirect; the redirects are counted;
//   an operator-given public endpoint is the host of the URLs;
// - end to end: the stock client pulls (verifying commit and summary signatures) through
//   `cairn serve --storage s3://… --s3-redirect --s3-public-endpoint URL`, where URL is a counting
//   proxy in front of the RGW: the objects and, on the second pull, the delta's superblock and parts
//   come from the store through the proxy (libcurl followed the redirects), not from Cairn.

import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { createApp } from '../../server/app';
import { issueToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { ServerContext } from '../../server/context';
import { listen, type ListeningServer } from '../../server/listen';
import { createLogger } from '../../server/logging';
import { createMetrics } from '../../server/metrics';
import { S3Backend } from '../../storage/backends/s3';
import { s3RedirectOption } from '../../cli/commands/serve';
import { RepoRegistry } from '../../storage/repo/registry';
import { jobsSettled, startCairn, type CairnProcess } from '../helpers/cairn-process';
import { exchange, requestText, type ParsedResponse } from '../helpers/raw-http';
import { addRemote, commitTree, initRepo, makeSourceTree, makeTempDir, ostree, removeTempDirs } from '../helpers/ostree';
import { cli, saveGpgKey } from '../e2e/publish-helpers';
import { emptyPrefix, freshPrefix, s3ClientEnv, s3TestStore, type S3TestStore } from './ceph';

const SECRET = 'cairn-s3-presign-token-secret-0123456789abcdef';
const OBJECT = 'objects/3f/d0406929e83910fc100bb8ea1da75799549be4e5d2cf3ffbd292054da936a3.commit';
const FILEZ = 'objects/aa/bbccddeeff00112233445566778899aabbccddeeff00112233445566778899.filez';
const MISSING = 'objects/00/00000000000000000000000000000000000000000000000000000000000000.dirtree';
const SUPERBLOCK = 'deltas/Ab/CdEfGhIjKlMnOpQrStUvWxYz0123456789+_abcdefgh-ZyXwVuTsRqPoNmLkJiHgFeDcBa98765432_+zyxwvut/superblock';
const PART = SUPERBLOCK.replace(/superblock$/, '0');

let store: S3TestStore;
let prefix: string;
let location: string;
let ctx: ServerContext;
let work: string;
const bytes = new Map<string, Buffer>();
const servers: { name: string; server: ListeningServer }[] = [];
let metricsText: () => Promise<string>;
let publicServer: ListeningServer | undefined;
let proxy: CountingProxy | undefined;
let cairn: CairnProcess | undefined;

before(async () => {
  store = await s3TestStore();
  prefix = freshPrefix('presign');
  location = `s3://${store.bucket}/${prefix.replace(/\/$/, '')}`;
  work = await makeTempDir('cairn-presign-');
  // The factory reads the store's endpoint and credentials from the environment, as `cairn serve` does.
  Object.assign(process.env, s3Env());
  const registry = new RepoRegistry(location);
  await registry.create('pub');
  await registry.create('priv');
  const b = new S3Backend(store.client, store.bucket, prefix);
  for (const repo of ['pub', 'priv']) {
    for (const [key, size] of [[OBJECT, 300], [FILEZ, 70_000], [SUPERBLOCK, 500], [PART, 40_000], ['summary', 200], ['summary.sig', 100], ['refs/heads/os/x', 65], ['delta-indexes/ab/cd.index', 50]] as const) {
      const data = Buffer.alloc(size, `${repo}:${key}`);
      bytes.set(`${repo}/${key}`, data);
      await b.write(`repos/${repo}/${key}`, data);
    }
  }
  ctx = await createServerContext(location, registry, { signing: false, deltas: false });
  await ctx.settings.update('priv', { private: true });
  const metrics = createMetrics({ defaultMetrics: false });
  metricsText = () => metrics.registry.metrics();
  const logger = createLogger({ level: 'silent' });
  const withFront = createApp({ registry, context: ctx, logger, metrics, s3Redirect: { expiresSec: 120 } });
  servers.push({ name: 'front', server: await listen(withFront, { port: 0, host: '127.0.0.1', front: withFront.locals.cairn.front }) });
  servers.push({ name: 'node', server: await listen(createApp({ registry, context: ctx, logger, metrics, s3Redirect: { expiresSec: 120 } }), { port: 0, host: '127.0.0.1' }) });
  const endpoint = new URL(store.settings.endpoint!);
  // The same store under another name clients might use (localhost for 127.0.0.1): the URLs must name it.
  const publicApp = createApp({ registry, context: ctx, logger, metrics: false, s3Redirect: { publicEndpoint: `http://localhost:${endpoint.port}` } });
  publicServer = await listen(publicApp, { port: 0, host: '127.0.0.1', front: publicApp.locals.cairn.front });
});

after(async () => {
  await cairn?.stop();
  for (const s of servers) await s.server.close(100);
  await publicServer?.close(100);
  await proxy?.close();
  await emptyPrefix(store, prefix).catch(() => undefined);
  await removeTempDirs();
});

function s3Env(): NodeJS.ProcessEnv {
  return {
    ...s3ClientEnv(store),
    CAIRN_TOKEN_SECRET: SECRET,
  };
}

async function get(port: number, target: string, headers: string[] = [], method = 'GET'): Promise<ParsedResponse> {
  return (await exchange(port, [requestText(target, headers, method)], { expect: 1, heads: [method === 'HEAD'] })).responses[0]!;
}

/** The same request through both transports: the same status, Location presence and body. */
async function both(target: string, headers: string[] = [], method = 'GET'): Promise<ParsedResponse> {
  const [a, b] = [await get(servers[0]!.server.port, target, headers, method), await get(servers[1]!.server.port, target, headers, method)];
  assert.equal(a.status, b.status, `${target}: front ${a.status}, node ${b.status}`);
  assert.equal(a.headers.location === undefined, b.headers.location === undefined, `${target}: Location on one transport only`);
  assert.ok(a.body.equals(b.body), `${target}: bodies differ`);
  return a;
}

/** A redirect to a presigned URL of the store that serves exactly the file's bytes. */
async function assertRedirected(r: ParsedResponse, what: string, origin = store.settings.endpoint!): Promise<void> {
  assert.equal(r.status, 307, `${what}: redirected`);
  assert.equal(r.body.length, 0);
  assert.equal(r.headers['cache-control'], 'no-store', `${what}: the presigned URL is never stored by a cache`);
  const url = new URL(String(r.headers.location));
  assert.equal(url.origin, new URL(origin).origin, `${what}: on the store's endpoint`);
  assert.equal(url.searchParams.get('X-Amz-Algorithm'), 'AWS4-HMAC-SHA256');
  const [repo, ...key] = what.split('/');
  const res = await fetch(url);
  assert.equal(res.status, 200, `${what}: the store serves the presigned URL`);
  assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes.get(`${repo}/${key.join('/')}`)!), `${what}: the file's bytes`);
}

test('GETs of objects and delta files redirect to presigned URLs; summary, signature, config, refs and delta indexes are always served by Cairn', async () => {
  for (const key of [OBJECT, FILEZ, SUPERBLOCK, PART]) {
    const r = await both(`/repo/pub/${key}`);
    await assertRedirected(r, `pub/${key}`);
    assert.equal(new URL(String(r.headers.location)).searchParams.get('X-Amz-Expires'), '120', 'the configured expiry');
  }
  for (const key of ['summary', 'summary.sig', 'refs/heads/os/x', 'delta-indexes/ab/cd.index']) {
    const r = await both(`/repo/pub/${key}`);
    assert.equal(r.status, 200, key);
    assert.equal(r.headers.location, undefined, `${key}: never redirected`);
    assert.ok(r.body.equals(bytes.get(`pub/${key}`)!), `${key}: Cairn's own bytes`);
  }
  const config = await both('/repo/pub/config');
  assert.equal(config.status, 200);
  assert.equal(config.headers.location, undefined, 'config: never redirected');
  assert.match(config.body.toString(), /mode=archive/);
  // A range of an object: the store honours it behind the redirect.
  const ranged = await both(`/repo/pub/${FILEZ}`, ['Range: bytes=10-19']);
  assert.equal(ranged.status, 307);
  const part = await fetch(String(ranged.headers.location), { headers: { range: 'bytes=10-19' } });
  assert.equal(part.status, 206);
  assert.ok(Buffer.from(await part.arrayBuffer()).equals(bytes.get(`pub/${FILEZ}`)!.subarray(10, 20)));
});

test('HEAD and validators are answered by Cairn; a missing object is 404, never a redirect', async () => {
  const head = await both(`/repo/pub/${OBJECT}`, [], 'HEAD');
  assert.equal(head.status, 200);
  assert.equal(head.headers.location, undefined);
  assert.equal(head.headers['content-length'], '300');
  const etag = String(head.headers.etag);
  const cached = await both(`/repo/pub/${OBJECT}`, [`If-None-Match: ${etag}`]);
  assert.equal(cached.status, 304, 'a client holding the object gets Cairn\'s 304 (the store\'s ETag is not Cairn\'s)');
  for (const key of [MISSING, SUPERBLOCK.replace('/Ab/', '/Zz/')]) {
    const r = await both(`/repo/pub/${key}`);
    assert.equal(r.status, 404, `${key}: absent`);
    assert.equal(r.headers.location, undefined, `${key}: no redirect to the store's error`);
    assert.equal(r.body.length, 0, 'an empty body, as every 404 of a file');
  }
  assert.equal((await both(`/repo/nope/${OBJECT}`)).status, 404, 'no such repository');
});

test('a private repository: 404 without a token and with another repository\'s, never a redirect; a read token gets the redirect', async () => {
  for (const key of [OBJECT, SUPERBLOCK, 'summary']) {
    const r = await both(`/repo/priv/${key}`);
    assert.equal(r.status, 404, `${key}: without a token, as a repository that does not exist`);
    assert.equal(r.headers.location, undefined, `${key}: no URL handed out before the token check`);
  }
  const other = (await issueToken(ctx.auth!.secret, { sub: 'reader', scope: ['read'], repos: ['pub'], ttlSeconds: 600 })).token;
  const wrong = await both(`/repo/priv/${OBJECT}`, [`Authorization: Basic ${Buffer.from(`x:${other}`).toString('base64')}`]);
  assert.equal(wrong.status, 404);
  assert.equal(wrong.headers.location, undefined);
  const token = (await issueToken(ctx.auth!.secret, { sub: 'reader', scope: ['read'], repos: ['priv'], ttlSeconds: 600 })).token;
  const auth = [`Authorization: Basic ${Buffer.from(`x:${token}`).toString('base64')}`];
  await assertRedirected(await both(`/repo/priv/${OBJECT}`, auth), `priv/${OBJECT}`);
  assert.equal((await both(`/repo/priv/${MISSING}`, auth)).status, 404);
  const summary = await both('/repo/priv/summary', auth);
  assert.equal(summary.status, 200);
  assert.equal(summary.headers.location, undefined);
});

test('redirects are counted on /metrics, and an operator-given public endpoint names the URLs\' host', async () => {
  const count = async () => Number(/^cairn_s3_redirects_total (\d+)/m.exec(await metricsText())?.[1] ?? NaN);
  const before = await count();
  assert.ok(before > 0, 'the redirects so far were counted');
  await both(`/repo/pub/${OBJECT}`);
  assert.equal(await count(), before + 2, 'one per redirect (both transports)');
  await both(`/repo/pub/summary`);
  await both(`/repo/pub/${MISSING}`);
  assert.equal(await count(), before + 2, 'not for files Cairn serves, nor for 404s');
  // A URL is handed out again for a while (at most half its expiry): the same Location, no new HEAD or signature.
  const [first, again] = [await get(servers[0]!.server.port, `/repo/pub/${FILEZ}`), await get(servers[0]!.server.port, `/repo/pub/${FILEZ}`)];
  assert.equal(again.headers.location, first.headers.location);
  const endpoint = new URL(store.settings.endpoint!);
  const r = await get(publicServer!.port, `/repo/pub/${OBJECT}`);
  await assertRedirected(r, `pub/${OBJECT}`, `http://localhost:${endpoint.port}`);
  assert.equal(new URL(String(r.headers.location)).searchParams.get('X-Amz-Expires'), '300', 'the default expiry, 5 min');
});

test('--s3-redirect options are validated: only with an S3 store, an expiry of 1 s to 7 days, an http(s) origin', () => {
  const s3 = 's3://bucket/prefix';
  assert.equal(s3RedirectOption({}, {}, s3), undefined, 'off by default');
  assert.deepEqual(s3RedirectOption({ 's3-redirect': true }, {}, s3), { expiresSec: undefined, publicEndpoint: undefined });
  assert.deepEqual(s3RedirectOption({}, { CAIRN_S3_REDIRECT: '1', CAIRN_S3_REDIRECT_EXPIRES: '60', CAIRN_S3_PUBLIC_ENDPOINT: 'https://s3.example.com/' }, s3), { expiresSec: 60, publicEndpoint: 'https://s3.example.com' });
  assert.deepEqual(s3RedirectOption({ 's3-redirect': true, 's3-public-endpoint': 'http://10.0.0.5:7480' }, {}, s3), { expiresSec: undefined, publicEndpoint: 'http://10.0.0.5:7480' });
  const refused: Array<[Parameters<typeof s3RedirectOption>[0], string, RegExp]> = [
    [{ 's3-redirect': true }, '/srv/cairn', /needs --storage s3:\/\//],
    [{ 's3-public-endpoint': 'https://s3.example.com' }, s3, /go with --s3-redirect/],
    [{ 's3-redirect': true, 's3-redirect-expires': '0' }, s3, /1-604800/],
    [{ 's3-redirect': true, 's3-redirect-expires': '604801' }, s3, /1-604800/],
    [{ 's3-redirect': true, 's3-redirect-expires': '5m' }, s3, /1-604800/],
    [{ 's3-redirect': true, 's3-public-endpoint': 'ftp://s3.example.com' }, s3, /http:\/\/ or https:\/\//],
    [{ 's3-redirect': true, 's3-public-endpoint': 'https://s3.example.com/bucket' }, s3, /origin only/],
    [{ 's3-redirect': true, 's3-public-endpoint': 'https://user:pw@s3.example.com' }, s3, /origin only/],
    [{ 's3-redirect': true, 's3-public-endpoint': 'not a url' }, s3, /not a URL/],
  ];
  for (const [values, location, message] of refused) assert.throws(() => s3RedirectOption(values, {}, location), message, JSON.stringify(values));
});

/** A reverse proxy to the store that records every request it passes on (the "public endpoint" of the store). */
interface CountingProxy {
  origin: string;
  seen: Array<{ method: string; path: string; status: number }>;
  close(): Promise<void>;
}

async function countingProxy(target: string): Promise<CountingProxy> {
  const t = new URL(target);
  const seen: CountingProxy['seen'] = [];
  const server = http.createServer((req, res) => {
    // The Host header is passed on as received: the URL was signed for this host.
    const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      seen.push({ method: req.method!, path: decodeURIComponent(req.url!.split('?')[0]!), status: r.statusCode! });
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

test('the stock client pulls through cairn serve --s3-redirect: objects and delta parts come from the store, signatures verified', { timeout: 600_000 }, async () => {
  proxy = await countingProxy(store.settings.endpoint!);
  const ePrefix = freshPrefix('presign-e2e');
  const eLocation = `s3://${store.bucket}/${ePrefix.replace(/\/$/, '')}`;
  try {
    cairn = await startCairn({ dataDir: path.join(work, 'scratch'), extraArgs: ['--storage', eLocation, '--s3-redirect', '--s3-public-endpoint', proxy.origin], env: s3Env() });
    const REF = 'os/presign';
    const local = await initRepo(path.join(work, 'local'), 'archive');
    const t = await cli(['token', '--scope', 'push', '--repo', 'main', '--prefix', 'os/', '--ttl', '1h', '--sub', 'e2e'], { CAIRN_TOKEN_SECRET: SECRET });
    assert.equal(t.code, 0, t.stderr);
    const commits: string[] = [];
    const push = async (i: number) => {
      const tree = await makeSourceTree(path.join(work, `tree-${i}`), { seed: 90 + i, bigFileBytes: 300_000 });
      commits.push(await commitTree(local, { branch: REF, tree, subject: `v${i}`, timestamp: 1_709_251_200 + i }));
      const r = await cli(['push', '--url', `${cairn!.url}/repo/main`, '--token', t.stdout.trim(), '--repo', local, REF]);
      assert.equal(r.code, 0, r.stderr);
      await jobsSettled(cairn!.url);
    };
    await push(0);
    const gpgAsc = await saveGpgKey(cairn.url, path.join(work, 'gpg.asc'));
    // A bare-user client: libostree uses static deltas only there (an archive repository refuses them).
    const client = await initRepo(path.join(work, 'client'), 'bare-user');
    await addRemote(client, 'cairn', `${cairn.url}/repo/main`, { gpgImport: gpgAsc, set: { 'gpg-verify': 'true', 'gpg-verify-summary': 'true' } });
    await ostree(['pull', '--disable-static-deltas', 'cairn', REF], { repo: client });
    await ostree(['fsck'], { repo: client });
    assert.equal((await ostree(['rev-parse', `cairn:${REF}`], { repo: client })).trim(), commits[0]);

    const fromStore = (re: RegExp) => proxy!.seen.filter((s) => s.method === 'GET' && s.status === 200 && re.test(s.path));
    const objects = fromStore(/\/repos\/main\/objects\/[0-9a-f]{2}\/[0-9a-f]{62}\.(commit|dirtree|dirmeta|filez)$/);
    assert.ok(objects.some((s) => s.path.endsWith('.filez')) && objects.some((s) => s.path.endsWith('.dirtree')), `the client fetched the objects from the store: ${JSON.stringify(proxy.seen.slice(0, 5))}`);
    const served = cairn.requests().filter((r) => r.method === 'GET' && /\/objects\/.*\.(commit|dirtree|dirmeta|filez)$/.test(r.path));
    assert.ok(served.length > 0 && served.every((r) => r.status === 307), `Cairn answered every object GET with a redirect: ${JSON.stringify(served.filter((r) => r.status !== 307).slice(0, 5))}`);
    assert.ok(objects.length >= served.length, `every redirect followed (${objects.length} fetched from the store, ${served.length} redirects)`);
    for (const file of ['summary', 'summary.sig', 'config']) {
      assert.ok(cairn.requests().some((r) => r.method === 'GET' && r.path === `/repo/main/${file}` && r.status === 200), `${file}: served by Cairn`);
      assert.ok(!proxy.seen.some((s) => s.path.endsWith(`/repos/main/${file}`)), `${file}: never fetched from the store`);
    }
    const metrics = await (await fetch(`${cairn.url}/metrics`)).text();
    assert.ok(Number(/^cairn_s3_redirects_total (\d+)/m.exec(metrics)?.[1]) >= served.length, 'the redirects are counted');

    // A second commit: the policy builds the delta from the first; the client pulls through it.
    await push(1);
    proxy.seen.length = 0;
    const pulled = await ostree(['pull', 'cairn', REF], { repo: client });
    await ostree(['fsck'], { repo: client });
    assert.equal((await ostree(['rev-parse', `cairn:${REF}`], { repo: client })).trim(), commits[1]);
    const superblocks = fromStore(/\/repos\/main\/deltas\/.*\/superblock$/);
    const parts = fromStore(/\/repos\/main\/deltas\/.*\/\d+$/);
    assert.equal(superblocks.length, 1, `the delta's superblock from the store (${pulled.trim()}): ${JSON.stringify(proxy.seen.map((s) => `${s.path.replace(/^.*\/repos\/main\//, '')} ${s.status}`))}`);
    assert.ok(cairn.requests().some((r) => /\/repo\/main\/deltas\/.*\/superblock$/.test(r.path) && r.status === 307), 'Cairn redirected the superblock');
    // Cairn puts a delta's parts inline in its superblock while it stays within the client's limit (storage/deltas/placement.ts): any part files are redirected too.
    const partRequests = cairn.requests().filter((r) => r.method === 'GET' && /\/repo\/main\/deltas\/.*\/\d+$/.test(r.path));
    assert.ok(partRequests.every((r) => r.status === 307), 'every part redirected');
    assert.equal(parts.length, partRequests.length, 'every part from the store');
    // (A delta may name some objects as fallbacks, fetched as loose objects: those went to the store too.)
    const looseAgain = cairn.requests().filter((r) => r.method === 'GET' && /\/objects\/.*\.filez$/.test(r.path));
    assert.ok(looseAgain.every((r) => r.status === 307), 'every loose object redirected');
    // Update traffic counts the redirected files as served (their sizes), not as failed 307s.
    type Traffic = { updates: Array<{ via: string; from: string | null; to: string; count: number; bytes: number }>; objects: { count: number; bytes: number } };
    const complete = (x: Traffic) => x.updates.length >= 2 && x.objects.count > 10;
    let traffic: Traffic = { updates: [], objects: { count: 0, bytes: 0 } };
    for (let i = 0; i < 50 && !complete(traffic); i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      traffic = (await (await fetch(`${cairn.url}/api/repos/main/traffic?ref=${encodeURIComponent(REF)}`)).json()) as Traffic;
    }
    const via = (v: string) => traffic.updates.filter((u) => u.via === v).map((u) => [u.from, u.to, u.count]);
    assert.deepEqual(via('objects'), [[null, commits[0], 1]], JSON.stringify(traffic));
    assert.deepEqual(via('delta'), [[commits[0], commits[1], 1]], JSON.stringify(traffic));
    assert.ok(traffic.updates.every((u) => u.bytes > 0) && traffic.objects.bytes > 300_000, `bytes counted: ${JSON.stringify(traffic)}`);

    // The repository made private: a client with a read token in its URL (HTTP Basic) pulls through the
    // redirects (libcurl does not send the credentials on to the store's host, which would refuse a
    // second kind of authentication); without a token it gets 404 and no URL.
    const admin = await cli(['token', '--scope', 'admin', '--repo', 'main', '--ttl', '1h', '--sub', 'e2e'], { CAIRN_TOKEN_SECRET: SECRET });
    const patched = await fetch(`${cairn.url}/api/repos/main/settings`, { method: 'PATCH', headers: { 'content-type': 'application/json', authorization: `Bearer ${admin.stdout.trim()}` }, body: JSON.stringify({ private: true }) });
    assert.equal(patched.status, 200, await patched.text());
    // On S3 a process reads settings again at most every REMOTE_TTL_MS (1 s; storage/repo/settings.ts).
    const commitUrl = `${cairn.url}/repo/main/objects/${commits[1]!.slice(0, 2)}/${commits[1]!.slice(2)}.commit`;
    let anonymous = await fetch(commitUrl, { redirect: 'manual' });
    for (let i = 0; i < 50 && anonymous.status !== 404; i++) {
      await new Promise((r) => setTimeout(r, 200));
      anonymous = await fetch(commitUrl, { redirect: 'manual' });
    }
    assert.equal(anonymous.status, 404);
    assert.equal(anonymous.headers.get('location'), null);
    const read = await cli(['token', '--scope', 'read', '--repo', 'main', '--ttl', '1h', '--sub', 'e2e'], { CAIRN_TOKEN_SECRET: SECRET });
    const privateClient = await initRepo(path.join(work, 'private-client'), 'bare-user');
    const url = new URL(`${cairn.url}/repo/main`);
    url.username = 'x';
    url.password = read.stdout.trim();
    await addRemote(privateClient, 'cairn', url.toString(), { gpgImport: gpgAsc, set: { 'gpg-verify': 'true', 'gpg-verify-summary': 'true' } });
    proxy.seen.length = 0;
    await ostree(['pull', '--disable-static-deltas', 'cairn', REF], { repo: privateClient });
    await ostree(['fsck'], { repo: privateClient });
    assert.equal((await ostree(['rev-parse', `cairn:${REF}`], { repo: privateClient })).trim(), commits[1]);
    assert.ok(fromStore(/\.filez$/).length > 0, 'the private repository\'s objects came from the store');
  } finally {
    await cairn?.stop();
    cairn = undefined;
    await emptyPrefix(store, ePrefix).catch(() => undefined);
  }
});
