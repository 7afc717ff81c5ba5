// The hostile input catalogue (issue #11, "Harnesses that must exist"): one table of requests sent
// to a real `cairn serve`, each with the 4xx status and error code it must answer, and after each
// the data folder must be exactly as before (every file's size, time and bytes: refs, summary,
// signatures, objects, ref log, settings, keys), with no temporary file left in the repository.
//
// Much of the table is generated from the route table (server/api/routes.ts ROUTES), so a new route
// is covered without touching this file: every path parameter of every route filled with
// traversals, NUL and over-long values; every route without credentials, with an expired, forged,
// unsigned or garbage token, with a token of the wrong scope or repository; every JSON body route
// with invalid JSON, wrong shapes and an oversized body. The rest are the object and ref cases:
// malformed GVariant, wrong checksums, truncated, trailing-junk and oversized bodies, decompression
// bombs (a .filez of ~4 MB inflating to 4 GiB, PUT and multipart), the 10 MiB commitmeta of ten
// million booleans (test/http/hardening-gvariant), malformed multipart (hardening-multipart),
// invalid ref names, clashing refs (hardening-refs), unrevocable token ids (hardening-tokens),
// missing objects, lost compare-and-swaps, and traversal in the repository file routes.
//
// Run: npx tsc -p . && node --test dist/test/harness/hostile-catalogue.test.js

import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import { connect } from 'node:net';
import * as path from 'node:path';
import { constants as zc, createDeflateRaw, deflateRawSync } from 'node:zlib';
import { after, before, test } from 'node:test';
import { SignJWT, UnsecuredJWT } from 'jose';
import { ROUTES } from '../../server/api/routes';
import { serialize } from '../../storage/gvariant';
import { sha256Hex } from '../../storage/objects/checksum';
import { contentChecksumOf, encodeArchiveHeader } from '../../storage/objects/content';
import { startCairn, type CairnProcess } from '../helpers/cairn-process';
import { commitTree, initRepo, makeSourceTree, makeTempDir, removeTempDirs } from '../helpers/ostree';
import { cliOk, raw, SECRET, SERVER_ENV, snapshot, snapshotDiff, token, type RawAnswer } from './helpers';

interface Case {
  name: string;
  method: string;
  path: string;
  headers?: Record<string, string | number>;
  body?: Buffer | string | (() => AsyncIterable<Buffer> | Iterable<Buffer>);
  /** The status it must answer (one of these). */
  status: number | number[];
  /** The JSON error code (one of these); null: a repository file answer (empty body, reason in X-Cairn-Error). */
  code: string | string[] | null;
  /** The client goes away after sending this many bytes of the body (no answer expected; nothing may stay behind). */
  abortAfter?: number;
}

let work: string;
let data: string;
let cairn: CairnProcess;
let head: string;
const REF = 'os/catalogue';
const tokens: Record<string, string> = {};

