import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { type Backend, isNow } from '../../storage/backends/backend';
import { backendFor } from '../../storage/backends/factory';
import { full } from '../../storage/backends/full';
import { CairnError } from '../../storage/errors';
import { classifyNestedKey, classifyRepoKey, type RepoFileClass } from '../../storage/repo/layout';
import type { RepoRegistry } from '../../storage/repo/registry';
import type { Repo } from '../../storage/repo/repo';
import type { SettingsStore } from '../../storage/repo/settings';
import { authenticateHeader, type Authenticator } from '../auth/middleware';
import { allows } from '../auth/tokens';
import { describeError, fileErrorHeaders, type HttpErrorInfo } from '../errors';
import type { Answerer, FrontAnswer } from '../http1/front';
import type { Logger } from '../logging';
import type { Metrics } from '../metrics';
import { observe, recordRequest, REQUEST_ID_HEADER, requestIdOf, type ServedFile, type TrafficSink } from '../observe';
import type { FileCache } from './cache';
import { decodePathSegments } from './paths';
import { answerFile, releaseAnswer, writeAnswer, type FileAnswer } from './serve';
import { answerPairFile, SummaryPairs } from './summary-pair';
import { createRedirects, redirectedTraffic, type S3RedirectOptions } from './redirect';
import { validateKey } from '../../storage/backends/backend';

/**
 * The one place that decides the answer to a GET or HEAD of a file: a
 * repository's (`/repo/NAME/KEY`, or a `--mount` prefix bound to a
 * repository) or a `--mount` folder's. It decides what the request names,
 * whether it may be read (a private repository the request may not read is
 * answered as one that does not exist; settings that cannot be read fail
 * closed), and the
 * answer — status, headers, body source, errors included — synchronously when
 * the file is cached or small. The two transports only write that answer:
 * the HTTP/1.1 front (server/http1/front.ts, via `answerer`) and node's server
 * (`handleNode`, hooked before express), and both account for it through
 * recordRequest. Anything else (the API, key routes, other methods) is `null`:
 * the express app's.
 */

/** A `--mount`: a folder served with the repository-file rules, or a data-folder repository at another URL prefix. */
export type Mount = { prefix: string; dir: string } | { prefix: string; repo: string };

export interface FilesOptions {
  registry: RepoRegistry;
  /** Repository settings (private repositories); absent: every repository is public. */
  settings?: SettingsStore;
  /** Token verification for private repositories (required with settings). */
  auth?: Authenticator;
  mounts?: readonly Mount[];
  cache?: FileCache;
  metrics?: Metrics;
  logger: Logger;
  /** Told after a 404 for an existing repository's file (on-demand deltas); never awaited. */
  onMissing?(repo: string, key: string): void;
  /** Told of every GET of a data-folder repository's file once answered (update traffic, server/api/traffic.ts). */
  traffic?: TrafficSink;
  /** Redirect GETs of content-addressed files of repositories on S3 to presigned URLs (redirect.ts); absent: every byte through Cairn. */
  s3Redirect?: S3RedirectOptions;
}

/** The request as far as the decision goes. */
export interface FileRequest {
  method: string;
  /** The request target as sent (origin form: path and query). */
  target: string;
  /** Lower-cased names: range, if-*, authorization are read. */
  headers: IncomingHttpHeaders;
  /** The connection it came on (any object identifying it): a summary follows its connection's summary.sig (summary-pair.ts). */
  conn?: object;
}

export interface Answer extends FileAnswer {
  /** For the request log and metrics. */
  route: string;
  repo?: string;
  /** The file's path inside the repository (repository files), for update traffic. */
  key?: string;
  /** A redirect to the store (redirect.ts): the size of the file it sends, for update traffic. */
  redirectedSize?: number;
}

export interface Files {
  /** The answer to `req`, or null when it is not a file request. Never throws: errors are answers. */
  answer(req: FileRequest): Answer | null | Promise<Answer>;
  /** node:http: answers a file request (true), or leaves `res` untouched (false). */
  handleNode(req: IncomingMessage, res: ServerResponse): boolean;
  /** The same for the HTTP/1.1 front. */
  answerer: Answerer;
}

