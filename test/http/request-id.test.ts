// Request ids (issue 10, item 6): every answer carries X-Request-Id — the
// client's own when it is sane, else a generated one — whichever transport
// writes it (the HTTP/1.1 front's file answers, node's file answers, express
// answers of the API, errors included), and the request's log line carries
// the same id.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServerContext } from '../../server/bootstrap';
import type { Answerer } from '../../server/http1/front';
import { listen, type ListeningServer } from '../../server/listen';
import { createLogger } from '../../server/logging';
import { exchange, requestText, type ParsedResponse } from '../helpers/raw-http';
import { makeApp, makeDataDir, type TestData } from './helpers';

const COMMIT = '/repo/sample/objects/3f/d0406929e83910fc100bb8ea1da75799549be4e5d2cf3ffbd292054da936a3.commit';
const SANE = /^[A-Za-z0-9._-]{1,64}$/;

let data: TestData;
let withFront: ListeningServer;
let nodeOnly: ListeningServer;
const lines: string[] = [];
const byFront: string[] = [];

before(async () => {
  data = makeDataDir();
  const ctx = await createServerContext(data.dataDir, data.registry, { signing: false, deltas: false });
  await data.registry.create('secret');
  await ctx.settings.update('secret', { private: true });
  const logger = createLogger({ level: 'info', write: (l) => void lines.push(l) });
  const app = makeApp(data, { context: ctx, logger });
  const front = app.locals.cairn.front.answer;
  const recording: Answerer = (head, conn) => {
    const r = front(head, conn);
    const note = (a: unknown) => a !== null && byFront.push(head.target);
    if (r instanceof Promise) void r.then(note, () => undefined);
    else note(r);
    return r;
  };
  withFront = await listen(app, { port: 0, host: '127.0.0.1', front: { answer: recording } });
  nodeOnly = await listen(makeApp(data, { context: ctx, logger }), { port: 0, host: '127.0.0.1' });
});

after(async () => {
  await withFront.close();
  await nodeOnly.close();
  data.cleanup();
});

async function ask(port: number, target: string, headers: string[] = [], method = 'GET'): Promise<ParsedResponse> {
  const x = await exchange(port, [requestText(target, headers, method)], { expect: 1, heads: [method === 'HEAD'] });
  return x.responses[0]!;
}

/** The request log line of the answer with this id (written when the answer is over). */
async function logLineOf(id: string): Promise<Record<string, unknown>> {
  for (let i = 0; i < 100; i++) {
    const found = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request' && l.request_id === id);
    if (found.length > 0) {
      assert.equal(found.length, 1, `one log line for ${id}`);
      return found[0]!;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no log line with request_id ${id}:\n${lines.join('')}`);
}

const cases: Array<[what: string, target: string, status: number, method?: string]> = [
  ['a cached object', COMMIT, 200],
  ['HEAD of an object', COMMIT, 200, 'HEAD'],
  ['a missing file', '/repo/sample/objects/aa/bb.commit', 404],
  ['a private repository without a token', '/repo/secret/config', 404],
  ['an API answer', '/api/repos', 200],
  ['an API error', '/api/repos/nope/refs', 404],
  ['a validation error', '/api/jobs?limit=0', 400],
  ['health', '/healthz', 200],
  ['an unknown path', '/nothing/here', 404],
];

for (const [name, port] of [
  ['with the HTTP/1.1 front', () => withFront.port],
  ['node only', () => nodeOnly.port],
] as const) {
  test(`${name}: a sane X-Request-Id is echoed and logged; none, or an insane one, gets a generated id`, async () => {
    let n = 0;
    for (const [what, target, status, method] of cases) {
      const own = `client.id-${name.length}_${++n}`;
      const echoed = await ask(port(), target, [`X-Request-Id: ${own}`], method);
      assert.equal(echoed.status, status, what);
      assert.equal(echoed.headers['x-request-id'], own, `${what}: echoed`);
      const line = await logLineOf(own);
      assert.equal(line.status, status, what);
      assert.equal(line.path, target.split('?')[0], what);

      const seen = new Set<string>();
      for (const bad of [undefined, 'x'.repeat(65), 'has space', 'semi;colon', 'ünï', '']) {
        const r = await ask(port(), target, bad === undefined ? [] : [`X-Request-Id: ${bad}`], method);
        const id = String(r.headers['x-request-id']);
        assert.match(id, SANE, `${what}: generated id for ${JSON.stringify(bad)}`);
        assert.notEqual(id, bad);
        assert.ok(!seen.has(id), `${what}: ids are unique`);
        seen.add(id);
        assert.equal((await logLineOf(id)).status, status, what);
      }
    }
  });
}

test('the front answered the file requests itself (the id is written on both transports)', () => {
  assert.ok(byFront.includes(COMMIT), byFront.join('\n'));
  assert.ok(byFront.includes('/repo/sample/objects/aa/bb.commit'));
  assert.ok(!byFront.includes('/api/repos'), 'the API is node\'s');
});

test('a 304 of the front carries the id too', async () => {
  const first = await ask(withFront.port, COMMIT, ['X-Request-Id: a.b-c_1']);
  const etag = String(first.headers.etag);
  const notModified = await ask(withFront.port, COMMIT, [`If-None-Match: ${etag}`, 'X-Request-Id: again-2']);
  assert.equal(notModified.status, 304);
  assert.equal(notModified.headers['x-request-id'], 'again-2');
});
