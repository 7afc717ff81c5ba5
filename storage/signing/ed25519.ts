/**
 * Ed25519 keys and signatures as OSTree's `ostree.sign.ed25519` expects them:
 * pure Ed25519 (libsodium `crypto_sign_detached`, no prehash) over the exact
 * bytes, 64-byte signatures, and keys in libsodium's text forms — the secret
 * key is base64(seed ‖ public key), 64 bytes; the public key is base64 of its
 * 32 bytes (what `verification-ed25519-key=` and `ed25519.pub` hold).
 *
 * node:crypto does the arithmetic; it only speaks DER, so raw keys are wrapped
 * in the fixed PKCS#8 / SPKI prefixes for the Ed25519 OID (1.3.101.112).
 */

import * as crypto from 'node:crypto';
import { CairnError } from '../errors';

export const ED25519_SEED_BYTES = 32;
export const ED25519_PUBLIC_KEY_BYTES = 32;
export const ED25519_SECRET_KEY_BYTES = 64;
export const ED25519_SIGNATURE_BYTES = 64;

const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface Ed25519KeyPair {
  /** The 32-byte private seed (libsodium's secret key is seed ‖ publicKey). */
  readonly seed: Buffer;
  readonly publicKey: Buffer;
  /** node:crypto handle for the seed, built once. */
  readonly privateKey: crypto.KeyObject;
}

export function generateEd25519KeyPair(): Ed25519KeyPair {
  return ed25519KeyPairFromSeed(crypto.randomBytes(ED25519_SEED_BYTES));
}

export function ed25519KeyPairFromSeed(seed: Buffer): Ed25519KeyPair {
  if (seed.length !== ED25519_SEED_BYTES) {
    throw new CairnError('INVALID_ARGUMENT', `an ed25519 seed is ${ED25519_SEED_BYTES} bytes, not ${seed.length}`);
  }
  const privateKey = crypto.createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const spki = crypto.createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return { seed: Buffer.from(seed), publicKey: spki.subarray(SPKI_PREFIX.length), privateKey };
}

/**
 * Strict base64 of exactly `bytes` bytes. Buffer.from(…, 'base64') silently
 * skips garbage, which would turn a damaged key file into a different key.
 */
function decodeBase64Exact(text: string, bytes: number, what: string): Buffer {
  const s = text.trim();
  const buf = Buffer.from(s, 'base64');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(s) || buf.toString('base64') !== s || buf.length !== bytes) {
    throw new CairnError('INVALID_ARGUMENT', `${what} must be base64 of exactly ${bytes} bytes`);
  }
  return buf;
}

/** Parses libsodium's secret key text, base64(seed ‖ pk), and checks that pk belongs to seed. */
export function parseEd25519SecretKey(text: string | Buffer): Ed25519KeyPair {
  const raw = decodeBase64Exact(text.toString(), ED25519_SECRET_KEY_BYTES, 'an ed25519 secret key');
  const pair = ed25519KeyPairFromSeed(raw.subarray(0, ED25519_SEED_BYTES));
  if (!pair.publicKey.equals(raw.subarray(ED25519_SEED_BYTES))) {
    // libsodium would sign with the stale half and produce signatures nobody can verify.
    throw new CairnError('INVALID_ARGUMENT', 'ed25519 secret key: the public half does not belong to the seed');
  }
  return pair;
}

export function formatEd25519SecretKey(pair: Ed25519KeyPair): string {
  return Buffer.concat([pair.seed, pair.publicKey]).toString('base64') + '\n';
}

/** Parses base64 of a raw 32-byte public key (one line, as in `verification-ed25519-file`). */
export function parseEd25519PublicKey(text: string | Buffer): Buffer {
  return decodeBase64Exact(text.toString(), ED25519_PUBLIC_KEY_BYTES, 'an ed25519 public key');
}

export function formatEd25519PublicKey(publicKey: Buffer): string {
  if (publicKey.length !== ED25519_PUBLIC_KEY_BYTES) {
    throw new CairnError('INVALID_ARGUMENT', `an ed25519 public key is ${ED25519_PUBLIC_KEY_BYTES} bytes, not ${publicKey.length}`);
  }
  return publicKey.toString('base64') + '\n';
}

/** Pure Ed25519 over the exact bytes: deterministic, 64 bytes. */
export function ed25519Sign(pair: Ed25519KeyPair, data: Buffer): Buffer {
  return crypto.sign(null, data, pair.privateKey);
}

/**
 * True when `signature` is a valid signature of `data` by `publicKey`, false
 * when it is not. A signature or key of the wrong length is malformed input
 * rather than a mismatch (the ostree client fails hard on it too), so it
 * throws.
 */
export function ed25519Verify(publicKey: Buffer, data: Buffer, signature: Buffer): boolean {
  if (publicKey.length !== ED25519_PUBLIC_KEY_BYTES) {
    throw new CairnError('INVALID_ARGUMENT', `an ed25519 public key is ${ED25519_PUBLIC_KEY_BYTES} bytes, not ${publicKey.length}`);
  }
  if (signature.length !== ED25519_SIGNATURE_BYTES) {
    throw new CairnError('INVALID_ARGUMENT', `an ed25519 signature is ${ED25519_SIGNATURE_BYTES} bytes, not ${signature.length}`);
  }
  let key: crypto.KeyObject;
  try {
    key = crypto.createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
  } catch {
    // Not every 32-byte string is a curve point; such a key verifies nothing.
    return false;
  }
  return crypto.verify(null, data, key, signature);
}
