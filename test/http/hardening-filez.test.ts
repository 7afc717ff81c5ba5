import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { contentChecksumOf, type FileHeader } from '../../storage/objects/content';
import { encodeFilez } from '../../storage/objects/filez';
import type { Repo } from '../../storage/repo/repo';
import { listenApp, objectFile, publishingSetup, tempFiles, type TestData } from './helpers';

/**
 * Security review: a `.filez` whose valid deflate stream is followed by
 * trailing junk (about 1 MB or more) hung its upload forever: zlib takes no
 * more input once its stream ended, and the feeder waited for a 'drain' that
 * never came, holding the request open with a temporary file in tmp/. Every
 * such upload, by PUT and by multipart, now answers 400 INVALID_OBJECT
 * promptly and leaves nothing behind; so does one whose client stops sending
 * (without ending the body) right after the junk.
 */
let data: TestData;
let main: Repo;
let pushToken: string;
let port: number;
let closeServer: () => Promise<void>;

before(async () => {
  const setup = await publishingSetup();
  ({ data, main } = setup);
  pushToken = await setup.token({ sub: 'builder', scope: ['push'] });
  const server = await listenApp(setup.app);
  port = server.port;
  closeServer = server.close;
});

after(async () => {
  await closeServer?.();
  data.cleanup();
});

const HEADER: FileHeader = { uid: 0, gid: 0, mode: 0o100644, symlinkTarget: '', xattrs: [] };
let seed = 0;

/** A fresh, valid .filez (never uploaded before): 300 KB of pseudo-random bytes, so its deflate stream spans many chunks. */
async function freshFilez(): Promise<{ checksum: string; bytes: Buffer }> {
  const parts: Buffer[] = [];
  for (let i = 0; parts.length * 32 < 300 * 1024; i++) parts.push(createHash('sha256').update(`filez ${process.pid} ${seed} ${i}`).digest());
  seed++;
  const content = Buffer.concat(parts);
  const chunks: Buffer[] = [];
  for await (const c of encodeFilez(HEADER, content.length, [content])) chunks.push(c);
  return { checksum: contentChecksumOf(HEADER, content), bytes: Buffer.concat(chunks) };
}

function assertNoTrace(checksum: string, what: string): void {
  assert.equal(existsSync(objectFile(main, checksum, 'filez')), false, `${what}: the object was stored`);
  assertNoTemp(what);
}

function assertNoTemp(what: string): void {
  assert.deepEqual(tempFiles(main, '.tmp'), [], `${what}: temporary files left behind`);
}

interface Answer {
  status: number;
  body: string;
}

/**
 * Sends `body` in 64 KB writes (the server sees many chunks); `answer`
 * resolves as soon as the answer is complete, even if the server stops
 * reading or closes the connection before the client is done sending. With
 * `stall`, the client sends `body` and then nothing more, without ending the
 * request (the Content-Length promises one more byte); `sent` resolves then.
 */
function start(method: 'PUT' | 'POST', urlPath: string, headers: Record<string, string>, body: Buffer, stall = false): { answer: Promise<Answer>; sent: Promise<void>; abort(): void } {
  let sentResolve!: () => void;
  const sent = new Promise<void>((r) => (sentResolve = r));
  let req!: ReturnType<typeof httpRequest>;
  const answer = new Promise<Answer>((resolve, reject) => {
    let answered = false;
    req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path: urlPath,
        method,
        agent: false,
        headers: { authorization: `Bearer ${pushToken}`, 'content-length': String(body.length + (stall ? 1 : 0)), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          answered = true;
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
          req.destroy();
        });
        res.on('error', (e) => {
          if (!answered) reject(e);
        });
      },
    );
    // The server may stop reading and close once it answered: a write error then is expected.
    req.on('error', (e) => {
      if (!answered) setTimeout(() => (answered ? undefined : reject(e)), 2000);
    });
    let off = 0;
    const pump = (): void => {
      while (off < body.length && !req.destroyed) {
        const piece = body.subarray(off, off + 64 * 1024);
        off += piece.length;
        if (!req.write(piece)) {
          req.once('drain', pump);
          return;
        }
      }
      if (off >= body.length) sentResolve();
      if (off >= body.length && !stall && !req.destroyed) req.end();
    };
    pump();
  });
  return { answer, sent, abort: () => req.destroy() };
}

