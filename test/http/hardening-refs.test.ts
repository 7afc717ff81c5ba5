import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import request from 'supertest';
import type { Backend, WriteSource } from '../../storage/backends/backend';
import { CairnError } from '../../storage/errors';
import { parse } from '../../storage/gvariant';
import { OBJECT_GVARIANT_TYPE } from '../../storage/objects/types';
import { updateRefs } from '../../storage/repo/publish';
import { Repo } from '../../storage/repo/repo';
import type { CairnApp } from '../../server/app';
import type { ServerContext } from '../../server/context';
import { S1 } from '../helpers/fixtures';
import { moveRefs, publishingSetup, uploadUnboundCommit, type TestData } from './helpers';

/**
 * Security review, finding 3: a multi-ref update whose refs clash as paths
 * (`a` and `a/b` cannot both be refs) used to write the first ref and then
 * fail with 500. Clashes are now found before anything is written (409), and
 * a write that still fails midway is rolled back: no ref, summary or reflog
 * changes.
 */
let data: TestData;
let app: CairnApp;
let ctx: ServerContext;
let main: Repo;
let token: string;
let C: string; // a commit of S1's tree without a ref binding, publishable under any ref

before(async () => {
  const setup = await publishingSetup();
  ({ data, ctx, app, main } = setup);
  token = await setup.token({ sub: 'builder', scope: ['push'] });
  C = await uploadUnboundCommit(app, token);
  await moveRefs(app, token, [
    { ref: 'sample/main', commit: S1, expected: null },
    { ref: 'a/b', commit: C, expected: null },
  ]).expect(200);
});

after(() => data.cleanup());

/** Everything a ref move changes: refs, summary, its signature, the reflog. */
async function state(): Promise<unknown> {
  const file = (rel: string) => {
    const p = path.join(main.backend.location, rel);
    return existsSync(p) ? readFileSync(p).toString('hex') : null;
  };
  const reflogDir = path.join(main.backend.location, 'state/cairn/reflog');
  const reflogFiles = existsSync(reflogDir) ? readdirSync(reflogDir, { recursive: true }).map(String).sort() : [];
  return { refs: Object.fromEntries(await main.listRefs()), summary: file('summary'), sig: file('summary.sig'), reflogFiles };
}

test('refs that clash as paths are refused with 409 before anything is written', async () => {
  const before = await state();
  const cases: Array<[string, unknown[], { ref: string; clashesWith: string }]> = [
    ['a ref under an existing ref', [{ ref: 'fresh', commit: C }, { ref: 'a/b/c', commit: C }], { ref: 'a/b/c', clashesWith: 'a/b' }],
    ['a ref where existing refs have a folder', [{ ref: 'fresh', commit: C }, { ref: 'a', commit: C }], { ref: 'a', clashesWith: 'a/b' }],
    ['a ref over the folder of an existing one, deep', [{ ref: 'fresh', commit: C }, { ref: 'sample', commit: C }], { ref: 'sample', clashesWith: 'sample/main' }],
    ['two new refs of the same request', [{ ref: 'n/x', commit: C }, { ref: 'n', commit: C }], { ref: 'n/x', clashesWith: 'n' }],
  ];
  for (const [what, updates, clash] of cases) {
    const r = await moveRefs(app, token, updates);
    assert.equal(r.status, 409, `${what}: ${r.status} ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, 'CONFLICT', what);
    assert.ok(
      (r.body.error.details.clashes as Array<{ ref: string; clashesWith: string }>).some((c) => c.ref === clash.ref && c.clashesWith === clash.clashesWith),
      `${what}: ${JSON.stringify(r.body.error.details)}`,
    );
    assert.deepEqual(await state(), before, `${what}: something changed`);
  }
  const log = await request(app).get('/api/repos/main/reflog').expect(200);
  assert.equal(log.body.entries.length, 2);
});

test('a deletion in the same request frees the path: a/b goes, a/b/c comes', async () => {
  const r = await moveRefs(app, token, [
    { ref: 'a/b/c', commit: C, expected: null },
    { ref: 'a/b', commit: null, expected: C },
  ]);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const refs = Object.fromEntries(await main.listRefs());
  assert.equal(refs['a/b/c'], C);
  assert.equal(refs['a/b'], undefined);
});

/** The repository's own backend, with writes to chosen keys failing like a full disk. */
function failingOn(keys: Set<string>): Backend {
  const inner = main.backend;
  return new Proxy(inner, {
    get(target, prop, receiver) {
      // Publishing stages its files (prepare) before it switches them: a failure there is a write failing midway.
      if (prop === 'write' || prop === 'prepare') {
        return async (key: string, d: WriteSource) => {
          if (keys.has(key)) throw new CairnError('IO', `injected failure writing ${key}`);
          return prop === 'write' ? target.write(key, d) : target.prepare!(key, d);
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

test('a write that fails midway is rolled back: refs, summary and reflog as before', async () => {
  const before = await state();
  const repo = new Repo('main', failingOn(new Set(['refs/heads/z/second'])));
  await assert.rejects(
    updateRefs(
      repo,
      [
        { ref: 'z/first', commit: C, expected: null },
        { ref: 'sample/main', commit: null, expected: S1 },
        { ref: 'z/second', commit: C, expected: null },
      ],
      { actor: 'test' },
    ),
    (e: unknown) => e instanceof CairnError && e.code === 'IO',
  );
  assert.deepEqual(await state(), before, 'the failed update left changes behind');
  // A failure staging the summary (the last file staged before anything switches) leaves the refs too.
  const signer = await ctx.signerFor(main);
  const noSummary = new Repo('main', failingOn(new Set(['summary'])));
  await assert.rejects(updateRefs(noSummary, [{ ref: 'z/first', commit: C, expected: null }], { actor: 'test', signer }));
  const afterwards = (await state()) as { refs: unknown; reflogFiles: unknown };
  const was = before as { refs: unknown; reflogFiles: unknown };
  assert.deepEqual([afterwards.refs, afterwards.reflogFiles], [was.refs, was.reflogFiles], 'a failed summary left refs behind');
  const [summaryRefs] = parse(OBJECT_GVARIANT_TYPE.summary, readFileSync(path.join(main.backend.location, 'summary'))) as [Array<[string, unknown]>];
  assert.deepEqual(summaryRefs.map(([n]) => n), Object.keys(was.refs as object).sort());
});
