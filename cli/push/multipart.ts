import { randomBytes } from 'node:crypto';

/** One file part: the field name is the object name, the bytes come from `open()` (a fresh stream per attempt). */
export interface UploadPart {
  name: string;
  size: number;
  open(): AsyncIterable<Uint8Array>;
}

/** A part whose stream does not hold the bytes its size promised: the local file changed under us. */
export class LocalObjectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LocalObjectError';
  }
}

export interface Multipart {
  contentType: string;
  /** Exact body length, so the server (and proxies) see a Content-Length, not chunks. */
  length: number;
  body: AsyncIterable<Uint8Array>;
}

const CRLF = '\r\n';

export function newBoundary(): string {
  return `cairn-push-${randomBytes(12).toString('hex')}`;
}

function partHeader(boundary: string, name: string): Buffer {
  // Object names are [0-9a-f]{64}.[a-z]+: nothing to escape. `filename` makes
  // multer treat the part as a file (streamed to disk), not a text field.
  return Buffer.from(
    `--${boundary}${CRLF}Content-Disposition: form-data; name="${name}"; filename="${name}"${CRLF}` +
      `Content-Type: application/octet-stream${CRLF}${CRLF}`,
  );
}

/** Parts up to this size are read ahead, several at once, and sent coalesced. */
const SMALL_PART_BYTES = 1024 * 1024;
/** Small parts being read ahead of the connection at most. */
const READ_AHEAD_PARTS = 16;
/** Pieces of the body are gathered up to about this size before they are handed to the connection. */
const COALESCE_BYTES = 64 * 1024;

/**
 * A multipart/form-data body streamed part by part from the parts' sources.
 * `onBytes` sees every file byte as it is read (progress). Small parts are
 * read a few ahead (their file reads overlap) and handed to the connection
 * gathered into pieces of ~64 KiB, not three little writes per object; a
 * large part streams chunk by chunk.
 */
export function multipartBody(parts: readonly UploadPart[], onBytes?: (n: number) => void, boundary = newBoundary()): Multipart {
  const headers = parts.map((p) => partHeader(boundary, p.name));
  const closing = Buffer.from(`--${boundary}--${CRLF}`);
  const crlf = Buffer.from(CRLF);
  const length = parts.reduce((n, p, i) => n + headers[i]!.length + p.size + CRLF.length, 0) + closing.length;
  async function* body(): AsyncIterable<Uint8Array> {
    const ahead = new Map<number, Promise<Buffer[]>>();
    let next = 0;
    const readAhead = (upTo: number) => {
      for (; next < parts.length && next <= upTo; next++) {
        if (parts[next]!.size > SMALL_PART_BYTES) continue;
        const p = gather(counted(parts[next]!, onBytes));
        p.catch(() => undefined); // awaited in order below; a failure is thrown from there
        ahead.set(next, p);
      }
    };
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const add = (b: Buffer) => {
      pending.push(b);
      pendingBytes += b.length;
    };
    const take = () => {
      const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      return out;
    };
    try {
      for (let i = 0; i < parts.length; i++) {
        readAhead(i + READ_AHEAD_PARTS);
        add(headers[i]!);
        const small = ahead.get(i);
        if (small) {
          ahead.delete(i);
          for (const c of await small) add(c);
        } else {
          yield take();
          for await (const c of counted(parts[i]!, onBytes)) yield c;
        }
        add(crlf);
        if (pendingBytes >= COALESCE_BYTES) yield take();
      }
      add(closing);
      yield take();
    } finally {
      ahead.clear();
    }
  }
  return { contentType: `multipart/form-data; boundary=${boundary}`, length, body: body() };
}

async function gather(src: AsyncIterable<Uint8Array>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const c of src) out.push(Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  return out;
}

/**
 * Streams a part and checks it holds exactly `size` bytes: with a declared
 * Content-Length, a short or long file would corrupt the whole request.
 */
export async function* counted(p: UploadPart, onBytes?: (n: number) => void): AsyncIterable<Uint8Array> {
  let seen = 0;
  for await (const chunk of p.open()) {
    seen += chunk.length;
    if (seen > p.size) throw new LocalObjectError(`local object ${p.name} grew while it was read (more than ${p.size} bytes)`);
    onBytes?.(chunk.length);
    yield chunk;
  }
  if (seen !== p.size) throw new LocalObjectError(`local object ${p.name} shrank while it was read (${seen} of ${p.size} bytes)`);
}
