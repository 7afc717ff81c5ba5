import { Readable } from 'node:stream';
import { createDeflateRaw, createInflateRaw } from 'node:zlib';
import { CairnError } from '../errors';
import { ContentHasher, decodeArchiveHeader, encodeArchiveHeader, isSymlink, MAX_ARCHIVE_HEADER, type FileHeader } from './content';

/** ostree compresses archive content with zlib level 6, raw deflate (no zlib/gzip wrapper). */
export const FILEZ_DEFLATE_LEVEL = 6;

/**
 * The bytes of an archive `.filez` object for a file of `size` bytes read from
 * `data` (ignored for symlinks, which have no body). Streams: the file is never held whole.
 */
export async function* encodeFilez(
  header: FileHeader,
  size: number,
  data: AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer | Uint8Array> | null,
): AsyncIterable<Buffer> {
  yield encodeArchiveHeader(header, isSymlink(header) ? 0 : size);
  if (isSymlink(header)) return;
  const deflate = createDeflateRaw({ level: FILEZ_DEFLATE_LEVEL });
  const input = Readable.from(data ?? [], { objectMode: false });
  input.on('error', (e) => deflate.destroy(e));
  input.pipe(deflate);
  for await (const chunk of deflate) yield chunk as Buffer;
}

export interface VerifiedContent {
  checksum: string;
  header: FileHeader;
  size: number;
}

/**
 * Reads a `.filez` stream, inflating it under a hard limit of the size its
 * header declares (so a decompression bomb stops at that size), and returns
 * its real content checksum. Throws INVALID_OBJECT on any inconsistency.
 * `onData` sees the uncompressed file bytes (e.g. to check them out).
 */
export async function verifyFilez(
  source: AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer | Uint8Array>,
  opts: { maxSize?: number; onData?: (chunk: Buffer) => void } = {},
): Promise<VerifiedContent> {
  const it = toAsyncIterator(source);
  let head = Buffer.alloc(0);
  let parsed: ReturnType<typeof decodeArchiveHeader> | undefined;
  while (!parsed) {
    const { value, done } = await it.next();
    if (done) {
      if (head.length >= 8 && head.readUInt32BE(0) + 8 <= head.length) parsed = decodeArchiveHeader(head);
      else throw new CairnError('INVALID_OBJECT', 'archive file object truncated in its header');
      break;
    }
    head = Buffer.concat([head, Buffer.from(value)]);
    if (head.length >= 8) {
      const need = 8 + head.readUInt32BE(0);
      if (need > 8 + MAX_ARCHIVE_HEADER) throw new CairnError('TOO_LARGE', 'archive file header too large');
      if (head.length >= need) parsed = decodeArchiveHeader(head);
    }
  }
  const { header, size, bodyOffset } = parsed;
  if (opts.maxSize !== undefined && size > opts.maxSize) throw new CairnError('TOO_LARGE', `file of ${size} bytes exceeds the limit of ${opts.maxSize}`);
  const hasher = new ContentHasher(header);
  const rest = head.subarray(bodyOffset);

  if (isSymlink(header)) {
    if (rest.length > 0) throw new CairnError('INVALID_OBJECT', 'symlink object with a body');
    const { done } = await it.next();
    if (!done) throw new CairnError('INVALID_OBJECT', 'symlink object with a body');
    return { checksum: hasher.digest(), header, size: 0 };
  }

  // Default finishFlush (Z_FINISH): a deflate stream cut short is an error, not a short file.
  const inflate = createInflateRaw();
  // zlib stops at the end of the deflate stream: from then on it takes no more
  // input (its readable side ends, the for-await below destroys it, and a
  // write still queued never gets its 'drain'). So the feeder waits for room
  // *or* for the inflater to be done, and stops feeding once it is: whatever
  // input is left over is trailing data behind a valid object (it would be
  // stored and served), refused.
  let inflaterDone = false;
  const markDone = () => void (inflaterDone = true);
  inflate.once('end', markDone);
  inflate.once('close', markDone);
  let produced = 0;
  let fed = 0;
  /** Input that came after the inflater was done (trailing data it never saw). */
  let extra = 0;
  const feed = async () => {
    try {
      const write = async (b: Buffer | Uint8Array) => {
        fed += b.length;
        if (!inflate.write(b)) await room(inflate, () => inflaterDone);
      };
      if (rest.length) await write(rest);
      for (;;) {
        // Read on even when the inflater is done: a next chunk is trailing data, the source's end is not.
        const { value, done } = await it.next();
        if (done) break;
        if (value.length === 0) continue;
        if (inflaterDone) {
          extra += value.length;
          return;
        }
        await write(value);
      }
      if (!inflaterDone) inflate.end();
    } catch (e) {
      inflate.destroy(e as Error);
    }
  };
  const feeding = feed();
  /** Gives the source back without waiting for it (a pending read may wait on a slow or stalled peer). */
  const release = () => void Promise.resolve(it.return?.()).catch(() => undefined);
  const trailing = (n: number, atLeast: boolean) =>
    new CairnError('INVALID_OBJECT', `${atLeast ? 'at least ' : ''}${n} bytes of trailing data after the compressed content`);
  try {
    for await (const chunk of inflate) {
      const b = chunk as Buffer;
      produced += b.length;
      if (produced > size) throw new CairnError('INVALID_OBJECT', `content inflates past its declared size of ${size} bytes`);
      hasher.update(b);
      opts.onData?.(b);
    }
  } catch (e) {
    inflate.destroy();
    release();
    if (e instanceof CairnError) throw e;
    throw new CairnError('INVALID_OBJECT', `corrupt compressed content: ${(e as Error).message}`);
  }
  // The inflater's output ended. bytesWritten counts only the input it
  // consumed: input fed beyond it came after the end of the deflate stream.
  // Known now, so refused now, without waiting for the rest of the source.
  if (inflate.bytesWritten < fed) {
    release();
    throw trailing(fed - inflate.bytesWritten, true);
  }
  // Else the feeder ends at the source's end, or at its next chunk (trailing data).
  await feeding;
  if (extra > 0) {
    release();
    throw trailing(extra, true);
  }
  if (inflate.bytesWritten !== fed) throw trailing(fed - inflate.bytesWritten, false);
  if (produced !== size) throw new CairnError('INVALID_OBJECT', `content inflates to ${produced} bytes, header declares ${size}`);
  return { checksum: hasher.digest(), header, size };
}

/**
 * Resolves when `s` can take more input, or when it is done (ended, closed or
 * destroyed): a stream that is done never emits the 'drain' a writer waits for.
 */
function room(s: NodeJS.ReadWriteStream, isDone: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    if (isDone()) return resolve();
    const done = () => {
      s.off('drain', done);
      s.off('end', done);
      s.off('close', done);
      resolve();
    };
    s.once('drain', done);
    s.once('end', done);
    s.once('close', done);
  });
}

function toAsyncIterator<T>(source: AsyncIterable<T> | Iterable<T>): AsyncIterator<T> {
  if (Symbol.asyncIterator in source) return (source as AsyncIterable<T>)[Symbol.asyncIterator]();
  return (async function* () {
    yield* source as Iterable<T>;
  })();
}
