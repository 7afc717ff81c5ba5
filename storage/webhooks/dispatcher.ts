import { createHmac, randomUUID } from 'node:crypto';
import type { WebhookConfig, WebhookEventName, WebhookStore } from './config';

/**
 * Webhook deliveries: an event of a repository becomes one HTTP POST of a
 * JSON body to each of its webhooks that wants it, signed with
 * `X-Cairn-Signature: sha256=<hex HMAC-SHA256(secret, body)>` (also
 * `X-Cairn-Event` and `X-Cairn-Delivery`, the delivery's id, the same on
 * every attempt). A 2xx answer delivers it; anything else (another status,
 * no answer within the attempt's deadline, a refused connection) is tried
 * again after an exponential backoff (base, 2×base, 4×base…, capped), up to
 * `maxAttempts` attempts. Bounded everywhere: at most `maxPending`
 * deliveries wait or run (more are logged as `dropped`), `concurrency` run
 * at once, each attempt's deadline covers connecting, the answer and its
 * body (read at most 64 KiB), and the log keeps the last `logSize` per
 * repository in memory (a restart forgets it and what was pending).
 *
 * One dispatcher per server: in a cluster, the primary's (workers send it
 * their events: server/api/webhooks.ts), so one log answers everywhere.
 * Outbound HTTP only (node's fetch); it knows nothing of Cairn's own server.
 */

export interface WebhookEvent {
  event: WebhookEventName;
  repo: string;
  /** The event's fields (refs moved, the delta, the corrupt object…). */
  data: Record<string, unknown>;
}

export type DeliveryState = 'pending' | 'delivered' | 'failed' | 'dropped';

export interface Delivery {
  id: string;
  webhook: string;
  url: string;
  event: WebhookEventName;
  state: DeliveryState;
  attempts: number;
  /** The last attempt's HTTP status, if it got one. */
  responseCode?: number;
  /** Why the last attempt failed. */
  error?: string;
  createdAt: string;
  lastAttemptAt?: string;
  nextAttemptAt?: string;
  finishedAt?: string;
}

export interface DispatcherOptions {
  /** Attempts per delivery; default 5. */
  maxAttempts?: number;
  /** Backoff before the 2nd attempt; doubles each time; default 2 s. */
  backoffMs?: number;
  /** Longest backoff; default 5 min. */
  maxBackoffMs?: number;
  /** Deadline of one attempt; default 10 s. */
  timeoutMs?: number;
  /** Deliveries waiting or running at most; default 1000. */
  maxPending?: number;
  /** Bytes of the bodies of those deliveries at most (a ref update of 1,000 refs is ~0.5 MB, once per webhook); default 64 MiB. */
  maxPendingBytes?: number;
  /** Attempts at once; default 4. */
  concurrency?: number;
  /** Deliveries kept in the log per repository; default 100. */
  logSize?: number;
  /** Told of each delivery that finished (delivered, failed, dropped): for logs. */
  onFinished?(repo: string, d: Delivery): void;
}

/** Environment: CAIRN_WEBHOOK_ATTEMPTS, CAIRN_WEBHOOK_BACKOFF_MS, CAIRN_WEBHOOK_TIMEOUT_MS, CAIRN_WEBHOOK_MAX_PENDING. */
export function dispatcherOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): DispatcherOptions {
  const int = (name: string, min: number, max: number): number | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new Error(`${name} must be an integer from ${min} to ${max}, not "${v}"`);
    return Number(v);
  };
  return {
    maxAttempts: int('CAIRN_WEBHOOK_ATTEMPTS', 1, 20),
    backoffMs: int('CAIRN_WEBHOOK_BACKOFF_MS', 1, 3_600_000),
    timeoutMs: int('CAIRN_WEBHOOK_TIMEOUT_MS', 1, 300_000),
    maxPending: int('CAIRN_WEBHOOK_MAX_PENDING', 1, 100_000),
  };
}

