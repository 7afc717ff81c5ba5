import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { CairnError } from '../../storage/errors';
import {
  checksumFromBytes,
  checksumFromMb64,
  checksumToBytes,
  checksumToMb64,
  isChecksum,
  sha256Hex,
  validateChecksum,
} from '../../storage/objects/checksum';
import { existsSync, readFileSync } from 'node:fs';
import { DELTA_INDEX, OBJECTS, S1, S1_MB64, S1_S2_DELTA_DIR, S2, S2_MB64, SCRATCH_DELTA_DIR, objectPath, repoPath } from '../helpers/fixtures';
import { mulberry32 } from '../helpers/prng';

const invalidChecksum = (e: unknown) => e instanceof CairnError && e.code === 'INVALID_CHECKSUM';

const prng = mulberry32;

describe('checksums', () => {
  test('mb64 vectors from TESTDATA.md', () => {
    assert.equal(checksumToMb64(S1), 'P9BAaSnoORD8EAu46h2nV5lUm+Tl0s8_+9KSBU2pNqM');
    assert.equal(checksumToMb64(S2), 'LW823s3wgjLN27gsBJOtHPmeXIyPPOh9KIZFcBJ0EZ8');
    assert.equal(S1_MB64, 'P9BAaSnoORD8EAu46h2nV5lUm+Tl0s8_+9KSBU2pNqM');
    assert.equal(S2_MB64, 'LW823s3wgjLN27gsBJOtHPmeXIyPPOh9KIZFcBJ0EZ8');
    assert.equal(checksumFromMb64('P9BAaSnoORD8EAu46h2nV5lUm+Tl0s8_+9KSBU2pNqM'), S1);
    assert.equal(checksumFromMb64('LW823s3wgjLN27gsBJOtHPmeXIyPPOh9KIZFcBJ0EZ8'), S2);
    // the fixture repo's delta paths are built from them ('+' kept, '_' for '/')
    assert.ok(existsSync(repoPath(`${SCRATCH_DELTA_DIR}/superblock`)));
    assert.ok(existsSync(repoPath(`${S1_S2_DELTA_DIR}/superblock`)));
    assert.ok(existsSync(repoPath(DELTA_INDEX)));
    assert.equal(S1_S2_DELTA_DIR, 'deltas/P9/BAaSnoORD8EAu46h2nV5lUm+Tl0s8_+9KSBU2pNqM-LW823s3wgjLN27gsBJOtHPmeXIyPPOh9KIZFcBJ0EZ8');
  });

  test('mb64 round trips, and the alphabet is base64 with _ for / and no padding', () => {
    const rnd = prng(7);
    let sawPlus = false;
    let sawUnderscore = false;
    for (let i = 0; i < 2000; i++) {
      const raw = Buffer.from(Array.from({ length: 32 }, () => Math.floor(rnd() * 256)));
      const hex = raw.toString('hex');
      const m = checksumToMb64(hex);
      assert.equal(m.length, 43);
      assert.match(m, /^[A-Za-z0-9+_]{43}$/);
      assert.equal(m, raw.toString('base64').slice(0, 43).replace(/\//g, '_'));
      assert.equal(checksumFromMb64(m), hex);
      sawPlus ||= m.includes('+');
      sawUnderscore ||= m.includes('_');
    }
    assert.ok(sawPlus && sawUnderscore);
    for (const hex of ['0'.repeat(64), 'f'.repeat(64)]) assert.equal(checksumFromMb64(checksumToMb64(hex)), hex);
    assert.equal(checksumToMb64('f'.repeat(64)), '_'.repeat(42) + '8');
    assert.equal(checksumToMb64('0'.repeat(64)), 'A'.repeat(43));
  });

  test('mb64 refusals', () => {
    for (const bad of [
      '',
      S1_MB64.slice(0, 42), // too short
      S1_MB64 + 'A', // too long
      S1_MB64 + '=', // padding
      S1_MB64.replace('_', '/'), // standard base64 '/'
      S1_MB64.replace('+', '-'), // base64url '-'
      S1_MB64.replace('+', ' '), // '+' decoded to a space
      S1_MB64.slice(0, 42) + 'N', // non-canonical: spare bits set (would alias S1)
      S1_MB64.slice(0, 42) + 'P',
      S1_MB64.slice(0, 20) + '.' + S1_MB64.slice(21),
      S1_MB64.slice(0, 20) + '\0' + S1_MB64.slice(21),
      '../' + S1_MB64.slice(3),
      S1, // hex is not mb64
    ]) {
      assert.throws(() => checksumFromMb64(bad), invalidChecksum, JSON.stringify(bad));
    }
    assert.throws(() => checksumToMb64('xyz'), invalidChecksum);
    assert.throws(() => checksumToMb64(S1.toUpperCase()), invalidChecksum);
  });

  test('hex validation', () => {
    assert.ok(isChecksum(S1));
    assert.equal(validateChecksum(S2), S2);
    for (const bad of ['', S1.slice(1), S1 + '0', S1.toUpperCase(), S1.slice(0, 63) + 'g', ` ${S1.slice(1)}`, `${S1}\n`, S1.slice(0, 63) + '\0', '../' + S1.slice(3)]) {
      assert.equal(isChecksum(bad), false, JSON.stringify(bad));
      assert.throws(() => validateChecksum(bad), invalidChecksum, JSON.stringify(bad));
      assert.throws(() => checksumToBytes(bad), invalidChecksum);
    }
  });

  test('raw bytes <-> hex', () => {
    const raw = checksumToBytes(S1);
    assert.equal(raw.length, 32);
    assert.equal(raw[0], 0x3f);
    assert.equal(checksumFromBytes(raw), S1);
    for (const n of [0, 31, 33, 64]) assert.throws(() => checksumFromBytes(Buffer.alloc(n)), invalidChecksum, `${n} bytes`);
  });

  test('sha256Hex hashes the concatenation of its parts and names metadata objects', () => {
    assert.equal(sha256Hex(Buffer.alloc(0)), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(sha256Hex(Buffer.from('ab'), new Uint8Array([0x63])), createHash('sha256').update('abc').digest('hex'));
    assert.equal(sha256Hex(Buffer.from([0])), '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d', 'the empty dirtree');
    for (const o of OBJECTS.filter((x) => x.ext === 'commit' || x.ext === 'dirtree' || x.ext === 'dirmeta')) {
      assert.equal(sha256Hex(readFileSync(objectPath(o))), o.checksum, o.what);
    }
  });
});
