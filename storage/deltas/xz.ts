/**
 * xz for static delta parts (the `'x'` compression byte).
 *
 * Library: node-liblzma (liblzma through N-API). It ships prebuilt binaries, so
 * it works although npm does not run its install scripts. (`@napi-rs/lzma`
 * was rejected: its xz output was not compressed at all.)
 *
 * Decompression is bounded: parts come from the network or from disk written by
 * someone else, so an "xz bomb" must stop at the size the caller allows (derived
 * from the superblock), not at whatever the stream claims.
 */
import { check, createUnxz, createXz } from 'node-liblzma';
import { CairnError } from '../errors';
import { CancelledError, signalGate, throwIfCancelled, type NativeGate } from './cancel';

/**
 * ostree compresses parts with liblzma's easy encoder at preset 8 (32 MiB
 * dictionary, which covers a whole 32 MB part). We use the same, so the
 * client's decoder needs no more memory than for ostree's own deltas.
 */
export const XZ_PRESET = 8;

/** xz magic: FD 37 7A 58 5A 00 */
const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

export interface XzCompressOptions {
  preset?: number;
  /** Checked between input chunks: an aborted signal stops the encoder after the chunk in flight (CancelledError). */
  signal?: AbortSignal;
  /** Brackets the native encoder's life (see cancel.ts): no thread termination while it works. */
  gate?: NativeGate;
}

/**
 * Input fed to the encoder per step: the unit of cancellation latency (about
 * 0.2–0.5 s at preset 8 on a slow core). The encoder's output does not depend
 * on how its input is split, so parts stay byte-for-byte what a one-shot
 * compression gives (a test holds this).
 */
const XZ_INPUT_CHUNK = 1 << 20;

export async function xzCompress(data: Buffer, opts: XzCompressOptions | number = {}): Promise<Buffer> {
  const o = typeof opts === 'number' ? { preset: opts } : opts;
  const gate = o.gate ?? signalGate(o.signal);
  throwIfCancelled(o.signal);
  gate.enter();
  try {
    return await encodeInChunks(data, o.preset ?? XZ_PRESET, o.signal);
  } finally {
    gate.leave();
  }
}

/**
 * One xz stream through node-liblzma's streaming encoder, one input chunk at a
 * time: each write's callback comes when the addon has finished that chunk, so
 * between two chunks nothing native is in flight, and a cancel stops there
 * (the engine is closed, freeing liblzma's state, before the error is thrown).
 */
function encodeInChunks(data: Buffer, preset: number, signal: AbortSignal | undefined): Promise<Buffer> {
  // No xz integrity check (ostree writes CRC64): the part's SHA-256 in the
  // superblock already covers every byte, and 8 bytes per part are saved.
  // liblzma's stream decoder, as the client uses it, accepts check type None.
  const enc = createXz({ preset, check: check.NONE });
  return new Promise<Buffer>((resolve, reject) => {
    const out: Buffer[] = [];
    let size = 0;
    let done = false;
    const fail = (e: unknown) => {
      if (done) return;
      done = true;
      enc.removeAllListeners('data');
      enc.close();
      reject(e instanceof Error ? e : new Error(String(e)));
    };
    enc.on('data', (...args: unknown[]) => {
      const c = args[0] as Buffer;
      out.push(c);
      size += c.length;
    });
    enc.on('error', (...args: unknown[]) => fail(args[0]));
    enc.on('end', () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(out, size));
    });
    let off = 0;
    const next = (): void => {
      if (done) return;
      if (signal?.aborted) return fail(new CancelledError());
      if (off >= data.length) {
        enc.end();
        return;
      }
      const chunk = data.subarray(off, Math.min(data.length, off + XZ_INPUT_CHUNK));
      off += chunk.length;
      enc.write(chunk, (err?: Error | null) => (err ? fail(err) : next()));
    };
    next();
  });
}

function corrupt(why: string): never {
  throw new CairnError('INVALID_OBJECT', `delta part: corrupt xz data (${why})`);
}

/** xz variable-length integer (up to 9 bytes, 7 bits each, low group first). */
function readVli(buf: Buffer, at: number, end: number): [number, number] {
  let value = 0;
  for (let i = 0; i < 9; i++) {
    if (at + i >= end) corrupt('truncated index');
    const b = buf[at + i]!;
    value += (b & 0x7f) * 2 ** (7 * i);
    if (!(b & 0x80)) {
      if (i > 0 && b === 0) corrupt('non-minimal integer in index');
      if (value > Number.MAX_SAFE_INTEGER) corrupt('index value out of range');
      return [value, at + i + 1];
    }
  }
  return corrupt('integer too long in index');
}

