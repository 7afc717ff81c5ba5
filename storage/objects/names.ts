import { CairnError } from '../errors';

export function compareBuffers(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b);
}

/** strcmp order of UTF-8 names: dirtree entries and summary refs are binary-searched in this order. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** ot_util_filename_validate: a single path component. */
export function validateFilename(name: string): void {
  if (name.length === 0) throw new CairnError('INVALID_OBJECT', 'empty file name');
  if (name === '.' || name === '..') throw new CairnError('INVALID_OBJECT', `illegal file name "${name}"`);
  if (name.includes('/') || name.includes('\0')) throw new CairnError('INVALID_OBJECT', `illegal character in file name "${name.slice(0, 80)}"`);
}
