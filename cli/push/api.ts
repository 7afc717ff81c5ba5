import type * as wire from '../../server/api/schema';
import { ApiClient, ApiError } from './http';
import { counted, multipartBody, type UploadPart } from './multipart';

// The wire types are the server's (server/api/schema.ts, next to the JSON
// Schemas the server validates with); imported as types only, so `cairn push`
// loads nothing of the server.
export type RefUpdate = wire.RefUpdate;
export type RefChange = wire.RefChange;
export type Conflict = wire.Conflict;

/** Most names one missing-objects query may carry (the server's limit: the type makes the compiler hold the two equal). */
export const MAX_MISSING_QUERY: typeof wire.MAX_MISSING_QUERY = 100_000;

/**
 * Typed calls of the publishing API for one repository (contract: issue 3 §2–3).
 * Every call goes through ApiClient, so each is retried on network errors and
 * retryable statuses. All of them are idempotent except the ref update, whose
 * retry is handled by its caller (see push.ts).
 */
export class PushApi {
  constructor(readonly client: ApiClient) {}

  async refs(): Promise<Record<string, string>> {
    const { body } = await this.client.json<Partial<wire.RefsAnswer>>('GET', '/refs');
    if (!body.refs || typeof body.refs !== 'object') throw badAnswer('GET /refs', 'no "refs" object');
    return body.refs;
  }

  /** Which of `names` (`<csum>.<ext>`) the server lacks. */
  async missing(names: readonly string[]): Promise<string[]> {
    const { body } = await this.client.json<Partial<wire.MissingObjectsAnswer>>('POST', '/objects/missing', { objects: [...names] } satisfies wire.MissingObjectsBody);
    if (!Array.isArray(body.missing)) throw badAnswer('POST /objects/missing', 'no "missing" list');
    return body.missing;
  }

  /** Many small objects in one multipart request → the names the server stored or already had. */
  async uploadBatch(parts: readonly UploadPart[], onBytes: (n: number) => void): Promise<wire.UploadAnswer> {
    let sent = 0;
    const { body } = await this.client.send<Partial<wire.UploadAnswer>>('POST', '/objects', {
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

  /** Marks a flatpak app or runtime ref end-of-life (a new commit on its head, compare-and-swap against `expected`). */
  async endOfLife(body: { ref: string; reason: string; rebase?: string; expected: string }): Promise<{ new?: string }> {
    const { body: answer } = await this.client.json<{ new?: string }>('POST', '/end-of-life', body);
    return answer;
  }

  async updateRefs(updates: RefUpdate[], force: boolean, onRetry?: () => void): Promise<RefChange[]> {
    const { body } = await this.client.json<Partial<wire.RefUpdatesAnswer>>('POST', '/refs', { updates, force } satisfies wire.RefUpdatesBody, { onRetry });
    return body.changes ?? [];
  }
}

function badAnswer(request: string, what: string): ApiError {
  return new ApiError(200, 'BAD_RESPONSE', `unexpected answer to ${request}: ${what}`, undefined, request);
}
