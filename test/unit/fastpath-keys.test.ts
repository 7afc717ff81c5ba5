// The read fast path (server/files/fastpath.ts) screens keys with isPlainKey
// instead of validateKey's split; for every key the fast path's URL pattern
// lets through, both must agree, or a path express would refuse (400) could
// be served, or a legal one sent down the slow path for nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateKey } from '../../storage/backends/backend';
import { isPlainKey } from '../../server/files/fastpath';
import { mulberry32 } from '../helpers/prng';

function validateKeyAccepts(key: string): boolean {
  try {
    validateKey(key);
    return true;
  } catch {
    return false;
  }
}

test('isPlainKey agrees with validateKey on hand-picked edge cases', () => {
  const cases = [
    'config', 'objects/ab/cdef.commit', 'refs/heads/a/b', '.', '..', './x', 'x/.', 'x/..', 'x/../y', '/x', 'x/', 'x//y',
    '.hidden', '...', 'a/.../b', 'x/.y', '+', 'a'.repeat(255), 'a'.repeat(256), `x/${'a'.repeat(255)}`, `x/${'a'.repeat(256)}/y`,
    `${'a/'.repeat(1000)}b`, 'deltas/ab/cd-ef/superblock',
  ];
  for (const key of cases) assert.equal(isPlainKey(key), validateKeyAccepts(key), JSON.stringify(key));
});

test('isPlainKey agrees with validateKey on 50,000 random keys of the fast path alphabet', () => {
  const rnd = mulberry32(7);
  const alphabet = ['a', 'b', '0', '.', '.', '/', '/', '-', '_', '+'];
  for (let n = 0; n < 50_000; n++) {
    const long = rnd() < 0.05;
    const len = 1 + Math.floor(rnd() * (long ? 600 : 12));
    let key = '';
    for (let i = 0; i < len; i++) key += long && rnd() < 0.9 ? 'a' : alphabet[Math.floor(rnd() * alphabet.length)];
    assert.equal(isPlainKey(key), validateKeyAccepts(key), JSON.stringify(key));
  }
});
