/**
 * Typed errors for everything below the HTTP layer. Each carries a stable
 * `code`; `server/errors.ts` is the one place that maps codes to HTTP.
 */
export type ErrorCode =
  | 'NOT_FOUND' // an object, ref, repo or file that does not exist
  | 'ALREADY_EXISTS' // creating something that is already there
  | 'INVALID_ARGUMENT' // malformed input that is not one of the more specific kinds below
  | 'INVALID_PATH' // traversal, NUL bytes, over-long or otherwise illegal path
  | 'INVALID_REF' // ref name outside OSTree's grammar
  | 'INVALID_CHECKSUM' // not 64 lowercase hex / 32 raw bytes
  | 'INVALID_GVARIANT' // truncated, out-of-bounds or non-normal GVariant bytes
  | 'INVALID_OBJECT' // well-formed GVariant whose OSTree meaning is illegal
  | 'CHECKSUM_MISMATCH' // bytes do not hash to the name they were given
  | 'TOO_LARGE' // over a size limit (metadata 10 MiB, declared sizes)
  | 'CONFLICT' // compare-and-swap lost, or a concurrent writer
  | 'MISSING_OBJECTS' // a commit whose tree is not all present
  | 'UNAUTHORIZED' // no or invalid credentials
  | 'FORBIDDEN' // valid credentials that do not allow this
  | 'NOT_OWNED' // a write into a repository Cairn did not create and no operator adopted (`cairn adopt`)
  | 'UNSUPPORTED' // a feature or mode Cairn does not handle
  | 'INSUFFICIENT_STORAGE' // a write failed for lack of space (ENOSPC) or quota (EDQUOT); nothing was left half-written
  | 'IO'; // the backend failed

export class CairnError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'CairnError';
  }
}

export function isCairnError(e: unknown, code?: ErrorCode): e is CairnError {
  return e instanceof CairnError && (code === undefined || e.code === code);
}

/** Whether a failed system call ran out of space (ENOSPC) or quota (EDQUOT). */
export function isNoSpaceErrno(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** The typed error of a write that ran out of space: 507 over HTTP, never retried by `cairn push`. */
export function insufficientStorage(what: string): CairnError {
  return new CairnError('INSUFFICIENT_STORAGE', `not enough storage space on the server to write ${what}`);
}

/** Node's ENOENT (and ENOTDIR: a file where a folder was expected) mean "absent". */
export function isNotFoundErrno(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
