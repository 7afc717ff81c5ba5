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

/**
 * A multipart/form-data body streamed part by part from the parts' sources.
 * `onBytes` sees every file byte as the connection pulls it (progress).
 */
export function multipartBody(parts: readonly UploadPart[], onBytes?: (n: number) => void, boundary = newBoundary()): Multipart {
  const headers = parts.map((p) => partHeader(boundary, p.name));
  const closing = Buffer.from(`--${boundary}--${CRLF}`);
  const length = parts.reduce((n, p, i) => n + headers[i]!.length + p.size + CRLF.length, 0) + closing.length;
  async function* body(): AsyncIterable<Uint8Array> {
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      yield headers[i]!;
      yield* counted(p, onBytes);
      yield Buffer.from(CRLF);
    }
    yield closing;
  }
  return { contentType: `multipart/form-data; boundary=${boundary}`, length, body: body() };
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