/** Paths the app's own routes take before any mount (the web UI: `/` and `/ui/…`). */
const BUILT_IN = /^\/(?:repo|api|ui)(?:\/|$)|^\/(?:healthz|readyz|metrics)?$/;

interface Target {
  /** The data-folder repository, if the file is one of a repository's. */
  repo?: string;
  /** The key below the repository or mount: decoded once, validated. */
  key: string;
  /** The mount folder's backend, for a mount of a folder. */
  backend?: Backend;
  label: 'repo' | 'mount';
}

export function createFiles(opts: FilesOptions): Files {
  const { registry, cache, metrics, logger } = opts;
  const pairs = new SummaryPairs();
  const redirects = opts.s3Redirect ? createRedirects(opts.s3Redirect, metrics) : undefined;
  const isPrivate = opts.settings ? privacyPerTurn(opts.settings) : () => false;
  const mounts = (opts.mounts ?? []).map((m) => ({
    prefix: m.prefix.endsWith('/') ? m.prefix : `${m.prefix}/`,
    repo: 'repo' in m ? m.repo : undefined,
    backend: 'dir' in m ? full(backendFor(m.dir)) : undefined,
  }));

  const answer = (req: FileRequest): Answer | null | Promise<Answer> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return null;
    const q = req.target.indexOf('?');
    const path = q === -1 ? req.target : req.target.slice(0, q);
    let label: 'repo' | 'mount' = 'repo';
    let repo: string | undefined;
    try {
      const t = resolveTarget(path);
      if (t === null) return null;
      if (t === 'repo-not-found' || t === 'mount-not-found') return errorAnswer(NOT_FOUND, t === 'repo-not-found' ? 'repo_file' : 'mount_file');
      label = t.label;
      repo = t.repo;
      if (t.repo === undefined) return fileAnswer(req, t.backend!, t.key, classifyNestedKey(t.key), 'mount', undefined, false);
      const name = t.repo;
      const key = t.key;
      // At once on a folder; a store that is not (S3) answers with a promise, having read the
      // repository's settings with it (RepoRegistry.check: what isPrivate then answers from).
      const opened = registry.openFast(name, 1000);
      if (isNow(opened)) return repoAnswer(req, opened, name, key);
      return opened.then((found) => repoAnswer(req, found, name, key)).catch((e: unknown) => failed(e, req, 'repo_file', name));
    } catch (e) {
      return failed(e, req, `${label}_file`, repo);
    }
  };

  function repoAnswer(req: FileRequest, found: Repo | null, name: string, key: string): Answer | Promise<Answer> {
    if (!found) return noRepository(name);
    const cls = classifyRepoKey(key);
    if (!isPrivate(name)) return fileAnswer(req, found.backend, key, cls, 'repo', name, false);
    const header = req.headers.authorization;
    if (!opts.auth || typeof header !== 'string') return noRepository(name);
    return mayRead(opts.auth, header, name).then(
      (may) => (may ? fileAnswer(req, found.backend, key, cls, 'repo', name, true) : noRepository(name)),
      (e: unknown) => failed(e, req, 'repo_file', name),
    );
  }

  /**
   * The answer for a repository Cairn does not have, and — GitHub's rule, so
   * that private names cannot be probed — for a private repository the
   * request may not read (no credentials, bad, expired or revoked ones, a
   * token without read on it): the same 404 as any missing file.
   */
  function noRepository(name: string): Answer {
    return errorAnswer(NOT_FOUND, 'repo_file', name);
  }

  /** What `path` names: null (the app's), a folder or nothing (404), or a file. Throws INVALID_PATH (400). */
  function resolveTarget(path: string): Target | 'repo-not-found' | 'mount-not-found' | null {
    if (path === '/repo') return 'repo-not-found';
    if (path.startsWith('/repo/')) {
      const key = keyOf(path.slice('/repo/'.length));
      const slash = key === null ? -1 : key.indexOf('/');
      // `/repo/NAME.flatpakrepo`: the flatpak route (server/api/flatpak.ts).
      if (key !== null && slash === -1 && key.endsWith('.flatpakrepo')) return null;
      if (key === null || slash === -1) return 'repo-not-found';
      const name = key.slice(0, slash);
      const rest = key.slice(slash + 1);
      // `/repo/NAME/keys/FILE`: the key routes.
      if (rest.startsWith('keys/') && rest.indexOf('/', 5) === -1) return null;
      // `/repo/NAME/flatpak/ID.flatpakref`: the flatpak route.
      if (rest.startsWith('flatpak/') && rest.indexOf('/', 8) === -1 && rest.endsWith('.flatpakref')) return null;
      return { repo: name, key: rest, label: 'repo' };
    }
    if (mounts.length === 0 || BUILT_IN.test(path)) return null;
    // The first mount whose prefix matches answers (or 404s, also for its bare prefix).
    const m = mounts.find((f) => path.startsWith(f.prefix) || path === f.prefix.slice(0, -1));
    if (!m) return null;
    if (!path.startsWith(m.prefix)) return 'mount-not-found';
    const key = keyOf(path.slice(m.prefix.length));
    if (key === null) return 'mount-not-found';
    return m.repo !== undefined ? { repo: m.repo, key, label: 'repo' } : { backend: m.backend, key, label: 'mount' };
  }

  function fileAnswer(req: FileRequest, backend: Backend, key: string, cls: RepoFileClass, label: 'repo' | 'mount', repo: string | undefined, privateRepo: boolean): Answer | Promise<Answer> {
    const route = `${label}_${cls.area}`;
    if (cls.kind === 'local') return errorAnswer(NOT_FOUND, route, repo);
    const done = (a: FileAnswer | null): Answer => {
      if (a) return Object.assign(a, { route, repo, key });
      if (repo !== undefined) queueMicrotask(() => opts.onMissing?.(repo, key));
      return Object.assign(errorAnswer(NOT_FOUND, route, repo), { key });
    };
    try {
      const reads = redirects?.of(req.method, req.headers, backend, cls);
      if (reads) {
        const r = redirects!.answer(backend, reads, key);
        return r instanceof Promise ? r.then(done, (e: unknown) => failed(e, req, route, repo)) : done(r);
      }
      const opts = { cache, metrics, privateRepo };
      const p = answerPairFile(pairs, req, req.conn, backend, key, cls, opts);
      if (p instanceof Promise) return p.then((x) => (x === undefined ? answerFile(req, backend, key, cls, opts) : x)).then(done, (e: unknown) => failed(e, req, route, repo));
      const a = p !== undefined ? p : answerFile(req, backend, key, cls, opts);
      if (a instanceof Promise) return a.then(done, (e: unknown) => failed(e, req, route, repo));
      return done(a);
    } catch (e) {
      return failed(e, req, route, repo);
    }
  }

  /** An error as an answer; 5xx are logged with their cause and never explained to the client. */
  function failed(e: unknown, req: FileRequest, route: string, repo: string | undefined): Answer {
    const info = describeError(e);
    if (info.status >= 500) {
      logger.error('request failed', { method: req.method, path: req.target.split('?', 1)[0], repo, err: e instanceof Error ? e.message : String(e), code: (e as { code?: unknown })?.code });
    }
    return errorAnswer(info, route, repo);
  }

  function account(a: Answer, method: string, path: string, start: bigint, requestId: string, served: ServedFile | undefined) {
    return (bytes: number, aborted: boolean) =>
      recordRequest(logger, metrics, { route: a.route, repo: a.repo, method, path, status: a.status, bytes, aborted, durationMs: Number(process.hrtime.bigint() - start) / 1e6, requestId, served });
  }

  /** What update traffic is told about answer `a` (a repository file), from the connection's remote address. */
  const servedOf = (a: Answer, socket: { remoteAddress?: string } | undefined): ServedFile | undefined =>
    opts.traffic && a.repo !== undefined && a.key !== undefined
      ? { traffic: a.redirectedSize === undefined ? opts.traffic : redirectedTraffic(opts.traffic, a.redirectedSize), repo: a.repo, key: a.key, client: socket?.remoteAddress }
      : undefined;

  const handleNode = (req: IncomingMessage, res: ServerResponse): boolean => {
    const start = process.hrtime.bigint();
    const method = req.method ?? 'GET';
    const target = req.url ?? '/';
    const a = answer({ method, target, headers: req.headers, conn: req.socket });
    if (a === null) return false;
    const id = requestIdOf(req.headers['x-request-id']);
    const write = (x: Answer) => {
      const served = servedOf(x, req.socket);
      if (res.destroyed) {
        releaseAnswer(x);
        account(x, method, pathOf(target), start, id, served)(0, true);
        return;
      }
      observe(logger, metrics, req, res, { route: x.route, repo: x.repo, served }, start, id, target);
      writeAnswer(res, x, id);
    };
    if (a instanceof Promise) void a.then(write);
    else write(a);
    return true;
  };

  const answerer: Answerer = (head, conn) => {
    const start = process.hrtime.bigint();
    const a = answer({ method: head.method, target: head.target, headers: head.headers, conn });
    if (a === null) return null;
    const path = pathOf(head.target);
    const id = requestIdOf(head.headers['x-request-id']);
    const toFront = (x: Answer): FrontAnswer => ({
      status: x.status,
      // The id is sane (see requestIdOf): no character that could end the line.
      head: (x.fixed ? x.fixed.lines : headerLines(x)) + REQUEST_ID_HEADER + ': ' + id + '\r\n',
      body: x.body,
      stream: x.stream,
      file: x.file,
      done: account(x, head.method, path, start, id, servedOf(x, (conn as { socket?: { remoteAddress?: string } } | undefined)?.socket)),
    });
    return a instanceof Promise ? a.then(toFront) : toFront(a);
  };

  return { answer, handleNode, answerer };
}