/** The signature header's value for `body`. */
export function webhookSignature(secret: string, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

const MAX_RESPONSE_BYTES = 64 * 1024;
const MAX_REPOS_LOGGED = 10_000;

interface Task {
  repo: string;
  hook: WebhookConfig;
  body: string;
  delivery: Delivery;
}

export class WebhookDispatcher {
  private readonly o: Required<Omit<DispatcherOptions, 'onFinished'>> & Pick<DispatcherOptions, 'onFinished'>;
  private readonly logs = new Map<string, Delivery[]>();
  private readonly ready: Task[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly inFlight = new Map<Task, AbortController>();
  private pending = 0;
  private pendingBytes = 0;
  private closed = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly store: Pick<WebhookStore, 'get'>,
    opts: DispatcherOptions = {},
  ) {
    const d = (v: number | undefined, def: number) => (v === undefined ? def : v);
    this.o = {
      maxAttempts: d(opts.maxAttempts, 5),
      backoffMs: d(opts.backoffMs, 2000),
      maxBackoffMs: d(opts.maxBackoffMs, 300_000),
      timeoutMs: d(opts.timeoutMs, 10_000),
      maxPending: d(opts.maxPending, 1000),
      maxPendingBytes: d(opts.maxPendingBytes, 64 * 1024 * 1024),
      concurrency: d(opts.concurrency, 4),
      logSize: d(opts.logSize, 100),
      onFinished: opts.onFinished,
    };
  }

  /** Queues the event's deliveries (never throws, never waits for them). */
  async emit(e: WebhookEvent): Promise<void> {
    if (this.closed) return;
    let hooks: WebhookConfig[];
    try {
      hooks = await this.store.get(e.repo);
    } catch {
      return; // unreadable configuration: nothing to deliver to (the API says why when asked)
    }
    const at = new Date().toISOString();
    for (const hook of hooks) {
      if (hook.events && !hook.events.includes(e.event)) continue;
      const id = randomUUID();
      const body = JSON.stringify({ id, event: e.event, repo: e.repo, time: at, ...e.data });
      const delivery: Delivery = { id, webhook: hook.id, url: hook.url, event: e.event, state: 'pending', attempts: 0, createdAt: at };
      this.log(e.repo, delivery);
      if (this.pending >= this.o.maxPending || this.pendingBytes + body.length > this.o.maxPendingBytes) {
        this.finish(e.repo, delivery, 'dropped', `${this.pending} deliveries (${this.pendingBytes} bytes) already pending`);
        continue;
      }
      this.pending++;
      this.pendingBytes += body.length;
      this.ready.push({ repo: e.repo, hook, body, delivery });
    }
    this.pump();
  }

  /** The repository's last deliveries, newest first. */
  deliveries(repo: string, limit = 100): Delivery[] {
    return (this.logs.get(repo) ?? []).slice(-limit).reverse().map((d) => ({ ...d }));
  }

  /** Resolves when nothing is pending (tests). */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops: attempts in flight are aborted, nothing more is sent. */
  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const c of this.inFlight.values()) c.abort();
    this.ready.length = 0;
    this.pending = 0;
    this.pendingBytes = 0;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private log(repo: string, d: Delivery): void {
    let list = this.logs.get(repo);
    if (!list) {
      if (this.logs.size >= MAX_REPOS_LOGGED) this.logs.delete(this.logs.keys().next().value!);
      list = [];
      this.logs.set(repo, list);
    }
    list.push(d);
    if (list.length > this.o.logSize) list.splice(0, list.length - this.o.logSize);
  }

  private pump(): void {
    while (!this.closed && this.inFlight.size < this.o.concurrency && this.ready.length > 0) {
      const task = this.ready.shift()!;
      const ctl = new AbortController();
      this.inFlight.set(task, ctl);
      void this.attempt(task, ctl).finally(() => {
        this.inFlight.delete(task);
        this.pump();
      });
    }
  }

  private async attempt(task: Task, ctl: AbortController): Promise<void> {
    const d = task.delivery;
    d.attempts++;
    d.lastAttemptAt = new Date().toISOString();
    delete d.nextAttemptAt;
    const deadline = setTimeout(() => ctl.abort(new Error(`no answer within ${this.o.timeoutMs} ms`)), this.o.timeoutMs);
    let ok = false;
    try {
      const res = await fetch(task.hook.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Cairn-Webhook/1',
          'x-cairn-event': d.event,
          'x-cairn-delivery': d.id,
          'x-cairn-signature': webhookSignature(task.hook.secret, task.body),
        },
        body: task.body,
        redirect: 'manual',
        signal: ctl.signal,
      });
      d.responseCode = res.status;
      await drain(res);
      ok = res.status >= 200 && res.status < 300;
      if (ok) delete d.error;
      else d.error = `answered ${res.status}`;
    } catch (e) {
      delete d.responseCode;
      const reason = ctl.signal.aborted ? ctl.signal.reason : e;
      d.error = String((reason as Error)?.message ?? reason).slice(0, 300);
    } finally {
      clearTimeout(deadline);
    }
    if (this.closed) return;
    if (ok) return this.finish(task.repo, d, 'delivered', undefined, task.body.length);
    if (d.attempts >= this.o.maxAttempts) return this.finish(task.repo, d, 'failed', undefined, task.body.length);
    const wait = Math.min(this.o.maxBackoffMs, this.o.backoffMs * 2 ** (d.attempts - 1));
    d.nextAttemptAt = new Date(Date.now() + wait).toISOString();
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.ready.push(task);
      this.pump();
    }, wait);
    t.unref();
    this.timers.add(t);
  }

  private finish(repo: string, d: Delivery, state: Exclude<DeliveryState, 'pending'>, error?: string, bodyBytes = 0): void {
    d.state = state;
    d.finishedAt = new Date().toISOString();
    if (error) d.error = error;
    if (state !== 'dropped') {
      this.pending--;
      this.pendingBytes -= bodyBytes;
      if (this.pending === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
    this.o.onFinished?.(repo, { ...d });
  }
}

/** Reads (and discards) at most MAX_RESPONSE_BYTES of the answer, then lets the connection go. */
async function drain(res: Response): Promise<void> {
  if (!res.body) return;
  const reader = res.body.getReader();
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      n += value.byteLength;
      if (n > MAX_RESPONSE_BYTES) {
        await reader.cancel();
        return;
      }
    }
  } finally {
    reader.releaseLock();
  }
}
