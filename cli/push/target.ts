import { UsageError } from '../command';

/** Where a push goes: the server's API base for one repository. */
export interface PushTarget {
  /** The URL as given, normalised (no trailing slash): what `ostree remote add` would use. */
  repoUrl: string;
  /** Repository name on the server. */
  repo: string;
  /** `…/api/repos/NAME`: every push request is below it. */
  apiBase: string;
}

/**
 * `--url` is the repository's pull URL (`http://HOST:PORT/repo/NAME`), the one
 * address publishers already know. The API lives beside it under the same
 * origin and path prefix (`http://HOST:PORT/api/repos/NAME`), so a server
 * mounted below a reverse-proxy prefix keeps working.
 */
export function parsePushUrl(raw: string): PushTarget {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`--url ${JSON.stringify(raw)} is not a URL (expected http://HOST:PORT/repo/NAME)`, 'push');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--url must be http or https, not ${u.protocol}`, 'push');
  if (u.search || u.hash) throw new UsageError('--url must not have a query string or fragment', 'push');
  const m = /^(.*)\/repo\/([^/]+)\/?$/.exec(u.pathname);
  if (!m) throw new UsageError(`--url ${raw} does not end in /repo/NAME`, 'push');
  const prefix = m[1]!;
  const repo = decodeURIComponent(m[2]!);
  const origin = u.origin;
  return {
    repoUrl: `${origin}${prefix}/repo/${m[2]}`,
    repo,
    apiBase: `${origin}${prefix}/api/repos/${encodeURIComponent(repo)}`,
  };
}