before(async () => {
  work = await makeTempDir('cairn-hostile-');
  data = path.join(work, 'data');
  await cliOk(['init-repo', 'main', '--data', data]);
  await cliOk(['init-repo', 'other', '--data', data]);
  const local = await initRepo(path.join(work, 'local'), 'archive');
  const tree = await makeSourceTree(path.join(work, 'tree'), { seed: 11, bigFileBytes: 10_000 });
  head = await commitTree(local, { branch: REF, tree, subject: 'catalogue', timestamp: 1_709_251_200 });
  cairn = await startCairn({ dataDir: data, env: SERVER_ENV });
  tokens.admin = await token(['read', 'push', 'admin'], { repos: ['main', 'other'] });
  tokens.push = await token(['push'], { prefixes: ['os/'] });
  tokens.read = await token(['read']);
  tokens.otherRepo = await token(['read', 'push', 'admin'], { repos: ['other'] });
  tokens.globalAdmin = await token(['read', 'push', 'admin'], { repos: ['*'] });
  const secret = new TextEncoder().encode(SECRET);
  const claims = { scope: ['read', 'push', 'admin'], repos: ['*'], prefixes: ['*'] };
  tokens.expired = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuer('cairn').setSubject('x').setJti('expired1').setIssuedAt(1_600_000_000).setExpirationTime(1_600_000_600).sign(secret);
  tokens.forged = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuer('cairn').setSubject('x').setJti('forged1').setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode('another-secret-0123456789abcdef-0123456789'));
  tokens.unsigned = new UnsecuredJWT(claims).setIssuer('cairn').setSubject('x').setJti('none1').setIssuedAt().setExpirationTime('1h').encode();
  tokens.wrongIssuer = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuer('evil').setSubject('x').setJti('iss1').setIssuedAt().setExpirationTime('1h').sign(secret);
  tokens.badJti = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuer('cairn').setSubject('x').setJti('../../etc/passwd').setIssuedAt().setExpirationTime('1h').sign(secret);
  tokens.garbage = 'not.a.token';
  const push = await cliOk(['push', '--url', `${cairn.url}/repo/main`, '--token', tokens.push, '--repo', local, REF]);
  assert.match(push.stdout + push.stderr, /./);
  // Let the delta jobs of that push finish: from here on nothing may change.
  for (let i = 0; i < 600; i++) {
    const q = (await (await fetch(`${cairn.url}/api/jobs`)).json()) as { queue: { queued: number; running: number; deciding: number } };
    if (q.queue.queued + q.queue.running + q.queue.deciding === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 500));
  const lone = await fetch(`${cairn.url}/api/repos/main/objects/${sha256Hex(LONE_COMMIT)}.commit`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', ...bearer(tokens.push!) }, body: new Uint8Array(LONE_COMMIT) });
  assert.equal(lone.status, 201, await lone.text());
  // A private repository: every read route must then check the credentials it is given.
  const priv = await fetch(`${cairn.url}/api/repos/main/settings`, { method: 'PATCH', headers: { ...json, ...bearer(tokens.admin!) }, body: JSON.stringify({ private: true }) });
  assert.equal(priv.status, 200, await priv.text());
});

after(async () => {
  await cairn?.stop();
  await removeTempDirs();
});

const json = { 'content-type': 'application/json' };

/** A commit object (of a tree that is not there): uploadable alone, never published. */
function commitOf(subject: string): Buffer {
  return serialize('(a{sv}aya(say)sstayay)', [[], Buffer.alloc(0), [], subject, '', 0n, Buffer.alloc(32, 1), Buffer.alloc(32, 2)]);
}
/** Uploaded before the catalogue runs, without a commitmeta: the target of the commitmeta cases. */
const LONE_COMMIT = commitOf('uploaded, never published');
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

/** Path-parameter values no route may take as a name of anything. */
const HOSTILE_PARAMS: Array<[string, string]> = [
  ['encoded traversal', '..%2F..%2Fsecrets%2Ftoken-secret'],
  ['dot-dot', '..'],
  ['encoded dot-dot', '%2e%2e'],
  ['double-encoded traversal', '%252e%252e%252fsecrets'],
  ['backslash traversal', '..%5C..%5Csecrets'],
  ['NUL', '%00'],
  ['NUL inside', 'main%00.commit'],
  ['invalid UTF-8', '%ff%fe'],
  ['very long', 'a'.repeat(4000)],
];

/** A valid value of each path parameter (the others are varied one at a time). */
function validParam(name: string): string {
  if (name === 'repo') return 'main';
  if (name === 'name') return `${head}.commit`;
  if (name === 'commit') return head;
  if (name === 'id') return '1';
  return 'x';
}

/** The route's path with its parameters filled, and a valid value of each required query member. */
function fill(r: (typeof ROUTES)[number], values: Record<string, string>): string {
  const p = r.path.replace(/:([A-Za-z_]+)/g, (_, name: string) => values[name] ?? validParam(name));
  const q = r.query as { required?: string[]; properties?: Record<string, { type?: string }> } | undefined;
  const query = (q?.required ?? []).map((k) => {
    const v = k === 'ref' ? REF : k === 'from' || k === 'to' || k === 'commit' ? head : k === 'path' ? '/' : q?.properties?.[k]?.type === 'integer' ? '1' : 'x';
    return `${k}=${encodeURIComponent(v)}`;
  });
  return query.length ? `${p}?${query.join('&')}` : p;
}

function paramsOf(routePath: string): string[] {
  return [...routePath.matchAll(/:([A-Za-z_]+)/g)].map((m) => m[1]!);
}

