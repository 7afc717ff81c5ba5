import type { OutgoingHttpHeaders } from 'node:http';
import type { Answerer, FrontAnswer } from '../http1/front';
import type { RequestHead } from '../http1/head';
import { fileRouter, type FastPathOptions, type RoutedFile } from './fastpath';
import { answerFile, hasValidatorsOrRange, trustedObject, type FileAnswer } from './serve';

/**
 * The HTTP/1.1 front's answers (server/http1/front.ts): the same requests as
 * the node:http fast path (fileRouter) with the same answers (answerFile),
 * the same log line and metrics. Everything else, a missing file included
 * (its 404 carries the app's error header and may start an on-demand delta),
 * goes to node and the app.
 */
export function createFrontAnswerer(opts: FastPathOptions): Answerer {
  const { cache, metrics, logger } = opts;
  const route = fileRouter(opts);
  return (head) => {
    const start = process.hrtime.bigint();
    const file = route(head.target);
    if (!file) return null;
    const account = accounting(head, file, start);
    if (cache && !hasValidatorsOrRange(head.rawHeaders)) {
      const hit = trustedObject(file.repo.backend, file.key, file.cls, cache, metrics);
      if (hit) return { status: 200, head: hit.head.lines, body: hit.data, done: account(200) };
    }
    return answerFile({ method: head.method, headers: head.headers }, file.repo.backend, file.key, file.cls, { cache, metrics, trustObjects: true }).then(
      (a) => (a ? toFront(a, account(a.status)) : null),
    );
  };

  function accounting(head: RequestHead, file: RoutedFile, start: bigint) {
    return (status: number) => (bytes: number, aborted: boolean) => {
      const durationMs = Number(process.hrtime.bigint() - start) / 1e6;
      metrics?.observeRequest({ route: file.route, method: head.method, status, bytes, durationMs });
      logger.request({ method: head.method, path: file.path, status, bytes, durationMs, repo: file.name, aborted });
    };
  }
}

function toFront(a: FileAnswer, done: FrontAnswer['done']): FrontAnswer {
  return { status: a.status, head: headerLines(a.headers), body: a.body, stream: a.stream, done };
}

function headerLines(headers: OutgoingHttpHeaders): string {
  let lines = '';
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) lines += `${name}: ${String(value)}\r\n`;
  return lines;
}