function send(method: 'PUT' | 'POST', urlPath: string, headers: Record<string, string>, body: Buffer, stall = false): Promise<Answer> {
  return start(method, urlPath, headers, body, stall).answer;
}

function put(checksum: string, body: Buffer, stall = false): Promise<Answer> {
  return send('PUT', `/api/repos/main/objects/${checksum}.filez`, { 'content-type': 'application/octet-stream' }, body, stall);
}

function multipart(checksum: string, bytes: Buffer): Promise<Answer> {
  const name = `${checksum}.filez`;
  const body = Buffer.concat([
    Buffer.from(`--FZB\r\nContent-Disposition: form-data; name="${name}"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
    bytes,
    Buffer.from('\r\n--FZB--\r\n'),
  ]);
  return send('POST', '/api/repos/main/objects', { 'content-type': 'multipart/form-data; boundary=FZB' }, body);
}

const JUNK_SIZES = [10, 2 * 1024 * 1024, 20 * 1024 * 1024];

function assertRefused(r: Answer, what: string): void {
  assert.equal(r.status, 400, `${what}: ${r.status} ${r.body.slice(0, 300)}`);
  const json = JSON.parse(r.body) as { error: { code: string; message: string } };
  assert.equal(json.error.code, 'INVALID_OBJECT', what);
  assert.match(json.error.message, /trailing data/, what);
}

for (const [route, upload] of [
  ['PUT', put],
  ['multipart POST', multipart],
] as const) {
  test(`${route}: a .filez with trailing junk is refused promptly (400), nothing stored, no temporary file`, { timeout: 120_000 }, async () => {
    // Without junk the same kind of object is accepted: the refusals below are for the junk only.
    const ok = await freshFilez();
    const good = await upload(ok.checksum, ok.bytes);
    assert.equal(good.status, route === 'PUT' ? 201 : 200, good.body);
    assert.ok(existsSync(objectFile(main, ok.checksum, 'filez')));
    assertNoTemp('valid upload');
    for (const junk of JUNK_SIZES) {
      const o = await freshFilez();
      const what = `${route}, ${junk} bytes of junk`;
      const r = await upload(o.checksum, Buffer.concat([o.bytes, Buffer.alloc(junk, 0x5a)]));
      assertRefused(r, what);
      assertNoTrace(o.checksum, what);
    }
  });
}

test('PUT: a client that stops sending after the junk (body not ended) is answered 400 at once', { timeout: 120_000 }, async () => {
  for (const junk of [10, 2 * 1024 * 1024]) {
    const o = await freshFilez();
    const what = `PUT, ${junk} bytes of junk, then silence`;
    const r = await put(o.checksum, Buffer.concat([o.bytes, Buffer.alloc(junk, 0x5a)]), true);
    assertRefused(r, what);
    assertNoTrace(o.checksum, what);
  }
});

test('multipart POST: a client that stops sending after the junk gets its temporary file removed at once', { timeout: 120_000 }, async () => {
  // multer answers a refused multipart body only once the request ended
  // (it drains the body first), so a silent client waits for the server's
  // request timeout. The ingest itself must not: the object is refused and its
  // temporary file gone while the client is still silent.
  for (const junk of [10, 2 * 1024 * 1024]) {
    const o = await freshFilez();
    const what = `multipart, ${junk} bytes of junk, then silence`;
    const name = `${o.checksum}.filez`;
    const body = Buffer.concat([
      Buffer.from(`--FZB\r\nContent-Disposition: form-data; name="${name}"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      o.bytes,
      Buffer.alloc(junk, 0x5a),
    ]);
    const req = start('POST', '/api/repos/main/objects', { 'content-type': 'multipart/form-data; boundary=FZB' }, body, true);
    req.answer.catch(() => undefined);
    await req.sent;
    // Nothing stored and no temporary file, and still so a second later (the
    // upload had time to begin: the bytes were all sent).
    const deadline = Date.now() + 30_000;
    let cleanSince = 0;
    while (Date.now() - cleanSince < 1000 || cleanSince === 0) {
      try {
        assertNoTrace(o.checksum, what);
        if (cleanSince === 0) cleanSince = Date.now();
      } catch (e) {
        cleanSince = 0;
        if (Date.now() > deadline) throw e;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    req.abort();
  }
});