/** A syntactically plausible body for a route (so that only the thing under test is wrong). */
function bodyFor(r: (typeof ROUTES)[number]): Pick<Case, 'headers' | 'body'> {
  if (!r.body) return {};
  if ('json' in r.body) return { headers: json, body: '{}' };
  return { headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(0) };
}

/** Express's size units as bytes. */
function limitBytes(limit: string): number {
  const m = /^(\d+)(kb|mb)$/i.exec(limit);
  assert.ok(m, `limit ${limit}`);
  return Number(m[1]) * (m[2]!.toLowerCase() === 'kb' ? 1024 : 1024 * 1024);
}

/** The route table's cases. */
function routeCases(): Case[] {
  const out: Case[] = [];
  for (const r of ROUTES) {
    if (/[{*]/.test(r.path)) continue; // the UI's catch-all takes any path
    const method = r.method.toUpperCase();
    const auth = bearer(tokens.admin!);
    const b = bodyFor(r);
    // Routes under /repo/ are answered as repository files are: a status, no JSON.
    const fileRoute = r.path.startsWith('/repo/');
    // Path parameters: the repository is looked up first (404); any other is validated (400) or not found (404).
    for (const p of paramsOf(r.path)) {
      for (const [what, v] of HOSTILE_PARAMS) {
        const isRepo = p === 'repo';
        out.push({
          name: `${method} ${r.path}: :${p} ${what}`,
          method,
          path: fill(r, { [p]: v }),
          headers: { ...b.headers, ...auth },
          body: b.body,
          // A repository name that cannot be one is not found (or, not even a path, a bad request).
          status: isRepo ? [400, 404] : [400, 404],
          code: fileRoute ? null : isRepo ? ['NOT_FOUND', 'BAD_REQUEST', 'INVALID_ARGUMENT'] : ['INVALID_ARGUMENT', 'INVALID_CHECKSUM', 'INVALID_PATH', 'NOT_FOUND', 'BAD_REQUEST'],
        });
      }
    }
    const p = fill(r, {});
    // A route of the (private) repository answers a caller who may not read it as a repository
    // that does not exist (404 NOT_FOUND); global routes 401.
    const repoRoute = 'repo' in r.access;
    const unauthorized = fileRoute ? null : (r.access as { public?: true }).public ? ['UNAUTHORIZED', 'NOT_FOUND'] : repoRoute ? 'NOT_FOUND' : 'UNAUTHORIZED';
    const forbidden = fileRoute ? null : 'FORBIDDEN';
    // Bad credentials: 404 on every route of the private repository, 401 on global ones; public
    // routes look at credentials only when they need them, so they may answer as to anyone (never 5xx).
    const isPublic = (r.access as { public?: true }).public === true;
    const badStatus = isPublic ? [200, 401, 404] : repoRoute ? 404 : 401;
    for (const t of ['expired', 'forged', 'unsigned', 'wrongIssuer', 'badJti', 'garbage']) {
      out.push({ name: `${method} ${r.path}: ${t} token`, method, path: p, headers: { ...b.headers, ...bearer(tokens[t]!) }, body: b.body, status: badStatus, code: unauthorized });
    }
    out.push({
      name: `${method} ${r.path}: forged token as HTTP Basic`,
      method,
      path: p,
      headers: { ...b.headers, authorization: `Basic ${Buffer.from(`x:${tokens.forged}`).toString('base64')}` },
      body: b.body,
      status: badStatus,
      code: unauthorized,
    });
    const access = r.access as { public?: true; scope?: string; repo?: string };
    if (access.public) continue;
    const needs = access.scope ?? access.repo!;
    out.push({ name: `${method} ${r.path}: no credentials`, method, path: p, headers: b.headers, body: b.body, status: repoRoute ? 404 : 401, code: unauthorized });
    // A token of a lower scope, and one for another repository.
    if (needs !== 'read') out.push({ name: `${method} ${r.path}: read-scope token`, method, path: p, headers: { ...b.headers, ...bearer(tokens.read!) }, body: b.body, status: 403, code: forbidden });
    if (needs === 'admin') out.push({ name: `${method} ${r.path}: push-scope token`, method, path: p, headers: { ...b.headers, ...bearer(tokens.push!) }, body: b.body, status: 403, code: forbidden });
    if (access.repo) {
      out.push({ name: `${method} ${r.path}: token of another repository`, method, path: p, headers: { ...b.headers, ...bearer(tokens.otherRepo!) }, body: b.body, status: 404, code: fileRoute ? null : 'NOT_FOUND' });
    }
    // JSON bodies: not JSON, the wrong shape, too deep, too large.
    if (r.body && 'json' in r.body) {
      const h = { ...json, ...bearer(access.scope ? tokens.globalAdmin! : tokens.admin!) };
      const bad: Array<[string, string | Buffer, number, string]> = [
        ['invalid JSON', '{"updates": [', 400, 'BAD_REQUEST'],
        ['JSON null', 'null', 400, 'BAD_REQUEST'],
        ['JSON array', '[]', 400, 'INVALID_ARGUMENT'],
        ['unknown members of the wrong types', '{"updates": 5, "objects": "x", "ref": [], "commit": {}, "dryRun": "yes", "keep": -1, "graceSeconds": "1h", "jti": 7, "name": null, "private": 3}', 400, 'INVALID_ARGUMENT'],
        ['10,000 levels of nesting', '['.repeat(10_000) + ']'.repeat(10_000), 0, ''],
        ['over the size limit', Buffer.concat([Buffer.from('{"x": "'), Buffer.alloc(limitBytes(r.body.limit) + 1024, 'a'), Buffer.from('"}')]), 413, 'TOO_LARGE'],
        ['UTF-16 JSON', Buffer.from('{"objects": []}', 'utf16le'), 400, 'BAD_REQUEST'],
      ];
      for (const [what, body, status, code] of bad) {
        // (nesting: a 400, or a 413 where the route's limit is under its 20 kB)
        const st = status || [400, 413];
        out.push({ name: `${method} ${r.path}: ${what}`, method, path: p, headers: h, body, status: st, code: code || ['BAD_REQUEST', 'INVALID_ARGUMENT', 'TOO_LARGE'] });
      }
      out.push({ name: `${method} ${r.path}: JSON sent as text/plain`, method, path: p, headers: { 'content-type': 'text/plain', ...bearer(tokens.admin!) }, body: '{}', status: [400, 415], code: ['INVALID_ARGUMENT', 'UNSUPPORTED'] });
    }
  }
  return out;
}

/** A raw deflate stream of `n` × 16 MiB of zeros, made of one independent chunk repeated (a few kB each). */
async function zeroDeflateChunk(): Promise<{ chunk: Buffer; tail: Buffer }> {
  const d = createDeflateRaw({ level: 9 });
  const out: Buffer[] = [];
  d.on('data', (c: Buffer) => out.push(c));
  d.write(Buffer.alloc(16 << 20));
  await new Promise<void>((r) => d.flush(zc.Z_FULL_FLUSH, () => r()));
  const chunk = Buffer.concat(out);
  out.length = 0;
  await new Promise<void>((r) => d.end(() => r()));
  await new Promise((r) => setImmediate(r));
  return { chunk, tail: Buffer.concat(out) };
}

function multipart(parts: Array<[string, Buffer]>, boundary = 'catalogue-boundary'): Buffer {
  const out: Buffer[] = [];
  for (const [name, bytes] of parts) {
    out.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`), bytes, Buffer.from('\r\n'));
  }
  out.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(out);
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}

/** The object and ref cases. */
async function objectCases(): Promise<Case[]> {
  const out: Case[] = [];
  const auth = bearer(tokens.push!);
  const mp = { 'content-type': 'multipart/form-data; boundary=catalogue-boundary', ...auth };
  const put = (name: string) => `/api/repos/main/objects/${name}`;
  const octet = { 'content-type': 'application/octet-stream', ...auth };

  const header = { uid: 0, gid: 0, mode: 0o100644, symlinkTarget: '', xattrs: [] };
  const content = Buffer.from('the file content\n'.repeat(100));
  const fileSum = contentChecksumOf(header, content);
  const goodFilez = Buffer.concat([encodeArchiveHeader(header, content.length), deflateRawSync(content)]);
  const junk = Buffer.from('not a gvariant at all, just junk bytes of no type');
  const aCommit = commitOf('never stored');
  const dirtreeDotDot = serialize('(a(say)a(sayay))', [[['..', Buffer.alloc(32, 3)]], []]);
  const dirtreeSlash = serialize('(a(say)a(sayay))', [[['a/b', Buffer.alloc(32, 3)]], []]);
  const dirtreeUnsorted = serialize('(a(say)a(sayay))', [[['b', Buffer.alloc(32, 3)], ['a', Buffer.alloc(32, 3)]], []]);
  // a{sv} of one entry holding ten million booleans (test/http/hardening-gvariant)
  const n = 10_000_000;
  const bools = Buffer.concat([Buffer.from('k\0'), Buffer.alloc(6), Buffer.alloc(n, 1), Buffer.from('\0ab')]);
  const entry = Buffer.concat([bools, u32(2)]);
  const boolMeta = Buffer.concat([entry, u32(entry.length)]);
  // Decompression bomb: a header declaring 1 KiB, then deflate inflating to 4 GiB (~4 MB sent).
  const { chunk, tail } = await zeroDeflateChunk();
  const bombHeader = encodeArchiveHeader(header, 1024);
  const bombSum = contentChecksumOf(header, Buffer.alloc(1024));
  const bomb = function* () {
    yield bombHeader;
    for (let i = 0; i < 256; i++) yield chunk;
    yield tail;
  };
  const bombBytes = Buffer.concat([...bomb()]);

  const metaCases: Array<[string, string, Buffer, number | number[], string | string[]]> = [
    ['malformed GVariant commit', `${sha256Hex(junk)}.commit`, junk, 400, 'INVALID_GVARIANT'],
    ['malformed GVariant dirtree', `${sha256Hex(junk)}.dirtree`, junk, 400, 'INVALID_GVARIANT'],
    ['malformed GVariant dirmeta', `${sha256Hex(junk)}.dirmeta`, junk, 400, 'INVALID_GVARIANT'],
    ['commit under the wrong checksum', `${sha256Hex(Buffer.from('x'))}.commit`, aCommit, 400, 'CHECKSUM_MISMATCH'],
    ['truncated commit', `${sha256Hex(aCommit.subarray(0, 20))}.commit`, aCommit.subarray(0, 20), 400, 'INVALID_GVARIANT'],
    ['dirtree naming ".."', `${sha256Hex(dirtreeDotDot)}.dirtree`, dirtreeDotDot, 400, ['INVALID_OBJECT', 'INVALID_PATH']],
    ['dirtree naming "a/b"', `${sha256Hex(dirtreeSlash)}.dirtree`, dirtreeSlash, 400, ['INVALID_OBJECT', 'INVALID_PATH']],
    ['dirtree with unsorted entries', `${sha256Hex(dirtreeUnsorted)}.dirtree`, dirtreeUnsorted, 400, 'INVALID_OBJECT'],
    ['metadata object over 10 MiB', `${sha256Hex(Buffer.alloc(11 << 20))}.dirmeta`, Buffer.alloc(11 << 20), 413, 'TOO_LARGE'],
    ['commitmeta of ten million booleans', `${sha256Hex(LONE_COMMIT)}.commitmeta`, boolMeta, 400, 'INVALID_GVARIANT'],
    ['commitmeta of a commit not in the repository', `${sha256Hex(aCommit)}.commitmeta`, serialize('a{sv}', []), [400, 404, 422], ['INVALID_ARGUMENT', 'NOT_FOUND', 'MISSING_OBJECTS', 'INVALID_OBJECT']],
    ['truncated .filez', `${fileSum}.filez`, goodFilez.subarray(0, goodFilez.length - 5), 400, 'INVALID_OBJECT'],
    ['.filez truncated in its header', `${fileSum}.filez`, goodFilez.subarray(0, 12), 400, 'INVALID_OBJECT'],
    ['.filez with trailing junk', `${fileSum}.filez`, Buffer.concat([goodFilez, Buffer.from('junk')]), 400, 'INVALID_OBJECT'],
    ['.filez under the wrong checksum', `${'ab'.repeat(32)}.filez`, goodFilez, 400, 'CHECKSUM_MISMATCH'],
    ['.filez with a flipped body byte', `${fileSum}.filez`, Buffer.from(goodFilez).fill(0x55, goodFilez.length - 10, goodFilez.length - 9), 400, 'INVALID_OBJECT'],
    ['decompression bomb .filez (4 GiB)', `${bombSum}.filez`, bombBytes, 400, 'INVALID_OBJECT'],
    ['tombstone-commit upload', `${head}.tombstone-commit`, serialize('a{sv}', []), 400, ['INVALID_ARGUMENT', 'UNSUPPORTED']],
    ['unknown object type', `${head}.exe`, junk, 400, 'INVALID_ARGUMENT'],
  ];
  for (const [what, name, bytes, status, code] of metaCases) {
    out.push({ name: `multipart upload: ${what}`, method: 'POST', path: '/api/repos/main/objects', headers: mp, body: multipart([[name, bytes]]), status, code });
    out.push({ name: `PUT: ${what}`, method: 'PUT', path: put(name), headers: octet, body: bytes, status, code });
  }
  out.push({ name: 'PUT: decompression bomb streamed', method: 'PUT', path: put(`${bombSum}.filez`), headers: octet, body: bomb, status: 400, code: 'INVALID_OBJECT' });
  out.push({ name: 'PUT: declares 20 GB', method: 'PUT', path: put(`${fileSum}.filez`), headers: { ...octet, 'content-length': 20 * 1024 ** 3 }, body: () => [goodFilez], status: 413, code: 'TOO_LARGE' });
  // Malformed multipart (test/http/hardening-multipart).
  const mpCases: Array<[string, Record<string, string>, Buffer]> = [
    ['no boundary', { 'content-type': 'multipart/form-data', ...auth }, multipart([[`${fileSum}.filez`, goodFilez]])],
    ['wrong boundary', mp, multipart([[`${fileSum}.filez`, goodFilez]], 'other-boundary')],
    ['truncated body', mp, multipart([[`${fileSum}.filez`, goodFilez]]).subarray(0, 150)],
    ['not multipart at all', { 'content-type': 'application/json', ...auth }, Buffer.from('{}')],
    ['field name with a traversal', mp, multipart([['../../secrets/x.commit', aCommit]])],
    ['field name over 200 characters', mp, multipart([[`${'a'.repeat(300)}.commit`, aCommit]])],
    ['a text field instead of a file', mp, Buffer.from(`--catalogue-boundary\r\nContent-Disposition: form-data; name="x"\r\n\r\nvalue\r\n--catalogue-boundary--\r\n`)],
  ];
  // Bodies cut short: the client goes away in the middle of an upload.
  const bigContent = Buffer.alloc(3 << 20, 7);
  const bigSum = contentChecksumOf(header, bigContent);
  const bigFilez = Buffer.concat([encodeArchiveHeader(header, bigContent.length), deflateRawSync(bigContent, { level: 0 })]);
  out.push({ name: 'PUT: the client goes away mid-body (.filez)', method: 'PUT', path: put(`${bigSum}.filez`), headers: { ...octet, 'content-length': bigFilez.length }, body: bigFilez, abortAfter: 1 << 20, status: 0, code: null });
  out.push({ name: 'PUT: the client goes away mid-body (metadata)', method: 'PUT', path: put(`${sha256Hex(aCommit)}.commit`), headers: { ...octet, 'content-length': aCommit.length }, body: aCommit, abortAfter: 40, status: 0, code: null });
  out.push({ name: 'multipart: the client goes away mid-part', method: 'POST', path: '/api/repos/main/objects', headers: mp, body: multipart([[`${bigSum}.filez`, bigFilez]]), abortAfter: 1 << 20, status: 0, code: null });
  for (const [what, headers, body] of mpCases) out.push({ name: `multipart: ${what}`, method: 'POST', path: '/api/repos/main/objects', headers, body, status: [400, 413, 415], code: ['INVALID_ARGUMENT', 'TOO_LARGE', 'UNSUPPORTED'] });

  // Refs.
  const refs = (updates: unknown, t = tokens.push!) => ({ method: 'POST', path: '/api/repos/main/refs', headers: { ...json, ...bearer(t) }, body: JSON.stringify({ updates }) });
  for (const bad of ['', '../x', 'os/../x', 'os//x', 'os/x/', '/os/x', 'os/-x', 'os/x y', 'os/x\u0000', 'os/.x', 'os/x.lock', `os/${'a'.repeat(300)}`, 'os/ünï', 'os/x\n', 'os\\x']) {
    out.push({ name: `refs: invalid ref name ${JSON.stringify(bad).slice(0, 40)}`, ...refs([{ ref: bad, commit: head, expected: null }]), status: [400, 403], code: ['INVALID_REF', 'INVALID_ARGUMENT', 'INVALID_PATH', 'FORBIDDEN'] });
  }
  out.push({ name: 'refs: ref outside the token prefixes', ...refs([{ ref: 'other/x', commit: head, expected: null }]), status: 403, code: 'FORBIDDEN' });
  out.push({ name: 'refs: commit not in the repository', ...refs([{ ref: 'os/new', commit: 'ab'.repeat(32), expected: null }]), status: 422, code: 'MISSING_OBJECTS' });
  out.push({ name: 'refs: lost compare-and-swap', ...refs([{ ref: REF, commit: head, expected: 'cd'.repeat(32) }]), status: 409, code: 'CONFLICT' });
  out.push({ name: 'refs: create over an existing ref', ...refs([{ ref: REF, commit: head, expected: null }]), status: 409, code: 'CONFLICT' });
  out.push({ name: 'refs: clashing paths a and a/b', ...refs([{ ref: `${REF}/sub`, commit: head, expected: null }]), status: 409, code: 'CONFLICT' });
  out.push({ name: 'refs: the same ref twice', ...refs([{ ref: 'os/t', commit: head, expected: null }, { ref: 'os/t', commit: head, expected: null }]), status: [400, 409], code: ['INVALID_ARGUMENT', 'CONFLICT'] });
  out.push({ name: 'refs: checksum not hex', ...refs([{ ref: 'os/n', commit: 'zz'.repeat(32), expected: null }]), status: 400, code: ['INVALID_ARGUMENT', 'INVALID_CHECKSUM'] });
  out.push({ name: 'refs: 100,000 updates', ...refs(Array.from({ length: 100_000 }, (_, i) => ({ ref: `os/r${i}`, commit: head, expected: null }))), status: [400, 413], code: ['INVALID_ARGUMENT', 'TOO_LARGE'] });
  out.push({ name: 'objects/missing: 200,000 names', method: 'POST', path: '/api/repos/main/objects/missing', headers: { ...json, ...auth }, body: JSON.stringify({ objects: Array.from({ length: 200_000 }, () => `${head}.commit`) }), status: [400, 413], code: ['INVALID_ARGUMENT', 'TOO_LARGE'] });
  // Tokens (test/http/hardening-tokens) and maintenance.
  const admin = { ...json, ...bearer(tokens.globalAdmin!) };
  for (const jti of ['', '../../etc/passwd', 'a'.repeat(200), 'has space']) out.push({ name: `revoke an unrevocable jti ${JSON.stringify(jti).slice(0, 20)}`, method: 'POST', path: '/api/tokens/revoke', headers: admin, body: JSON.stringify({ jti }), status: 400, code: 'INVALID_ARGUMENT' });
  out.push({ name: 'create a repository named with a traversal', method: 'POST', path: '/api/repos', headers: admin, body: JSON.stringify({ name: '../escape' }), status: 400, code: ['INVALID_ARGUMENT', 'INVALID_PATH'] });
  out.push({ name: 'prune: keep 0', method: 'POST', path: '/api/repos/main/prune', headers: admin, body: JSON.stringify({ keep: 0 }), status: 400, code: 'INVALID_ARGUMENT' });
  out.push({ name: 'gc: negative grace', method: 'POST', path: '/api/repos/main/gc', headers: admin, body: JSON.stringify({ graceSeconds: -1 }), status: 400, code: 'INVALID_ARGUMENT' });
  // Repository files: traversal answers 400 with an empty body (the reason in X-Cairn-Error).
  for (const p of [
    '/repo/main/../../secrets/token-secret',
    '/repo/main/%2e%2e/%2e%2e/secrets/token-secret',
    '/repo/main/objects/..%2F..%2F..%2Fsecrets%2Ftoken-secret',
    '/repo/main/refs/heads/..%2F..%2Fconfig%00',
    '/repo/..%2F..%2Fsecrets/token-secret',
    `/repo/main/objects/${'a'.repeat(5000)}`,
  ]) {
    out.push({ name: `file route: ${p.slice(0, 60)}`, method: 'GET', path: p, status: [400, 404], code: null });
  }
  return out;
}

/** Sends the head and the first `abortAfter` bytes of the body, then destroys the connection. */
async function abortedUpload(c: Case): Promise<void> {
  const body = c.body as Buffer;
  const head = `${c.method} ${c.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(c.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}${c.headers?.['content-length'] === undefined ? `content-length: ${body.length}\r\n` : ''}\r\n`;
  await new Promise<void>((resolve, reject) => {
    const s = connect(cairn.port, '127.0.0.1', () => {
      s.write(head);
      s.write(body.subarray(0, c.abortAfter), () => setTimeout(() => (s.destroy(), resolve()), 200));
    });
    s.on('error', reject);
  });
}

/** Whether `a` answers the case as it must; else why not. */
function judge(c: Case, a: RawAnswer): string | undefined {
  const statuses = Array.isArray(c.status) ? c.status : [c.status];
  if (!statuses.includes(a.status)) return `status ${a.status}, expected ${statuses.join('/')}: ${a.body.toString('utf8').slice(0, 300)}`;
  if (a.status < 400) return undefined; // an allowed success (a read with another repository's token on a public repository)
  if (c.code === null) {
    if (a.body.length !== 0 && !/^text\/plain/.test(String(a.headers['content-type'] ?? ''))) return `a file route answered a body: ${a.body.toString('utf8').slice(0, 200)}`;
    return undefined;
  }
  let body: { error?: { code?: unknown; message?: unknown } };
  try {
    body = JSON.parse(a.body.toString('utf8')) as typeof body;
  } catch {
    return `not a JSON error: ${a.body.toString('utf8').slice(0, 200)}`;
  }
  const codes = Array.isArray(c.code) ? c.code : [c.code];
  if (typeof body.error?.message !== 'string' || !codes.includes(String(body.error?.code))) return `error ${JSON.stringify(body).slice(0, 300)}, expected code ${codes.join('/')}`;
  return undefined;
}

test('the hostile input catalogue: every case a 4xx with its code, and nothing changed', { timeout: 900_000 }, async (t) => {
  const cases = [...routeCases(), ...(await objectCases())];
  const byRoute = new Set(cases.map((c) => c.name.split(':')[0]));
  t.diagnostic(`${cases.length} cases (${byRoute.size} routes and kinds)`);
  assert.ok(cases.length > 500, `${cases.length} cases`);
  const repoTmp = path.join(data, 'repos', 'main', 'tmp');
  // (tmp/ of the data folder: /readyz's probe file comes and goes there)
  const skip = (rel: string) => rel === 'tmp';
  let before = await snapshot(data, skip);
  const failures: string[] = [];
  for (const c of cases) {
    if (c.abortAfter !== undefined) {
      await abortedUpload(c);
      // The server notices the closed connection; its temporary file must go with it (within 5 s).
      for (let i = 0; i < 50 && (await fsp.readdir(repoTmp, { withFileTypes: true })).some((e) => e.isFile()); i++) await new Promise((r) => setTimeout(r, 100));
    } else {
      let a: RawAnswer;
      try {
        a = await raw(cairn.port, c.method, c.path, { headers: c.headers, body: typeof c.body === 'function' ? c.body() : c.body });
      } catch (e) {
        failures.push(`${c.name}: ${(e as Error).message}`);
        continue;
      }
      const why = judge(c, a);
      if (why) failures.push(`${c.name}: ${why}`);
    }
    const now = await snapshot(data, skip);
    const diff = snapshotDiff(before, now);
    const tmp = (await fsp.readdir(repoTmp, { withFileTypes: true }).catch(() => [])).filter((e) => !e.isDirectory()).map((e) => e.name);
    if (diff.length || tmp.length) {
      failures.push(`${c.name}: changed the data folder: ${[...diff, ...tmp.map((f) => `tmp/${f}`)].join(', ').slice(0, 500)}`);
      before = now; // judge the next cases against what is there now
    }
  }
  // The server is still up, and serves the repository as before.
  const res = await fetch(`${cairn.url}/repo/main/refs/heads/${REF}`, { headers: bearer(tokens.read!) }).catch((e: Error) => e);
  if (res instanceof Error) failures.push(`the server no longer answers (${res.message}):\n${cairn.output().slice(-3000)}`);
  else if (res.status !== 200 || (await res.text()).trim() !== head) failures.push(`the ref answers ${res.status}, not ${head}`);
  assert.deepEqual(failures, [], `${failures.length} of ${cases.length} cases failed:\n${failures.join('\n')}`);
});
