import { CairnError } from '../errors';
import { compareBuffers } from './names';

/** One extended attribute; `name` is stored in OSTree with its trailing NUL, which we add and strip here. */
export interface Xattr {
  name: string;
  value: Buffer;
}

export const XATTRS_TYPE = 'a(ayay)';

export function encodeXattrs(xattrs: readonly Xattr[]): Array<[Buffer, Buffer]> {
  const out = xattrs.map((x): [Buffer, Buffer] => [Buffer.from(x.name + '\0', 'utf8'), x.value]);
  // OSTree sorts xattrs by name bytes (the NUL terminator does not change the order).
  out.sort((a, b) => compareBuffers(a[0], b[0]));
  return out;
}

export function decodeXattrs(raw: Array<[Buffer, Buffer]>): Xattr[] {
  return raw.map(([name, value]) => {
    if (name.length < 2 || name[name.length - 1] !== 0 || name.subarray(0, -1).includes(0)) {
      throw new CairnError('INVALID_OBJECT', 'xattr name must be non-empty and NUL-terminated');
    }
    return { name: name.subarray(0, -1).toString('utf8'), value: Buffer.from(value) };
  });
}

export function checkXattrsSorted(raw: Array<[Buffer, Buffer]>): void {
  for (let i = 1; i < raw.length; i++) {
    if (compareBuffers(raw[i - 1]![0], raw[i]![0]) >= 0) throw new CairnError('INVALID_OBJECT', 'xattrs are not sorted by name or repeat a name');
  }
}
