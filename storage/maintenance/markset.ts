/**
 * A set of object checksums packed into one Buffer, for the mark phase of
 * garbage collection and the walks of prune and fsck over repositories of
 * millions of objects: a JS Set of 64-character strings costs ~150 bytes an
 * entry (and a GC-visible object each); this costs 16 bytes a slot.
 *
 * An entry is an object: its type (one byte) and the first 15 bytes (120
 * bits) of its SHA-256 checksum, so a dirtree and a dirmeta that happened to
 * share a checksum stay two entries. Open addressing with linear probing; the
 * table doubles when it is half full, so a set of 1 M objects takes 2^21
 * slots = 32 MiB. Two different objects sharing a 120-bit prefix (about
 * 2^-80 for a million objects) would make one of them look marked: a
 * collector then keeps an unreachable object, never the reverse. The
 * all-zero key is the empty slot's marker and is kept aside.
 */
const KEY_BYTES = 16;
const MIN_SLOTS = 1 << 12;

export class MarkSet {
  private table: Buffer;
  private mask: number;
  private count = 0;
  private zero = false;
  private readonly key = Buffer.alloc(KEY_BYTES);

  constructor(expected = 0) {
    let slots = MIN_SLOTS;
    while (slots < expected * 2) slots *= 2;
    this.table = Buffer.alloc(slots * KEY_BYTES);
    this.mask = slots - 1;
  }

  /** Entries in the set. */
  get size(): number {
    return this.count + (this.zero ? 1 : 0);
  }

  /** Bytes the table holds (what the set costs in memory). */
  get bytes(): number {
    return this.table.length;
  }

  /** Adds an object (checksum: 64 lowercase hex; type: ObjectType's number); true when it was not in the set yet. */
  add(checksum: string, type: number): boolean {
    const k = this.load(checksum, type);
    if (k === null) {
      if (this.zero) return false;
      this.zero = true;
      return true;
    }
    if ((this.count + 1) * 2 > this.mask + 1) this.grow();
    return this.insert(this.table, this.mask, k);
  }

  has(checksum: string, type: number): boolean {
    const k = this.load(checksum, type);
    if (k === null) return this.zero;
    const t = this.table;
    for (let i = k.readUInt32LE(0) & this.mask; ; i = (i + 1) & this.mask) {
      const off = i * KEY_BYTES;
      if (isEmpty(t, off)) return false;
      if (t.compare(k, 0, KEY_BYTES, off, off + KEY_BYTES) === 0) return true;
    }
  }

  /** The key of the object in this.key, or null for the all-zero key. */
  private load(checksum: string, type: number): Buffer | null {
    if (this.key.write(checksum.slice(0, (KEY_BYTES - 1) * 2), 0, KEY_BYTES - 1, 'hex') !== KEY_BYTES - 1) throw new Error(`not a checksum: ${checksum.slice(0, 80)}`);
    this.key[KEY_BYTES - 1] = type;
    return isEmpty(this.key, 0) ? null : this.key;
  }

  private insert(t: Buffer, mask: number, k: Buffer, koff = 0): boolean {
    for (let i = k.readUInt32LE(koff) & mask; ; i = (i + 1) & mask) {
      const off = i * KEY_BYTES;
      if (isEmpty(t, off)) {
        k.copy(t, off, koff, koff + KEY_BYTES);
        this.count++;
        return true;
      }
      if (t.compare(k, koff, koff + KEY_BYTES, off, off + KEY_BYTES) === 0) return false;
    }
  }

  private grow(): void {
    const old = this.table;
    const slots = (this.mask + 1) * 2;
    this.table = Buffer.alloc(slots * KEY_BYTES);
    this.mask = slots - 1;
    this.count = 0;
    for (let off = 0; off < old.length; off += KEY_BYTES) if (!isEmpty(old, off)) this.insert(this.table, this.mask, old, off);
  }
}

function isEmpty(b: Buffer, off: number): boolean {
  return (b.readUInt32LE(off) | b.readUInt32LE(off + 4) | b.readUInt32LE(off + 8) | b.readUInt32LE(off + 12)) === 0;
}
