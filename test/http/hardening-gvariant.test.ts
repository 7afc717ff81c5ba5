import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import request from 'supertest';
import { Variant, serialize } from '../../storage/gvariant';
import { ARCHIVE_EXTENSION, ObjectType } from '../../storage/objects/types';
import type { ObjectRef } from '../../storage/repo/closure';
import { Repo } from '../../storage/repo/repo';
import { issueToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { CairnApp } from '../../server/app';
import type { ServerContext } from '../../server/context';
import { FIXTURE_REPO, S1 } from '../helpers/fixtures';
import { makeApp, makeDataDir, type TestData } from './helpers';

/**
 * Security review, finding 1: validating a GVariant upload is bounded. A
 * 10 MiB commitmeta of ten million booleans used to take 10 s of event loop
 * and 2.6 GB; it is now refused at once with a 4xx, and nothing is stored.
 */
let data: TestData;
let app: CairnApp;
let ctx: ServerContext;
let main: Repo;
let pushToken: string;

before(async () => {
  data = makeDataDir();
  main = await data.registry.create('main');
  ctx = await createServerContext(data.dataDir, data.registry, { deltas: false });
  app = makeApp(data, { context: ctx });
  pushToken = (await issueToken(ctx.auth.secret, { sub: 'builder', scope: ['push'], repos: ['main'], prefixes: ['sample/'], ttlSeconds: 600 })).token;
});

after(() => data.cleanup());

function bytesOf(o: ObjectRef): Buffer {
  return readFileSync(path.join(FIXTURE_REPO, 'objects', o.checksum.slice(0, 2), `${o.checksum.slice(2)}.${ARCHIVE_EXTENSION[o.type]}`));
}

function upload(parts: Array<[string, Buffer]>, token = pushToken) {
  let r = request(app).post('/api/repos/main/objects').set('Authorization', `Bearer ${token}`);
  for (const [name, bytes] of parts) r = r.attach(name, bytes, name);
  return r;
}

function objectFile(checksum: string, ext: string): string {
  return path.join(main.backend.location, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.${ext}`);
}

function assertNoTrace(checksum: string, ext: string): void {
  assert.equal(existsSync(objectFile(checksum, ext)), false, `${checksum}.${ext} was stored`);
  const tmp = path.join(main.backend.location, 'tmp');
  const leftovers = existsSync(tmp) ? readdirSync(tmp).filter((f) => f.startsWith('cairn-')) : [];
  assert.deepEqual(leftovers, [], 'temporary files left behind');
}

const smallMeta = serialize('a{sv}', [['note', new Variant('s', 'hello')]]);

test('finding 1: a 10 MiB commitmeta of ten million booleans is refused at once, nothing stored', async () => {
  await upload([[`${S1}.commit`, bytesOf({ checksum: S1, type: ObjectType.Commit })]]).expect(200);
  // a{sv} of one entry "k" → variant of `ab` holding ten million true, built by hand:
  // "k\0", padding to 8, the booleans, "\0ab", the entry's key offset; the array's offset.
  const n = 10_000_000;
  const value = Buffer.concat([Buffer.alloc(n, 1), Buffer.from('\0ab')]);
  const body = Buffer.concat([Buffer.from('k\0'), Buffer.alloc(6), value]);
  const entry = Buffer.concat([body, u32(2)]);
  const dict = Buffer.concat([entry, u32(entry.length)]);
  assert.ok(dict.length <= 10 * 1024 * 1024);
  const started = performance.now();
  const r = await upload([[`${S1}.commitmeta`, dict]]);
  const seconds = (performance.now() - started) / 1000;
  assert.equal(r.status, 400, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'INVALID_GVARIANT');
  assert.match(r.body.error.message, /exceeds the limit|more than/);
  assert.ok(seconds < 5, `took ${seconds.toFixed(1)} s`);
  assertNoTrace(S1, 'commitmeta');
  // A normal commitmeta of the same commit still goes in.
  const ok = await upload([[`${S1}.commitmeta`, smallMeta]]).expect(200);
  assert.deepEqual(ok.body.stored, [`${S1}.commitmeta`]);
});

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}

