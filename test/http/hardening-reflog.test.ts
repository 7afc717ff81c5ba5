import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import request from 'supertest';
import type { Backend } from '../../storage/backends/backend';
import { readRefLog, readRefLogPage, refLogFileName, type RefLogEntry } from '../../storage/repo/reflog';
import { Repo } from '../../storage/repo/repo';
import { issueToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { CairnApp } from '../../server/app';
import type { ServerContext } from '../../server/context';
import { makeApp, makeDataDir, type TestData } from './helpers';

/**
 * Security review, finding 6: reading the reflog opened every entry file (9 s
 * at 20k entries) and showed token subjects to anyone. Now one ref's history
 * opens only that ref's files (and old-format ones), a read opens at most
 * 5,000 files and pages on with `before`, and `actor` is shown only to push
 * or admin tokens of the repository.
 */
let data: TestData;
let app: CairnApp;
let ctx: ServerContext;
let main: Repo;
const tokens: Record<string, string> = {};

const OTHERS = 20_000;
const OLD_OTHERS = 40; // entries of the old format (no ref digest in the name): these must be opened
const X_NEW = [150, 9_000, 19_990]; // positions in time of ref x's new-format entries
const X_OLD = [100, 12_000]; // …and of its old-format ones

function at(i: number): string {
  return new Date(Date.UTC(2024, 0, 1) + i * 1000).toISOString();
}

before(async () => {
  data = makeDataDir();
  main = await data.registry.create('main');
  ctx = await createServerContext(data.dataDir, data.registry, { deltas: false });
  app = makeApp(data, { context: ctx });
  tokens.push = (await issueToken(ctx.auth.secret, { sub: 'builder-subject', scope: ['push'], repos: ['main'], prefixes: ['nothing/'], ttlSeconds: 600 })).token;
  tokens.admin = (await issueToken(ctx.auth.secret, { sub: 'root', scope: ['admin'], repos: ['*'], ttlSeconds: 600 })).token;
  tokens.read = (await issueToken(ctx.auth.secret, { sub: 'reader', scope: ['read'], repos: ['main'], ttlSeconds: 600 })).token;
  tokens.otherRepoPush = (await issueToken(ctx.auth.secret, { sub: 'elsewhere', scope: ['push'], repos: ['other'], ttlSeconds: 600 })).token;

  // The entries are written straight into the folder (appendRefLog fsyncs each one).
  const dir = path.join(main.backend.location, 'state/cairn/reflog');
  mkdirSync(dir, { recursive: true });
  const put = (name: string, e: RefLogEntry) => writeFileSync(path.join(dir, name), JSON.stringify(e) + '\n');
  const entry = (i: number, ref: string): RefLogEntry => ({ time: at(i), ref, old: null, new: (i % 256).toString(16).padStart(2, '0').repeat(32), actor: `secret-subject-${i}` });
  const oldName = (e: RefLogEntry, i: number) => `${e.time.replace(/[:.]/g, '-')}-${i.toString(16).padStart(8, '0')}.json`;
  for (let i = 0; i < OTHERS; i++) {
    const e = entry(i, `other/${i % 50}`);
    put(i % (OTHERS / OLD_OTHERS) === 7 ? oldName(e, i) : refLogFileName(e), e);
  }
  for (const i of X_NEW) put(refLogFileName(entry(i, 'x')), entry(i, 'x'));
  for (const i of X_OLD) put(oldName(entry(i, 'x'), i), entry(i, 'x'));
});

after(() => data.cleanup());

/** The repository with a count of the reflog files it reads. */
function counted(): { repo: Repo; reads: () => number } {
  let n = 0;
  const inner = main.backend;
  const backend = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'read') {
        return (key: string) => {
          if (key.startsWith('state/cairn/reflog/')) n++;
          return target.read(key);
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  }) as Backend;
  return { repo: new Repo('main', backend), reads: () => n };
}

const xTimes = [...X_NEW, ...X_OLD].sort((a, b) => b - a).map(at);

test('one ref among 20k entries of others: only its files and the old-format ones are opened', async () => {
  const { repo, reads } = counted();
  const page = await readRefLogPage(repo, { ref: 'x', limit: 100 });
  assert.deepEqual(
    page.entries.map((e) => e.time),
    xTimes,
  );
  assert.ok(page.entries.every((e) => e.ref === 'x'));
  assert.equal(page.next, null);
  assert.equal(reads(), X_NEW.length + X_OLD.length + OLD_OTHERS, 'files opened');
  assert.equal(page.filesRead, reads());
  // readRefLog (used by delta planning) is bounded the same way.
  const { repo: r2, reads: reads2 } = counted();
  assert.equal((await readRefLog(r2, { ref: 'x', limit: 2 })).length, 2);
  assert.ok(reads2() <= 100, `readRefLog opened ${reads2()} files`);
});

