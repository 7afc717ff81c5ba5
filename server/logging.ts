/**
 * Structured logs: one JSON object per line on stdout, so that journald,
 * docker and log shippers need no parser. `CAIRN_LOG=silent` (or the `level`
 * option) quiets it, e.g. in tests.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogSetting = LogLevel | 'silent';
export type LogFields = Record<string, unknown>;

const RANK: Record<LogSetting, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  readonly level: LogSetting;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** Written whatever the level: lines other programs parse (e.g. "listening"). */
  always(msg: string, fields?: LogFields): void;
  /** The per-request line. */
  request(fields: RequestLogFields): void;
}

export interface RequestLogFields {
  method: string;
  path: string;
  status: number;
  bytes: number;
  durationMs: number;
  repo?: string;
  /** The client went away before the response was complete. */
  aborted?: boolean;
  /** The request's id (X-Request-Id: the client's, or generated; see server/observe.ts). */
  requestId?: string;
}

export interface LoggerOptions {
  level?: LogSetting;
  /** Defaults to process.stdout. */
  write?: (line: string) => void;
}

export function levelFromEnv(env: NodeJS.ProcessEnv = process.env): LogSetting {
  const v = (env.CAIRN_LOG ?? '').toLowerCase();
  return v in RANK ? (v as LogSetting) : 'info';
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? levelFromEnv();
  const write = opts.write ?? ((line: string) => void process.stdout.write(line));
  const emit = (lvl: LogLevel, msg: string, fields?: LogFields) => {
    // time/level/msg come first and fields cannot override them.
    const head = { time: new Date().toISOString(), level: lvl, msg };
    write(safeStringify(Object.assign({ ...head }, fields, head)) + '\n');
  };
  const at = (lvl: LogLevel) => (msg: string, fields?: LogFields) => {
    if (RANK[lvl] >= RANK[level]) emit(lvl, msg, fields);
  };
  return {
    level,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    always: (msg, fields) => emit('info', msg, fields),
    request(f) {
      const lvl: LogLevel = f.status >= 500 ? 'error' : 'info';
      if (RANK[lvl] < RANK[level]) return;
      write(requestLine(lvl, f));
    },
  };
}

/**
 * The per-request line, built by hand: it is written once per response, and
 * the generic path (an object spread, Object.assign, JSON.stringify with a
 * replacer) was about a tenth of a small file's CPU time. The result is the
 * same JSON object with the same keys in the same order. Safe because every
 * value is either a number we computed (status, bytes, duration: finite, never
 * NaN — a non-finite one is written as null, as JSON.stringify would) or a
 * string that goes through jsonString (verbatim only when it holds nothing
 * JSON must escape, else JSON.stringify).
 */
export function requestLine(lvl: LogLevel, f: RequestLogFields): string {
  const p = f.path.length > 1024 ? f.path.slice(0, 1024) + '…' : f.path;
  let line =
    '{"time":"' + isoNow() + '","level":"' + lvl + '","msg":"request","method":' + jsonString(f.method) +
    ',"path":' + jsonString(p) +
    ',"status":' + jsonNumber(f.status) +
    ',"bytes":' + jsonNumber(f.bytes) +
    ',"duration_ms":' + jsonNumber(Math.round(f.durationMs * 1000) / 1000);
  if (f.requestId !== undefined) line += ',"request_id":' + jsonString(f.requestId);
  if (f.repo !== undefined) line += ',"repo":' + jsonString(f.repo);
  if (f.aborted) line += ',"aborted":true';
  return line + '}\n';
}

/** Printable ASCII without `"` and a backslash needs no escaping in JSON. */
const PLAIN_JSON = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function jsonString(s: string): string {
  return PLAIN_JSON.test(s) ? '"' + s + '"' : JSON.stringify(s);
}

function jsonNumber(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

/** toISOString once per millisecond, not once per line. */
let isoAt = -1;
let isoText = '';
function isoNow(): string {
  const now = Date.now();
  if (now !== isoAt) {
    isoAt = now;
    isoText = new Date(now).toISOString();
  }
  return isoText;
}

/** JSON that never throws (cycles, BigInt) so logging cannot break a request. */
function safeStringify(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
  } catch {
    return JSON.stringify({ time: new Date().toISOString(), level: 'error', msg: 'unserialisable log record' });
  }
}
