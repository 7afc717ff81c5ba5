/**
 * What the user sees while a push runs. On a terminal: one status line
 * redrawn in place (stage, bar, objects, bytes, rate, ETA). Elsewhere (CI logs,
 * pipes): nothing but warnings; the command prints a one-line summary at the end.
 */
export interface Progress {
  /** A new stage ("walking tree", "checking 12000 objects", "updating ref"). */
  stage(text: string): void;
  /** Upload begins: totals of what is missing. */
  startUpload(objects: number, bytes: number): void;
  /** Bytes put on the wire (negative: an attempt failed and its bytes will be sent again). */
  addBytes(n: number): void;
  /** Objects the server has acknowledged. */
  addObjects(n: number): void;
  /** A warning worth a line of its own (a retry). */
  warn(text: string): void;
  /** Erases the status line. */
  stop(): void;
}

export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
}

/** 75 → "1:15", 3725 → "1:02:05". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

export interface UploadState {
  objects: number;
  totalObjects: number;
  bytes: number;
  totalBytes: number;
  /** Bytes per second, recent. */
  rate: number;
}

/** The status line for an upload, fitted to `width` columns. */
export function renderUploadLine(s: UploadState, width: number): string {
  // Bytes drive the bar and the ETA: one 100 MB file is not one ten-thousandth of the work.
  const frac = s.totalBytes > 0 ? Math.min(1, Math.max(0, s.bytes / s.totalBytes)) : s.totalObjects > 0 ? s.objects / s.totalObjects : 1;
  const eta = s.rate > 0 ? (s.totalBytes - s.bytes) / s.rate : NaN;
  const text =
    ` ${String(Math.floor(frac * 100)).padStart(3)}% ${s.objects}/${s.totalObjects} objects` +
    ` ${formatBytes(s.bytes)}/${formatBytes(s.totalBytes)} ${formatBytes(s.rate)}/s ETA ${formatDuration(eta)}`;
  const barWidth = Math.max(0, Math.min(30, width - text.length - 3));
  if (barWidth < 5) return text.trimStart().slice(0, Math.max(0, width - 1));
  const filled = Math.round(frac * barWidth);
  return `[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}]${text}`;
}

/** Rate over a sliding window of samples, so a stall shows quickly and one fast burst does not dominate. */
export class RateMeter {
  private samples: Array<{ t: number; v: number }> = [];
  constructor(private readonly windowMs = 5000) {}
  sample(t: number, total: number): number {
    this.samples.push({ t, v: total });
    while (this.samples.length > 2 && t - this.samples[0]!.t > this.windowMs) this.samples.shift();
    const first = this.samples[0]!;
    const dt = (t - first.t) / 1000;
    return dt > 0 ? (total - first.v) / dt : 0;
  }
}

/** Redraws one line on a terminal stream, at most 10 times a second. */
export class TerminalProgress implements Progress {
  private label = '';
  private upload: UploadState | undefined;
  private readonly meter = new RateMeter();
  private timer: NodeJS.Timeout | undefined;
  private shown = false;

  constructor(private readonly out: NodeJS.WriteStream) {}

  stage(text: string): void {
    this.label = text;
    this.upload = undefined;
    this.draw();
  }

  startUpload(objects: number, bytes: number): void {
    this.label = '';
    this.upload = { objects: 0, totalObjects: objects, bytes: 0, totalBytes: bytes, rate: 0 };
    this.timer ??= setInterval(() => this.draw(), 100);
    this.timer.unref();
    this.draw();
  }

  addBytes(n: number): void {
    if (this.upload) this.upload.bytes += n;
  }

  addObjects(n: number): void {
    if (this.upload) this.upload.objects += n;
  }

  warn(text: string): void {
    this.clear();
    this.out.write(`${text}\n`);
    this.draw();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.clear();
  }

  private draw(): void {
    const width = this.out.columns || 80;
    let line: string;
    if (this.upload) {
      this.upload.rate = this.meter.sample(Date.now(), this.upload.bytes);
      line = renderUploadLine(this.upload, width);
    } else line = this.label.slice(0, width - 1);
    this.out.write(`\r\x1b[2K${line}`);
    this.shown = true;
  }

  private clear(): void {
    if (this.shown) this.out.write('\r\x1b[2K');
    this.shown = false;
  }
}

/** Not a terminal: stay quiet except for warnings (retries), one line each. */
export class QuietProgress implements Progress {
  constructor(private readonly out: NodeJS.WritableStream) {}
  stage(): void {}
  startUpload(): void {}
  addBytes(): void {}
  addObjects(): void {}
  warn(text: string): void {
    this.out.write(`${text}\n`);
  }
  stop(): void {}
}
