/**
 * Log lines written in batches: under load, a server writes one request line
 * per response, and stdout to a file or pipe is a synchronous write(2) per
 * call in node. Lines queued during one turn of the event loop go out together
 * at the next `setImmediate` (so they still appear within a millisecond or so),
 * in chunks of at most PIPE_BUF bytes cut at line ends: a write that small to a
 * pipe is atomic, so lines of several processes sharing one stdout (the
 * `serve --workers` cluster) never interleave within a line. Whatever is
 * queued is written synchronously on exit.
 */

const PIPE_BUF = 4096;

export interface LineSink {
  /** Queues one complete line (ending in "\n"). */
  write(line: string): void;
  /** Writes everything queued now. */
  flush(): void;
}

export function batchedSink(out: (chunk: string) => void = (c) => void process.stdout.write(c)): LineSink {
  let queued: string[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
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
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    flush,
  };
}
