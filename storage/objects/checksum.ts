import { createHash } from 'node:crypto';
import { CairnError } from '../errors';

const HEX64 = /^[0-9a-f]{64}$/;

export function isChecksum(s: string): boolean {
  return HEX64.test(s);
}

export function validateChecksum(s: string): string {
  if (!HEX64.test(s)) throw new CairnError('INVALID_CHECKSUM', `invalid checksum "${s.slice(0, 80)}": need 64 lowercase hex digits`);
  return s;
}

export function sha256Hex(...parts: Array<Buffer | Uint8Array>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** Raw 32-byte checksum (`ay` inside GVariants) to hex. */
export function checksumFromBytes(b: Buffer): string {
  if (b.length !== 32) throw new CairnError('INVALID_CHECKSUM', `checksum must be 32 bytes, got ${b.length}`);
  return b.toString('hex');
}

export function checksumToBytes(hex: string): Buffer {
  return Buffer.from(validateChecksum(hex), 'hex');
}

/**
 * OSTree's "modified base64" for delta paths: standard base64 without '=' padding
 * and with '/' written as '_' ('+' is kept).
 */
export function checksumToMb64(hex: string): string {
  return checksumToBytes(hex).toString('base64').replace(/=+$/, '').replace(/\//g, '_');
}

export function checksumFromMb64(mb64: string): string {
  if (!/^[A-Za-z0-9+_]{43}$/.test(mb64)) throw new CairnError('INVALID_CHECKSUM', `invalid modified-base64 checksum "${mb64.slice(0, 80)}"`);
  const hex = checksumFromBytes(Buffer.from(mb64.replace(/_/g, '/') + '=', 'base64'));
  // 43 characters carry 258 bits: the last one's 2 spare bits must be zero, or
  // several names would alias the same checksum.
  if (checksumToMb64(hex) !== mb64) throw new CairnError('INVALID_CHECKSUM', `non-canonical modified-base64 checksum "${mb64}"`);
  return hex;
}
