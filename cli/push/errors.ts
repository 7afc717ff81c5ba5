import { ApiError, TransportError } from './http';

/** A push that failed, with the one line the user reads. */
export class PushError extends Error {
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'PushError';
  }
}

const short = (c: unknown): string => (typeof c === 'string' && /^[0-9a-f]{64}$/.test(c) ? c : c === null || c === undefined ? '(absent)' : String(c));

function head(list: unknown, n = 3): string {
  if (!Array.isArray(list) || list.length === 0) return '';
  const shown = list.slice(0, n).map(String).join(', ');
  return list.length > n ? `${shown} … (${list.length} in all)` : shown;
}

/**
 * One line for any failure of a push request, saying what happened and what
 * to do about it. `step` names the stage ("checking objects", "updating ref").
 */
export function describeFailure(e: unknown, step: string, ctx: { tokenGiven: boolean }): string {
  if (e instanceof TransportError) return `${step}: cannot reach the server (${e.message}; ${e.request}), gave up after retrying`;
  if (!(e instanceof ApiError)) return `${step}: ${e instanceof Error ? e.message : String(e)}`;
  const d = e.details ?? {};
  switch (e.status) {
    case 401:
      return ctx.tokenGiven
        ? `${step}: the server refused the token (401 ${e.code}: ${e.message})`
        : `${step}: the server wants a token (401 ${e.code}: ${e.message}); pass --token or set CAIRN_TOKEN`;
    case 403:
      if (e.code === 'NOT_OWNED') return `${step}: the server does not publish into this repository until an operator adopts it (403 ${e.code}: ${e.message})`;
      return `${step}: the token does not allow this (403 ${e.code}: ${e.message})`;
    case 404:
      return `${step}: not found (404 ${e.code}: ${e.message}; ${e.request}); check --url, that the repository exists and, if it is private, that the token may read it`;
    case 409: {
      const conflicts = Array.isArray(d.conflicts) ? (d.conflicts as Array<{ ref?: unknown; expected?: unknown; actual?: unknown }>) : [];
      if (conflicts.length) {
        const c = conflicts
          .map((x) => `ref ${String(x.ref)} was expected at ${short(x.expected)} but the server has ${short(x.actual)}`)
          .join('; ');
        return `${step}: conflict: ${c} (someone else pushed meanwhile; push again to build on the new value, or --force to overwrite)`;
      }
      return `${step}: conflict (409 ${e.code}: ${e.message})`;
    }
    case 507:
      return `${step}: the server is out of storage space (507 ${e.code}: ${e.message}); nothing half-written was kept: free space on the server, then push again (objects already stored are not sent twice)`;
    case 422:
      if (Array.isArray(d.missing)) return `${step}: the server lacks ${d.missing.length} object(s) of the commit: ${head(d.missing)} (422 ${e.code}: ${e.message})`;
      break;
  }
  const obj = typeof d.object === 'string' ? ` object ${d.object}` : '';
  return `${step}: the server refused${obj} (${e.status} ${e.code}: ${e.message})`;
}
