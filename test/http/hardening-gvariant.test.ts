import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Variant, serialize } from '../../storage/gvariant';
import { ObjectType } from '../../storage/objects/types';
import type { Repo } from '../../storage/repo/repo';
import type { CairnApp } from '../../server/app';
import { S1 } from '../helpers/fixtures';
import { assertNoTrace, fixtureBytes, publishingSetup, upload, type TestData } from './helpers';

/**
 * Security review, finding 1: validating a GVariant upload is bounded. A
 * 10 MiB commitmeta of ten million booleans used to take 10 s of event loop
 * and 2.6 GB; it is now refused at once with a 4xx, and nothing is stored.
 */
let data: TestData;
let app: CairnApp;
let main: Repo;
let pushToken: string;

before(async () => {
  const setup = await publishingSetup();
  ({ data, app, main } = setup);
  pushToken = await setup.token({ sub: 'builder', scope: ['push'], prefixes: ['sample/'] });
});

after(() => data.cleanup());

const smallMeta = serialize('a{sv}', [['note', new Variant('s', 'hello')]]);

test('finding 1: a 10 MiB commitmeta of ten million booleans is refused at once, nothing stored', async () => {
  await upload(app, pushToken, [[`${S1}.commit`, fixtureBytes({ checksum: S1, type: ObjectType.Commit })]]).expect(200);
  // a{sv} of one entry "k" → variant of `ab` holding ten million true, built by hand:
  // "k\0", padding to 8, the booleans, "\0ab", the entry's key offset; the array's offset.
  const n = 10_000_000;
  const value = Buffer.concat([Buffer.alloc(n, 1), Buffer.from('\0ab')]);
  const body = Buffer.concat([Buffer.from('k\0'), Buffer.alloc(6), value]);
  const entry = Buffer.concat([body, u32(2)]);
  const dict = Buffer.concat([entry, u32(entry.length)]);
  assert.ok(dict.length <= 10 * 1024 * 1024);
  const started = performance.now();
  const r = await upload(app, pushToken, [[`${S1}.commitmeta`, dict]]);
  const seconds = (performance.now() - started) / 1000;
  assert.equal(r.status, 400, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'INVALID_GVARIANT');
  assert.match(r.body.error.message, /exceeds the limit|more than/);
  assert.ok(seconds < 5, `took ${seconds.toFixed(1)} s`);
  assertNoTrace(main, S1, 'commitmeta');
  // A normal commitmeta of the same commit still goes in.
  const ok = await upload(app, pushToken, [[`${S1}.commitmeta`, smallMeta]]).expect(200);
  assert.deepEqual(ok.body.stored, [`${S1}.commitmeta`]);
});

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}

