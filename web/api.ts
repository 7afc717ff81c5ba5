/**
 * The JSON API as the UI calls it (/api/openapi.json describes it). The
 * operator's token is typed into the UI, kept in sessionStorage (this tab
 * only, gone when it closes) and sent as `Authorization: Bearer` with every
 * call, reads included (private repositories need it).
 */

const TOKEN_KEY = 'cairn.token';

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage refused (private mode): the token lives as long as the page
  }
  document.dispatchEvent(new CustomEvent('cairn-token'));
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

export function enc(s: string): string {
  return encodeURIComponent(s);
}

/** A query string from the defined values (`?a=1&b=x`), or ''. */
export function qs(params: Record<string, string | number | boolean | null | undefined>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') u.set(k, String(v));
  const s = u.toString();
  return s ? `?${s}` : '';
}

function headers(extra?: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = { Accept: 'application/json', ...extra };
  const t = getToken();
  if (t) out.Authorization = `Bearer ${t}`;
  return out;
}

async function failure(res: Response): Promise<ApiError> {
  let code = `HTTP_${res.status}`;
  let message = `${res.status} ${res.statusText}`;
  let details: Record<string, unknown> | undefined;
  try {
    const body = (await res.json()) as { error?: { code?: unknown; message?: unknown; details?: unknown } };
    if (body?.error) {
      if (typeof body.error.code === 'string') code = body.error.code;
      if (typeof body.error.message === 'string') message = body.error.message;
      if (body.error.details && typeof body.error.details === 'object') details = body.error.details as Record<string, unknown>;
    }
  } catch {
    // not JSON
  }
  if (res.status === 401 && !getToken()) message += ' (set a token: Token, at the top)';
  // A private repository answers a caller who may not read it as one that does not exist.
  else if (res.status === 404 && code === 'NOT_FOUND' && message.startsWith('no repository named') && !getToken()) message += ' (set a token: Token, at the top)';
  return new ApiError(res.status, code, message, details);
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  const res = await fetch(path, { headers: headers(), signal, credentials: 'omit' });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

export async function sendJson<T>(method: 'POST' | 'PATCH', path: string, body: unknown, signal?: AbortSignal): Promise<T> {
  const res = await fetch(path, { method, headers: headers({ 'Content-Type': 'application/json' }), body: JSON.stringify(body), signal, credentials: 'omit' });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

/** Raw bytes of a response (file contents), or an ApiError. */
export async function getRaw(path: string, signal?: AbortSignal): Promise<Response> {
  const res = await fetch(path, { headers: headers({ Accept: '*/*' }), signal, credentials: 'omit' });
  if (!res.ok) throw await failure(res);
  return res;
}

// ---- wire types (see /api/openapi.json) ----

export interface Page<T> {
  items: T[];
  next: string | null;
}

export interface RepoInfo {
  name: string;
  private: boolean;
  owned: boolean;
  url: string;
}

export interface Branch {
  ref: string;
  commit: string;
  subject?: string | null;
  version?: string | null;
  timestamp?: number | null;
  signed?: boolean;
  objects?: number | null;
  archivedBytes?: number | null;
  unpackedBytes?: number | null;
  sizesPending?: boolean;
}

export interface HistoryItem {
  commit: string;
  parent: string | null;
  subject: string;
  version: string | null;
  timestamp: number;
  signed: boolean;
}

export interface HistoryPage extends Page<HistoryItem> {
  end?: 'root' | 'missing' | null;
  missing?: string;
}

export interface TreeItem {
  name: string;
  kind: 'file' | 'dir' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  target?: string | null;
  xattrs?: Array<{ name: string; text?: string | null; value?: unknown }> | null;
  checksum: string;
}

export interface TreePage extends Page<TreeItem> {
  path: string;
}

export interface RefChange {
  time?: string;
  ref: string;
  old: string | null;
  new: string | null;
  actor?: string;
}

export interface Job {
  id: string;
  kind: string;
  key?: string;
  repo: string | null;
  source?: string | null;
  params?: Record<string, unknown>;
  state: string;
  priority?: number | null;
  position?: number | null;
  createdAt?: string | number;
  startedAt?: string | number | null;
  finishedAt?: string | number | null;
  progress?: unknown;
  result?: unknown;
  error?: { code?: string; message?: string } | string | null;
}

/** Checksums are 64 lowercase hex digits. */
export function isChecksum(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}

// ---- the UI's own URLs (History API paths under /ui/) ----

const r = (repo: string) => `/ui/repos/${enc(repo)}`;
export const urls = {
  home: () => '/',
  repo: (repo: string) => r(repo),
  history: (repo: string, ref: string) => `${r(repo)}/history${qs({ ref })}`,
  commit: (repo: string, commit: string, ref?: string | null) => `${r(repo)}/commits/${enc(commit)}${qs({ ref })}`,
  tree: (repo: string, commit: string, path = '/', ref?: string | null) => `${r(repo)}/commits/${enc(commit)}/tree${qs({ path, ref })}`,
  file: (repo: string, commit: string, path: string, ref?: string | null) => `${r(repo)}/commits/${enc(commit)}/file${qs({ path, ref })}`,
  diff: (repo: string, from?: string | null, to?: string | null) => `${r(repo)}/diff${qs({ from, to })}`,
  traffic: (repo: string, ref: string) => `${r(repo)}/traffic${qs({ ref })}`,
  reflog: (repo: string, ref?: string | null) => `${r(repo)}/reflog${qs({ ref })}`,
  jobs: (repo?: string | null, state?: string | null) => `/ui/jobs${qs({ repo, state })}`,
  token: () => '/ui/token',
};

// ---- API paths ----

const a = (repo: string) => `/api/repos/${enc(repo)}`;
export const api = {
  repos: () => '/api/repos',
  stats: (repo: string) => `${a(repo)}/stats`,
  refs: (repo: string) => `${a(repo)}/refs`,
  branches: (repo: string, cursor?: string | null, limit?: number) => `${a(repo)}/branches${qs({ cursor, limit })}`,
  history: (repo: string, ref: string, cursor?: string | null, limit?: number) => `${a(repo)}/history${qs({ ref, cursor, limit })}`,
  commit: (repo: string, commit: string) => `${a(repo)}/commits/${enc(commit)}`,
  tree: (repo: string, commit: string, path: string, cursor?: string | null, limit?: number) => `${a(repo)}/commits/${enc(commit)}/tree${qs({ path, cursor, limit })}`,
  file: (repo: string, commit: string, path: string, inline = false) => `${a(repo)}/commits/${enc(commit)}/file${qs({ path, inline: inline ? 1 : null })}`,
  diff: (repo: string, from: string, to: string) => `${a(repo)}/diff${qs({ from, to, text: 1 })}`,
  traffic: (repo: string, ref: string) => `${a(repo)}/traffic${qs({ ref })}`,
  deltas: (repo: string) => `${a(repo)}/deltas`,
  reflog: (repo: string, ref?: string | null, before?: string | null, limit?: number) => `${a(repo)}/reflog${qs({ ref, before, limit })}`,
  jobs: (repo?: string | null, state?: string | null, limit?: number) => `/api/jobs${qs({ repo, state, limit })}`,
  promote: (repo: string) => `${a(repo)}/promote`,
  rollback: (repo: string) => `${a(repo)}/rollback`,
};
