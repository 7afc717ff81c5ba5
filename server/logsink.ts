/**
 * Log lines written in batches: a server writes one request line per
 * response, and stdout to a file or pipe is a synchronous write(2) per call
 * in node, plus its stream machinery. Lines go out together at most
 * FLUSH_MS after the first of them was queued (or at once when a chunk is
 * full), in chunks of at most PIPE_BUF bytes cut at line ends: a write that
 * small to a pipe is atomic, so lines of several processes sharing one
 * stdout (the `serve --workers` cluster) never interleave within a line.
 * Whatever is queued is written synchronously on exit.
 *
 * Why a timer and not the end of the event-loop turn: in a pull, requests
 * arrive one or two per turn, and a write per turn was ~7% of a request's
 * cost (`wrk -c1`).
 */

const PIPE_BUF = 4096;
const FLUSH_MS = 20;

export interface LineSink {
  /** Queues one complete line (ending in "\n"). */
  write(line: string): void;
  /** Writes everything queued now. */
  flush(): void;
}

export function batchedSink(out: (chunk: string) => void = (c) => void process.stdout.write(c)): LineSink {
  let queued: string[] = [];
  let queuedBytes = 0;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    queuedBytes = 0;
    if (queued.length === 0) return;
    const lines = queued;
    queued = [];
    let chunk = '';
    for (const line of lines) {
      if (chunk.length > 0 && chunk.length + line.length > PIPE_BUF) {
        out(chunk);
        chunk = '';
      }
      chunk += line;
    }
    if (chunk) out(chunk);
  };
  process.on('exit', flush);
  return {
    write(line) {
      queued.push(line);
      queuedBytes += line.length;
      if (queuedBytes >= PIPE_BUF) flush();
      // unref: a pending flush never keeps the process alive; exit flushes.
      else timer ??= setTimeout(flush, FLUSH_MS).unref();
    },
    flush,
  };
}