/** Anything absent: a file, a folder, a repository (or one the request may not read). */
const NOT_FOUND: HttpErrorInfo = { status: 404, code: 'NOT_FOUND', message: 'not found' };

/**
 * Whether the credentials of `header` allow reading `repo`: bad, expired or
 * revoked ones do not (false, like a token for other repositories); only a
 * failure to check them (the revocation list unreadable) throws.
 */
async function mayRead(auth: Authenticator, header: string, repo: string): Promise<boolean> {
  try {
    return allows(await authenticateHeader(auth, header), { scope: 'read', repo });
  } catch (e) {
    if (e instanceof CairnError && e.code === 'UNAUTHORIZED') return false;
    throw e;
  }
}

/** An error answer for a file route: an empty body (see fileErrorHeaders), the reason in a header. */
function errorAnswer(info: HttpErrorInfo, route: string, repo?: string): Answer {
  return { status: info.status, headers: fileErrorHeaders(info), route, repo };
}

/**
 * The key a raw (still percent-encoded) path below a prefix names, decoded
 * exactly once and validated; null for a folder (a trailing slash, or
 * nothing): no listings, 404.
 */
function keyOf(raw: string): string | null {
  // The common case, nothing encoded: the path is the key.
  const segments = raw.includes('%') ? decodePathSegments(raw) : null;
  const key = segments ? segments.join('/') : raw;
  const isDir = key.endsWith('/') || key === '';
  const file = isDir ? key.slice(0, -1) : key;
  if (key !== '') validateKey(file); // `/repo//` and the like: an empty segment, 400
  return isDir ? null : file;
}

function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

function headerLines(a: FileAnswer): string {
  let lines = '';
  for (const [name, value] of Object.entries(a.headers)) if (value !== undefined) lines += `${name}: ${String(value)}\r\n`;
  return lines;
}

/**
 * Whether a repository is private, read from the settings at most once per
 * event-loop turn and repository (a stat each time was the largest single
 * cost of a cached object). The requests a turn answers were sent before it
 * began (their sockets were ready then), and the memo is filled during the
 * turn, so each still sees every settings change made before it was sent, as
 * with a stat per request. The memo is dropped in the turn's check phase.
 * Settings that cannot be read throw (every request then fails closed, 500),
 * and nothing is remembered.
 */
function privacyPerTurn(settings: SettingsStore): (name: string) => boolean {
  const memo = new Map<string, boolean>();
  const forget = () => memo.clear();
  return (name) => {
    let v = memo.get(name);
    if (v === undefined) {
      try {
        v = settings.current(name).private;
      } catch (e) {
        throw new CairnError('IO', `settings of ${name} cannot be read: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (memo.size === 0) setImmediate(forget);
      memo.set(name, v);
    }
    return v;
  };
}