test('a read opens at most as many files as it needs, and at most 5,000; `before` pages on', async () => {
  const { repo, reads } = counted();
  const first = await readRefLogPage(repo, { limit: 10 });
  assert.equal(first.entries.length, 10);
  assert.equal(reads(), 10);
  assert.equal(first.entries[0]!.time, at(OTHERS - 1));
  assert.ok(first.next);
  const second = await readRefLogPage(repo, { limit: 10, before: first.next! });
  const key = (e: RefLogEntry) => `${e.time} ${e.ref}`;
  assert.equal(second.entries.length, 10);
  assert.ok(second.entries[0]!.time <= first.entries[9]!.time);
  assert.equal(new Set([...first.entries, ...second.entries].map(key)).size, 20, 'no entry on both pages');

  // Old-format files of other refs are opened to be filtered; the cap stops the read, the cursor resumes it.
  const { repo: r3, reads: reads3 } = counted();
  const capped = await readRefLogPage(r3, { ref: 'x', maxReads: 20 });
  assert.equal(reads3(), 20);
  assert.ok(capped.next, 'a capped read says where to go on');
  const seen = [...capped.entries];
  let next: string | null = capped.next;
  let pages = 0;
  while (next && pages++ < 100) {
    const p = await readRefLogPage(r3, { ref: 'x', maxReads: 20, before: next });
    seen.push(...p.entries);
    next = p.next;
  }
  assert.deepEqual(
    seen.map((e) => e.time),
    xTimes,
  );
  assert.ok(reads3() <= X_NEW.length + X_OLD.length + OLD_OTHERS + 100, `${reads3()} files opened over all pages`);
});

test('over HTTP: limit and the 5,000-file cap bound the answer, `next` pages on without repeats', async () => {
  const a = await request(app).get('/api/repos/main/reflog?limit=1000').expect(200);
  assert.equal(a.body.entries.length, 1000);
  assert.equal(typeof a.body.next, 'string');
  const b = await request(app).get(`/api/repos/main/reflog?limit=1000&before=${encodeURIComponent(a.body.next)}`).expect(200);
  assert.equal(b.body.entries.length, 1000);
  const key = (e: RefLogEntry) => `${e.time} ${e.ref}`;
  assert.ok(b.body.entries[0].time <= a.body.entries[999].time);
  assert.equal(new Set([...a.body.entries, ...b.body.entries].map(key)).size, 2000, 'no entry on both pages');
  const x = await request(app).get('/api/repos/main/reflog?ref=x').expect(200);
  assert.deepEqual(
    x.body.entries.map((e: RefLogEntry) => e.time),
    xTimes,
  );
  assert.equal(x.body.next, null);
  await request(app).get('/api/repos/main/reflog?before=').expect(400);
});

test('actor is shown to push and admin tokens of the repository only', async () => {
  const get = (token?: string) => {
    const r = request(app).get('/api/repos/main/reflog?ref=x&limit=5');
    return (token ? r.set('Authorization', `Bearer ${token}`) : r).expect(200);
  };
  for (const [who, token] of [
    ['anonymous', undefined],
    ['a read token', tokens.read],
    ['a push token of another repository', tokens.otherRepoPush],
  ] as const) {
    const r = await get(token);
    assert.equal(r.body.entries.length, 5, who);
    for (const e of r.body.entries) {
      assert.equal('actor' in e, false, `${who} sees actor`);
      assert.equal(e.ref, 'x');
    }
    assert.doesNotMatch(JSON.stringify(r.body), /secret-subject/, who);
  }
  for (const [who, token] of [
    ['a push token (whatever its prefixes)', tokens.push],
    ['an admin token', tokens.admin],
  ] as const) {
    const r = await get(token);
    assert.ok(
      r.body.entries.every((e: RefLogEntry) => /^secret-subject-\d+$/.test(e.actor)),
      who,
    );
  }
  // A bad token is an error, not an anonymous read.
  await request(app).get('/api/repos/main/reflog').set('Authorization', 'Bearer nonsense').expect(401);
});
