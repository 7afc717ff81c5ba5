import { ApiClient, ApiError } from './http';
import { counted, multipartBody, type UploadPart } from './multipart';

export interface RefUpdate {
  ref: string;
  commit: string | null;
  expected: string | null;
}

export interface RefChange {
  ref: string;
  old: string | null;
  new: string | null;
  time?: string;
  actor?: string;
}

export interface Conflict {
  ref: string;
  expected: string | null;
  actual: string | null;
}

/** Most names one missing-objects query may carry (the server's limit). */
export const MAX_MISSING_QUERY = 100_000;

/**
 * Typed calls of the publishing API for one repository (contract: issue 3 §2–3).
 * Every call goes through ApiClient, so each is retried on network errors and
 * retryable statuses. All of them are idempotent except the ref update, whose
 * retry is handled by its caller (see push.ts).
 */
export class PushApi {
  constructor(readonly client: ApiClient) {}

  async refs(): Promise<Record<string, string>> {
    const { body } = await this.client.json<{ refs?: Record<string, string> }>('GET', '/refs');
    if (!body.refs || typeof body.refs !== 'object') throw badAnswer('GET /refs', 'no "refs" object');
    return body.refs;
  }

  /** Which of `names` (`<csum>.<ext>`) the server lacks. */
  async missing(names: readonly string[]): Promise<string[]> {
    const { body } = await this.client.json<{ missing?: string[] }>('POST', '/objects/missing', { objects: names });
    if (!Array.isArray(body.missing)) throw badAnswer('POST /objects/missing', 'no "missing" list');
    return body.missing;
  }

  /** Many small objects in one multipart request → the names the server stored or already had. */
  async uploadBatch(parts: readonly UploadPart[], onBytes: (n: number) => void): Promise<{ stored: string[]; present: string[] }> {
    let sent = 0;
    const { body } = await this.client.send<{ stored?: string[]; present?: string[] }>('POST', '/objects', {
      body: () => {
        const mp = multipartBody(parts, (n) => {
          sent += n;
          onBytes(n);
        });
        return { body: mp.body, headers: { 'content-type': mp.contentType, 'content-length': String(mp.length) } };
      },
      // A failed attempt's bytes will be sent again: take them back from the progress count.
      onRetry: () => {
        onBytes(-sent);
        sent = 0;
      },
    });
    return { stored: body.stored ?? [], present: body.present ?? [] };
  }

  /** One (large) object as a raw streamed body → whether it was newly stored. */
  async putObject(part: UploadPart, onBytes: (n: number) => void): Promise<'stored' | 'present'> {
    let sent = 0;
    const { status } = await this.client.send('PUT', `/objects/${part.name}`, {
      body: () => ({
        body: counted(part, (n) => {
          sent += n;
          onBytes(n);
        }),
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(part.size) },
      }),
      onRetry: () => {
        onBytes(-sent);
        sent = 0;
      },
    });
    return status === 201 ? 'stored' : 'present';
  }

  async updateRefs(updates: RefUpdate[], force: boolean, onRetry?: () => void): Promise<RefChange[]> {
    const { body } = await this.client.json<{ changes?: RefChange[] }>('POST', '/refs', { updates, force }, { onRetry });
    return body.changes ?? [];
  }
}

function badAnswer(request: string, what: string): ApiError {
  return new ApiError(200, 'BAD_RESPONSE', `unexpected answer to ${request}: ${what}`, undefined, request);
}
