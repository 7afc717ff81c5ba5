import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decideRange, httpDate, isNotModified, lastModifiedUsable, parseHttpDate } from '../../server/files/conditional';
import { decodePathSegments } from '../../server/files/paths';
import { classifyNestedKey, classifyRepoKey } from '../../storage/repo/layout';
import { isCairnError } from '../../storage/errors';

const T = Date.UTC(2026, 10, 27, 12, 45, 33); // Fri, 27 Nov 2026 12:45:33

describe('HTTP dates', () => {
  test('the client\'s UTC suffix, GMT, and the obsolete forms', () => {
    assert.equal(parseHttpDate('Fri, 27 Nov 2026 12:45:33 UTC'), T / 1000);
    assert.equal(parseHttpDate('Fri, 27 Nov 2026 12:45:33 GMT'), T / 1000);
    assert.equal(parseHttpDate('Friday, 27-Nov-26 12:45:33 GMT'), T / 1000);
    assert.equal(parseHttpDate('garbage'), null);
    assert.equal(parseHttpDate('Fri, 27 Foo 2026 12:45:33 UTC'), null);
    assert.equal(httpDate(T + 999), 'Fri, 27 Nov 2026 12:45:33 GMT');
  });

  test('a modification time is a validator only once its second is over', () => {
    assert.equal(lastModifiedUsable(T + 100, T + 900), false);
    assert.equal(lastModifiedUsable(T + 100, T + 1000), true);
    const v = { etag: '"x"', mtimeMs: T + 500, nowMs: T + 700 };
    assert.equal(isNotModified({ 'if-modified-since': 'Fri, 27 Nov 2026 12:45:33 UTC' }, v), false);
    assert.equal(isNotModified({ 'if-modified-since': 'Fri, 27 Nov 2026 12:45:33 UTC' }, { ...v, nowMs: T + 5000 }), true);
    assert.equal(isNotModified({ 'if-modified-since': 'Fri, 27 Nov 2026 12:45:32 UTC' }, { ...v, nowMs: T + 5000 }), false);
  });

  test('If-None-Match: lists, weak forms, *, and precedence over the date', () => {
    const v = { etag: '"abc"', mtimeMs: T, nowMs: T + 10_000 };
    assert.equal(isNotModified({ 'if-none-match': '"abc"' }, v), true);
    assert.equal(isNotModified({ 'if-none-match': '"x", W/"abc"' }, v), true);
    assert.equal(isNotModified({ 'if-none-match': '*' }, v), true);
    assert.equal(isNotModified({ 'if-none-match': '"abd"', 'if-modified-since': 'Fri, 27 Nov 2026 12:45:33 UTC' }, v), false);
    assert.equal(isNotModified({}, v), false);
  });
});

describe('byte ranges', () => {
  const v = { etag: '"e"', mtimeMs: T, nowMs: T + 10_000 };
  const r = (range: string, size = 100) => decideRange({ range }, size, v);
  test('single ranges', () => {
    assert.deepEqual(r('bytes=0-9'), { kind: 'partial', range: { start: 0, end: 9 } });
    assert.deepEqual(r('bytes=90-'), { kind: 'partial', range: { start: 90, end: 99 } });
    assert.deepEqual(r('bytes=-5'), { kind: 'partial', range: { start: 95, end: 99 } });
    assert.deepEqual(r('bytes=50-1000'), { kind: 'partial', range: { start: 50, end: 99 } });
    assert.deepEqual(r('bytes=-1000'), { kind: 'partial', range: { start: 0, end: 99 } });
  });
  test('unsatisfiable and ignored', () => {
    assert.deepEqual(r('bytes=100-'), { kind: 'unsatisfiable' });
    assert.deepEqual(r('bytes=100-200'), { kind: 'unsatisfiable' });
    assert.deepEqual(r('bytes=-0'), { kind: 'unsatisfiable' });
    assert.deepEqual(r('bytes=0-', 0), { kind: 'unsatisfiable' });
    for (const h of ['bytes=0-1,3-4', 'bytes=5-1', 'bytes=-', 'lines=1-2', 'bytes=1e3-', `bytes=${'9'.repeat(30)}-`]) assert.deepEqual(r(h), { kind: 'full' }, h);
    assert.deepEqual(decideRange({}, 100, v), { kind: 'full' });
  });
});

describe('path decoding', () => {
  test('decodes each segment once; + stays a plus', () => {
    assert.deepEqual(decodePathSegments('a+b/c%20d/%2B/%252F'), ['a+b', 'c d', '+', '%2F']);
  });
  test('refuses encoded separators and bad escapes', () => {
    for (const p of ['a%2Fb', 'a%2fb', 'a%5Cb', '%E0%A4%A', '%zz']) assert.throws(() => decodePathSegments(p), (e) => isCairnError(e, 'INVALID_PATH'), p);
  });
});

describe('repository layout classes', () => {
  const S = '3fd0406929e83910fc100bb8ea1da75799549be4e5d2cf3ffbd292054da936a3';
  const obj = (ext: string) => `objects/${S.slice(0, 2)}/${S.slice(2)}.${ext}`;
  test('content-addressed, mutable and local', () => {
    assert.deepEqual(classifyRepoKey(obj('commit')), { kind: 'immutable', area: 'object', contentId: `${S}.commit` });
    for (const ext of ['dirtree', 'dirmeta', 'filez']) assert.equal(classifyRepoKey(obj(ext)).kind, 'immutable');
    for (const ext of ['commitmeta', 'tombstone-commit']) assert.equal(classifyRepoKey(obj(ext)).kind, 'mutable');
    assert.equal(classifyRepoKey('objects/3f/short.commit').kind, 'mutable');
    assert.deepEqual(classifyRepoKey('deltas/P9/abc/superblock'), { kind: 'immutable', area: 'delta' });
    for (const k of ['config', 'summary', 'summary.sig', 'refs/heads/main', 'delta-indexes/LW/x.index']) assert.equal(classifyRepoKey(k).kind, 'mutable', k);
    for (const k of ['tmp/x', 'state/x.commitpartial', 'extensions/x', '.lock']) assert.equal(classifyRepoKey(k).kind, 'local', k);
    assert.equal(classifyRepoKey('refs/heads/tmp/x').kind, 'mutable');
  });
  test('nested repositories (mounted folders)', () => {
    assert.equal(classifyNestedKey(`ostree/gnomerepo/${obj('dirtree')}`).kind, 'immutable');
    assert.equal(classifyNestedKey(`ostree/gnomerepo/${obj('commitmeta')}`).kind, 'mutable');
    assert.equal(classifyNestedKey('ostree/repo/deltas/P9/BAaSnoORD8EAu46h2nV5lUm+Tl0s8_+9KSBU2pNqM/0').kind, 'immutable');
    assert.equal(classifyNestedKey('ostree/repo/refs/heads/deltas/x').kind, 'mutable');
    assert.equal(classifyNestedKey('ostree/repo/summary').kind, 'mutable');
  });
});
