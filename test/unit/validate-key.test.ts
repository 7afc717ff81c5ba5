// validateKey is a one-pass scan (it runs twice per request); it must decide exactly as the
// plain split-based rule it replaced, kept here as the reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateKey } from '../../storage/backends/backend';
import { isCairnError } from '../../storage/errors';
import { mulberry32 } from '../helpers/prng';

function reference(key: string): boolean {
  if (key.length === 0 || key.length > 4096 || key.includes('\0') || key.includes('\\') || key.startsWith('/')) return false;
  for (const seg of key.split('/')) {
    if (seg === '' || seg === '.' || seg === '..') return false;
    if (Buffer.byteLength(seg) > 255) return false;
  }
  return true;
}

function accepts(key: string): boolean {
  try {
    assert.equal(validateKey(key), key);
    return true;
  } catch (e) {
    assert.ok(isCairnError(e, 'INVALID_PATH'), String(e));
    return false;
  }
}

test('validateKey agrees with the split-based rule on edge cases', () => {
  const cases = ['config', 'objects/ab/cd.commit', '.', '..', './x', 'x/.', 'x/..', '.x', '..x', 'x..', 'a/.../b', '/x', 'x/', 'x//y', '', 'a\0b', 'a\\b',
    'a'.repeat(255), 'a'.repeat(256), `x/${'é'.repeat(127)}`, `x/${'é'.repeat(128)}`, `${'é'.repeat(128)}/x`, 'a/'.repeat(2048), `${'a/'.repeat(2047)}a`, '+', 'deltas/ab/c+d-e/superblock'];
  for (const key of cases) assert.equal(accepts(key), reference(key), JSON.stringify(key));
});

test('validateKey agrees with the split-based rule on 100,000 random keys', () => {
  const rnd = mulberry32(11);
  const alphabet = ['a', 'b', '/', '.', '..', '\0', '\\', 'é', '+', '-', '_', 'x'.repeat(100), '\u{1F600}'];
  for (let i = 0; i < 100_000; i++) {
    let key = '';
    const n = Math.floor(rnd() * 12);
    for (let j = 0; j < n; j++) key += alphabet[Math.floor(rnd() * alphabet.length)];
    assert.equal(accepts(key), reference(key), JSON.stringify(key));
  }
});
