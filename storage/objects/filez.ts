import { Readable } from 'node:stream';
import { createDeflateRaw, createInflateRaw, inflateRawSync } from 'node:zlib';
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

const INFLATE_CHUNK = 256 * 1024;

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
  let parsed: ParsedHead | undefined;
  while (!parsed) {
    const { value, done } = await it.next();
    head = done ? head : Buffer.concat([head, Buffer.from(value)]);
    parsed = parseHead(head, !!done, opts);
  }
  const { header, size, bodyOffset } = parsed;
  const hasher = new ContentHasher(header);
  const rest = head.subarray(bodyOffset);

  if (isSymlink(header)) {
    if (rest.length > 0) throw symlinkWithBody();
    const { done } = await it.next();
    if (!done) throw symlinkWithBody();
    return { checksum: hasher.digest(), header, size: 0 };
  }

  // Default finishFlush (Z_FINISH): a deflate stream cut short is an error, not a short file.
  // Output in 256 KiB pieces, not zlib's 16 KiB: each piece is a round trip through libuv's thread
  // pool, where it queues behind every other upload's file writes and fsyncs (an 8 MB object took
  // ~1,000 of them).
  const inflate = createInflateRaw({ chunkSize: INFLATE_CHUNK });
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
  try {
    for await (const chunk of inflate) {
      const b = chunk as Buffer;
      produced += b.length;
      if (produced > size) throw inflatesPast(size);
      hasher.update(b);
      opts.onData?.(b);
    }
  } catch (e) {
    inflate.destroy();
    release();
    if (e instanceof CairnError) throw e;
    throw corrupt(e);
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
  if (produced !== size) throw wrongSize(produced, size);
  return { checksum: hasher.digest(), header, size };
}

/**
 * Largest declared file size verifyFilezBytes inflates in one piece (the
 * inflated file is held whole for an instant); beyond it, it streams.
 */
export const MAX_ONE_PIECE_INFLATE = 16 * 1024 * 1024;

/**
 * verifyFilez for a whole `.filez` already in memory: the same checks, the
 * same errors, and the same answer (a test holds the two to each other), done
 * in one synchronous inflate when the declared size is at most
 * MAX_ONE_PIECE_INFLATE (no streams: a small object costs a few
 * microseconds, not a zlib stream's set-up), else by verifyFilez itself.
 * Runs unchanged on the calling thread or in a worker thread.
 */
export async function verifyFilezBytes(data: Buffer, opts: { maxSize?: number } = {}): Promise<VerifiedContent> {
  const parsed = parseHead(data, true, opts)!;
  if (parsed.size > MAX_ONE_PIECE_INFLATE) return verifyFilez([data], opts);
  const { content: _content, ...verified } = inflateParsed(data, parsed);
  return verified;
}

/**
 * A whole `.filez` checked as verifyFilezBytes does, with its file content:
 * for readers that need the bytes (a symlink's content is empty). The
 * declared size must be at most MAX_ONE_PIECE_INFLATE (TOO_LARGE otherwise:
 * stream those with verifyFilez and its onData).
 */
export function inflateFilezBytes(data: Buffer, opts: { maxSize?: number } = {}): VerifiedContent & { content: Buffer } {
  const parsed = parseHead(data, true, opts)!;
  if (parsed.size > MAX_ONE_PIECE_INFLATE) throw new CairnError('TOO_LARGE', `file of ${parsed.size} bytes is inflated in one piece only up to ${MAX_ONE_PIECE_INFLATE}`);
  return inflateParsed(data, parsed);
}

/** The one-piece check of a whole object whose head is parsed (see verifyFilezBytes). */
function inflateParsed(data: Buffer, { header, size, bodyOffset }: ParsedHead): VerifiedContent & { content: Buffer } {
  const hasher = new ContentHasher(header);
  const body = data.subarray(bodyOffset);
  if (isSymlink(header)) {
    if (body.length > 0) throw symlinkWithBody();
    return { checksum: hasher.digest(), header, size: 0, content: Buffer.alloc(0) };
  }
  let out: { buffer: Buffer; engine: { bytesWritten: number } };
  try {
    // One byte over the declared size is enough to know it inflates past it (a bomb stops there).
    out = inflateRawSync(body, { info: true, maxOutputLength: size + 1 }) as unknown as typeof out;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw inflatesPast(size);
    throw corrupt(e);
  }
  // Input past what the inflater consumed came after the end of the deflate stream.
  const consumed = out.engine.bytesWritten;
  if (consumed < body.length) throw trailing(body.length - consumed, false);
  if (out.buffer.length > size) throw inflatesPast(size);
  if (out.buffer.length !== size) throw wrongSize(out.buffer.length, size);
  hasher.update(out.buffer);
  return { checksum: hasher.digest(), header, size, content: out.buffer };
}

type ParsedHead = ReturnType<typeof decodeArchiveHeader>;

/**
 * The archive header at the start of `head` once it is all there (else
 * undefined, unless `ended`: then it is truncated), with the size limit
 * applied. The one reading of a head, for the streaming and one-piece checks.
 */
function parseHead(head: Buffer, ended: boolean, opts: { maxSize?: number }): ParsedHead | undefined {
  let parsed: ParsedHead | undefined;
  if (head.length >= 8) {
    const need = 8 + head.readUInt32BE(0);
    if (need > 8 + MAX_ARCHIVE_HEADER) throw new CairnError('TOO_LARGE', 'archive file header too large');
    if (head.length >= need) parsed = decodeArchiveHeader(head);
  }
  if (!parsed) {
    if (ended) throw new CairnError('INVALID_OBJECT', 'archive file object truncated in its header');
    return undefined;
  }
  if (opts.maxSize !== undefined && parsed.size > opts.maxSize) throw new CairnError('TOO_LARGE', `file of ${parsed.size} bytes exceeds the limit of ${opts.maxSize}`);
  return parsed;
}

// The refusals, worded once for both checks.
const symlinkWithBody = () => new CairnError('INVALID_OBJECT', 'symlink object with a body');
const inflatesPast = (size: number) => new CairnError('INVALID_OBJECT', `content inflates past its declared size of ${size} bytes`);
const wrongSize = (produced: number, size: number) => new CairnError('INVALID_OBJECT', `content inflates to ${produced} bytes, header declares ${size}`);
const corrupt = (e: unknown) => new CairnError('INVALID_OBJECT', `corrupt compressed content: ${(e as Error).message}`);
const trailing = (n: number, atLeast: boolean) => new CairnError('INVALID_OBJECT', `${atLeast ? 'at least ' : ''}${n} bytes of trailing data after the compressed content`);

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
