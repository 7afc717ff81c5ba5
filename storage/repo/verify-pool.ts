import cluster from 'node:cluster';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { settle, verifyObject, type Verdict, type VerifyJob } from './verify';

/**
 * Verification threads for one process: `cpus / processes` (the processes of
 * `cairn serve --workers N` share the machine), at least 1, at most 8. On 2
 * CPUs and one process, 2 threads: the request thread parses, reads and
 * writes while both verify.
 */
export function defaultVerifyThreads(cpus: number, processes = 1): number {
  const share = Math.floor(Math.max(1, cpus) / Math.max(1, processes));
  return Math.max(1, Math.min(8, share));
}

export interface VerifyPoolOptions {
  /** Verification threads; 0 verifies on the calling thread. */
  threads: number;
  /**
   * Objects at most this many bytes are verified on the calling thread: for a
   * dirmeta of a hundred bytes the check costs less than the trip to a thread.
   */
  inThreadBytes?: number;
  /** Jobs handed to one thread at a time (the rest wait here, unbounded only by what callers hold). */
  perThread?: number;
}

/** A batch as it goes to a verification thread: the jobs, and their bytes one after the other. */
export interface WireBatch {
  jobs: WireJob[];
  bytes: Uint8Array;
}

export interface WireJob {
  id: number;
  checksum: string;
  type: VerifyJob['type'];
  maxFileSize: number;
  /** Bytes of `WireBatch.bytes` that are this object's, after the previous jobs'. */
  length: number;
}

interface Pending {
  /** Set when handed to a thread. */
  id: number;
  job: VerifyJob;
  resolve: () => void;
  reject: (e: unknown) => void;
}

interface Slot {
  worker: Worker;
  /** Jobs posted to the thread and not answered yet, by id. */
  busy: Map<number, Pending>;
}

/** The compiled worker script beside this module (dist/…/verify-worker.js). */
const WORKER_SCRIPT = path.join(__dirname, 'verify-worker.js');

/**
 * verifyObject on a few worker threads. The decision is verifyObject's alone,
 * wherever it runs: a thread answers a Verdict that `settle` turns back into
 * the very CairnError the calling thread would have thrown. Threads start on
 * first use, keep the process alive only while they hold a job (an idle one
 * is unref'd: a pool never holds up shutdown), and a thread that dies
 * fails only the jobs it held (500, not the object's fault); the next job
 * starts another.
 */
export class VerifyPool {
  readonly threads: number;
  private readonly inThreadBytes: number;
  private readonly perThread: number;
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private flushing = false;
  private closed = false;

  constructor(opts: VerifyPoolOptions) {
    this.threads = Math.max(0, Math.floor(opts.threads));
    this.inThreadBytes = opts.inThreadBytes ?? 512;
    this.perThread = opts.perThread ?? 32;
  }

  /** Resolves when `job` is what its name says; rejects with the CairnError verifyObject throws otherwise. */
  verify(job: VerifyJob): Promise<void> {
    if (this.threads === 0 || this.closed || job.data.length <= this.inThreadBytes) return verifyObject(job);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ id: 0, job, resolve, reject });
      // Jobs that arrive in one turn go to the threads together, one message each.
      if (!this.flushing) {
        this.flushing = true;
        queueMicrotask(() => {
          this.flushing = false;
          this.dispatch();
        });
      }
    });
  }

  /** Ends the threads; jobs still held fail. Later calls verify on the calling thread. */
  async close(): Promise<void> {
    this.closed = true;
    const slots = this.slots.splice(0);
    for (const p of this.queue.splice(0)) p.reject(new Error('verification pool closed'));
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  /** Hands queued jobs to the least busy threads, starting threads while all are busy. */
  private dispatch(): void {
    const batches = new Map<Slot, Pending[]>();
    while (this.queue.length > 0) {
      let slot = this.leastBusy();
      if ((!slot || slot.busy.size > 0) && this.slots.length < this.threads) slot = this.spawn();
      if (!slot || slot.busy.size >= this.perThread) break;
      const p = this.queue.shift()!;
      p.id = this.nextId++;
      slot.busy.set(p.id, p);
      let batch = batches.get(slot);
      if (!batch) batches.set(slot, (batch = []));
      batch.push(p);
    }
    for (const [slot, batch] of batches) {
      // The batch's bytes copied into one buffer, moved (not cloned) to the thread: one transfer per
      // message, not one per object. The callers keep their own bytes to write.
      const bytes = new Uint8Array(batch.reduce((n, p) => n + p.job.data.byteLength, 0));
      let at = 0;
      const jobs: WireJob[] = batch.map((p) => {
        bytes.set(p.job.data, at);
        at += p.job.data.byteLength;
        return { id: p.id, checksum: p.job.checksum, type: p.job.type, maxFileSize: p.job.maxFileSize, length: p.job.data.byteLength };
      });
      const message: WireBatch = { jobs, bytes };
      slot.worker.postMessage(message, [bytes.buffer]);
      // A thread with work keeps the process alive until it answers (a caller awaits it); an idle one never does.
      slot.worker.ref();
    }
  }

  private leastBusy(): Slot | undefined {
    let best: Slot | undefined;
    for (const s of this.slots) if (!best || s.busy.size < best.busy.size) best = s;
    return best;
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SCRIPT);
    worker.unref();
    const slot: Slot = { worker, busy: new Map() };
    worker.on('message', (answers: Array<{ id: number; verdict: Verdict }>) => {
      for (const { id, verdict } of answers) {
        const p = slot.busy.get(id);
        if (!p) continue;
        slot.busy.delete(id);
        try {
          settle(verdict);
          p.resolve();
        } catch (e) {
          p.reject(e);
        }
      }
      if (slot.busy.size === 0) worker.unref();
      this.dispatch();
    });
    const fail = (why: Error) => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      for (const p of slot.busy.values()) p.reject(why);
      slot.busy.clear();
      if (!this.closed && this.queue.length > 0) this.dispatch();
    };
    worker.on('error', (e) => fail(new Error(`verification thread failed: ${e.message}`)));
    worker.on('exit', (code) => fail(new Error(`verification thread exited (${code})`)));
    this.slots.push(slot);
    return slot;
  }
}

let shared: VerifyPool | undefined;
let sharedProcesses: number | undefined;

/**
 * The processes that verify on this machine (N for each worker of `cairn
 * serve --workers N`, 1 for a single process); sizes the shared pool, which
 * is made on the first upload. Not called, a cluster worker assumes serve's
 * default count, one process fewer than CPUs (fewer threads than the machine
 * could run when --workers asks for fewer processes, never more).
 */
export function setVerifyProcesses(n: number): void {
  sharedProcesses = Math.max(1, Math.floor(n));
}

/**
 * This process's pool: CAIRN_VERIFY_THREADS threads (0: verify on the request
 * thread), by default defaultVerifyThreads of the CPUs and processes.
 */
export function sharedVerifyPool(): VerifyPool {
  if (!shared) {
    const cpus = os.availableParallelism();
    const env = process.env.CAIRN_VERIFY_THREADS;
    const processes = sharedProcesses ?? (cluster.isWorker ? Math.max(1, cpus - 1) : 1);
    const threads = env !== undefined && /^\d{1,2}$/.test(env) ? Number(env) : defaultVerifyThreads(cpus, processes);
    shared = new VerifyPool({ threads });
  }
  return shared;
}
