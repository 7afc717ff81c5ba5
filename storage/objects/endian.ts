/**
 * OSTree stores some integers "big-endian inside a little-endian GVariant":
 * it byte-swaps them (GUINT32_TO_BE) before serializing. These helpers apply
 * that swap to the values our codec reads and writes (marked [BE] in FORMATS.md).
 */
export function bswap32(n: number): number {
  return (((n & 0xff) << 24) | ((n & 0xff00) << 8) | ((n >>> 8) & 0xff00) | ((n >>> 24) & 0xff)) >>> 0;
}

export function bswap64(n: bigint): bigint {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, n));
  return b.readBigUInt64BE();
}
