import type { OutgoingHttpHeaders } from 'node:http';
import type { Answerer, FrontAnswer } from '../http1/front';
import type { RequestHead } from '../http1/head';
import type { Mount } from '../app';
import { fileRouter, mountRouter, type FastPathOptions, type RoutedFile } from './fastpath';
import { answerFile, hasValidatorsOrRange, trustedObject, type FileAnswer } from './serve';

/**
 * The HTTP/1.1 front's answers (server/http1/front.ts): the same requests as
 * the node:http fast path (fileRouter), plus the files of `--mount` folders
 * (mountRouter), with the app's answers (answerFile), log line and metrics. A missing file gets the app's 404 (a pull
 * asks for a few: summary.sig, commitmeta; handing those to node would take
 * their connections off the front for good), except a missing delta file,
 * which may start an on-demand delta: that one, and everything else, goes to
 * node and the app.
 */
export function createFrontAnswerer(opts: FastPathOptions & { mounts?: readonly Mount[] }): Answerer {
  const { cache, metrics, logger } = opts;
  const repoFile = fileRouter(opts);
  const mountFile = mountRouter(opts.mounts ?? []);
  return (head) => {
    const start = process.hrtime.bigint();
    const file = head.target.startsWith('/repo/') ? repoFile(head.target) : mountFile(head.target);
    if (!file) return null;
    const account = accounting(head, file, start);
    if (cache && file.trustObjects && !hasValidatorsOrRange(head.rawHeaders)) {
      const hit = trustedObject(file.backend, file.key, file.cls, cache, metrics);
      if (hit) return { status: 200, head: hit.head.lines, body: hit.data, done: account(200) };
    }
    return answerFile({ method: head.method, headers: head.headers }, file.backend, file.key, file.cls, { cache, metrics, trustObjects: file.trustObjects }).then(
      (a) => {
        if (a) return toFront(a, account(a.status));
        return file.missingIsApps ? null : { status: 404, head: NOT_FOUND_HEAD, done: account(404) };
      },
    );
  };

  function accounting(head: RequestHead, file: RoutedFile, start: bigint) {
    return (status: number) => (bytes: number, aborted: boolean) => {
      const durationMs = Number(process.hrtime.bigint() - start) / 1e6;
      metrics?.observeRequest({ route: file.route, method: head.method, status, bytes, durationMs });
      logger.request({ method: head.method, path: file.path, status, bytes, durationMs, repo: file.repo, aborted });
    };
  }
}

/** Exactly the app's 404 for a repository file (server/errors.ts sendError): no body, the reason in a header. */
const NOT_FOUND_HEAD = 'Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Cairn-Error: Not Found\r\nContent-Length: 0\r\n';

function toFront(a: FileAnswer, done: FrontAnswer['done']): FrontAnswer {
  return { status: a.status, head: headerLines(a.headers), body: a.body, stream: a.stream, file: a.file, done };
}

function headerLines(headers: OutgoingHttpHeaders): string {
  let lines = '';
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) lines += `${name}: ${String(value)}\r\n`;
  return lines;
}