/**
 * Reads the framing of a single xz stream (header, footer, index) and returns
 * the uncompressed size the index declares. liblzma checks the CRCs and that
 * the index matches the blocks while decoding; what it does not tell us through
 * the binding is whether the stream *ended*, so a truncated stream or trailing
 * bytes are caught here: the blocks the index lists plus header, index and
 * footer must add up to exactly the input length.
 */
export function xzDeclaredSize(data: Buffer): number {
  if (data.length < 12 + 12 + 8 || !data.subarray(0, XZ_MAGIC.length).equals(XZ_MAGIC)) corrupt('not an xz stream');
  const footer = data.length - 12;
  if (data[footer + 10] !== 0x59 || data[footer + 11] !== 0x5a) corrupt('no stream footer (truncated or trailing bytes)');
  if (data.readUInt16LE(6) !== data.readUInt16LE(footer + 8)) corrupt('stream flags of header and footer differ');
  const indexSize = (data.readUInt32LE(footer + 4) + 1) * 4;
  const indexStart = footer - indexSize;
  if (indexStart < 12) corrupt('index larger than the stream');
  if (data[indexStart] !== 0x00) corrupt('no index indicator');
  const indexEnd = footer - 4; // CRC32 of the index follows the records and padding
  let [records, at] = readVli(data, indexStart + 1, indexEnd);
  let blocks = 0;
  let uncompressed = 0;
  for (; records > 0; records--) {
    let unpadded: number;
    let size: number;
    [unpadded, at] = readVli(data, at, indexEnd);
    [size, at] = readVli(data, at, indexEnd);
    blocks += Math.ceil(unpadded / 4) * 4;
    uncompressed += size;
    if (blocks > data.length || uncompressed > Number.MAX_SAFE_INTEGER) corrupt('index sizes out of range');
  }
  // Records end, then 0-3 zero bytes pad the index to a multiple of 4.
  if (indexEnd - at > 3) corrupt('index longer than its records');
  for (; at < indexEnd; at++) if (data[at] !== 0) corrupt('bad index padding');
  if (12 + blocks + indexSize + 12 !== data.length) corrupt('blocks do not fill the stream (truncated or trailing bytes)');
  return uncompressed;
}

/**
 * Decompresses one complete xz stream. Its declared (index) size must be at most
 * `maxSize` (else TOO_LARGE, before any work), and the decoder is stopped as
 * soon as it produces more than that declared size; anything that is not one
 * valid, complete xz stream is INVALID_OBJECT.
 */
export async function xzDecompress(data: Buffer, maxSize: number): Promise<Buffer> {
  const declared = xzDeclaredSize(data);
  if (declared > maxSize) throw new CairnError('TOO_LARGE', `delta part declares ${declared} uncompressed bytes, limit ${maxSize}`, { limit: maxSize });
  const out = await boundedUnxz(data, declared);
  if (out.length !== declared) corrupt(`decompressed to ${out.length} bytes, index declares ${declared}`);
  return out;
}

function boundedUnxz(data: Buffer, maxSize: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const unxz = createUnxz();
    const chunks: Buffer[] = [];
    let total = 0;
    let settled = false;
    const fail = (e: CairnError) => {
      if (settled) return;
      settled = true;
      unxz.removeAllListeners('data');
      unxz.destroy();
      reject(e);
    };
    unxz.on('data', (...args: unknown[]) => {
      const chunk = args[0] as Buffer;
      total += chunk.length;
      if (total > maxSize) {
        fail(new CairnError('TOO_LARGE', `delta part decompresses past its limit of ${maxSize} bytes`, { limit: maxSize }));
        return;
      }
      chunks.push(chunk);
    });
    unxz.on('error', (...args: unknown[]) => fail(new CairnError('INVALID_OBJECT', `delta part: corrupt xz data (${(args[0] as Error)?.message})`)));
    unxz.on('end', () => {
      if (settled) return;
      settled = true;
      resolve(Buffer.concat(chunks, total));
    });
    unxz.end(data);
  });
}
