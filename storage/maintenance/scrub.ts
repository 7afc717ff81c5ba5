import { CairnError } from '../errors';
import type { Repo } from '../repo/repo';
import { checkObject, QUARANTINE_PREFIX, quarantine } from './fsck';
import { objectLabel, parseObjectKey } from './reach';

/**
 * The background scrub: every object of a repository verified as fsck
 * verifies it (storage/maintenance/fsck.ts checkObject: the upload's checks),
 * slowly, pass after pass, at `objectsPerSecond` (and, if set, at most
 * `bytesPerSecond`). The objects are taken folder by folder (`objects/00` …
 * `objects/ff`), each folder's names sorted, so the position (the last key
 * verified) is a total order: the scrub resumes after it when restarted. A
 * corrupt object is moved into the quarantine (`state/cairn/quarantine/`,
 * fsck's) at once, so it answers 404 from then on and the next push of a
 * commit holding it uploads it again; `onCorrupt` tells the operator.
 *
 * Status and position live in the repository's local-only
 * `state/cairn/scrub.json` (written at most every STATUS_EVERY_MS, at each
 * finding and at the end of a pass), so any process can answer the status
 * API and a restart loses at most a few seconds of progress.
 */

export const SCRUB_STATUS_KEY = 'state/cairn/scrub.json';
const STATUS_EVERY_MS = 2000;
/** Findings kept in the status (newest last). */
export const MAX_FINDINGS = 100;

export interface ScrubFinding {
  object: string;
  error: string;
  at: string;
  /** Where the object went. */
  quarantinedTo: string;
}

export interface ScrubPass {
  startedAt: string;
  finishedAt: string;
  objects: number;
  bytes: number;
  corrupt: number;
}

export interface ScrubStatus {
  /** The last object key verified in the current pass; null at the start of a pass. */
  position: string | null;
  passStartedAt: string | null;
  passObjects: number;
  passBytes: number;
  passCorrupt: number;
  lastPass: ScrubPass | null;
  passes: number;
  /** Every object verified and corrupt object found, all passes. */
  totalObjects: number;
  totalCorrupt: number;
  findings: ScrubFinding[];
  updatedAt: string | null;
}

export interface ScrubRate {
  objectsPerSecond: number;
  bytesPerSecond?: number;
}

export interface ScrubOptions {
  /** Read again before each object, so a changed setting applies at once; null stops the scrub. */
  rate(): ScrubRate | null;
  maxFileSize: number;
  signal: AbortSignal;
  /** After each object verified (metrics). */
  onObject?(bytes: number): void;
  onCorrupt?(f: ScrubFinding): void;
  /** Between passes (default: none, the next pass starts at once). */
  pauseBetweenPassesMs?: number;
}

export function emptyScrubStatus(): ScrubStatus {
  return { position: null, passStartedAt: null, passObjects: 0, passBytes: 0, passCorrupt: 0, lastPass: null, passes: 0, totalObjects: 0, totalCorrupt: 0, findings: [], updatedAt: null };
}

export async function readScrubStatus(repo: Repo): Promise<ScrubStatus> {
  const got = await repo.backend.read(SCRUB_STATUS_KEY).catch(() => null);
  if (!got) return emptyScrubStatus();
  try {
    const s = JSON.parse(got.data.toString('utf8')) as ScrubStatus;
    if (typeof s !== 'object' || s === null || !Array.isArray(s.findings)) return emptyScrubStatus();
    if (s.position !== null && (typeof s.position !== 'string' || !s.position.startsWith('objects/'))) s.position = null;
    return { ...emptyScrubStatus(), ...s };
  } catch {
    return emptyScrubStatus(); // a torn or edited file: start the pass again
  }
}

async function writeStatus(repo: Repo, s: ScrubStatus): Promise<void> {
  s.updatedAt = new Date().toISOString();
  await repo.backend.write(SCRUB_STATUS_KEY, Buffer.from(JSON.stringify(s, null, 1)));
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * Scrubs `repo` until the signal aborts or rate() answers null; resolves then
 * (after saving the position). Errors reading the repository reject.
 */
export async function scrub(repo: Repo, opts: ScrubOptions): Promise<void> {
  const status = await readScrubStatus(repo);
  let lastSave = performance.now();
  const save = async (force = false) => {
    if (!force && performance.now() - lastSave < STATUS_EVERY_MS) return;
    lastSave = performance.now();
    await writeStatus(repo, status);
  };
  // The pace: a budget of time per object and per byte from the moment this loop (re)started.
  let clockStart = performance.now();
  let spentMs = 0;
  let lastRate: string | null = null;
  const stopped = () => opts.signal.aborted;

  try {
    for (;;) {
      if (status.passStartedAt === null) {
        status.passStartedAt = new Date().toISOString();
        status.position = null;
        status.passObjects = status.passBytes = status.passCorrupt = 0;
      }
      const start = status.position ? status.position.slice('objects/'.length, 'objects/'.length + 2) : '00';
      for (const prefix of HEX) {
        if (prefix < start) continue;
        const keys: string[] = [];
        for await (const key of repo.backend.list(`objects/${prefix}`)) if (parseObjectKey(key)) keys.push(key);
        keys.sort();
        for (const key of keys) {
          if (status.position !== null && key <= status.position) continue;
          const rate = opts.rate();
          if (stopped() || rate === null) return;
          const rateKey = `${rate.objectsPerSecond}/${rate.bytesPerSecond ?? ''}`;
          if (rateKey !== lastRate) {
            lastRate = rateKey;
            clockStart = performance.now();
            spentMs = 0;
          }
          const o = parseObjectKey(key)!;
          let size = 0;
          let error: string | null = null;
          try {
            const r = await checkObject(repo, key, o.checksum, o.type, opts.maxFileSize);
            size = r ?? 0;
          } catch (e) {
            error = e instanceof CairnError ? e.message : (e as Error).message;
          }
          status.position = key;
          status.passObjects++;
          status.totalObjects++;
          status.passBytes += size;
          opts.onObject?.(size);
          if (error !== null) {
            const name = objectLabel(o.checksum, o.type);
            const to = `${QUARANTINE_PREFIX}/scrub-${new Date().toISOString().replace(/[:.]/g, '-')}/${name}`;
            await quarantine(repo, key, to);
            const f: ScrubFinding = { object: name, error, at: new Date().toISOString(), quarantinedTo: to };
            status.passCorrupt++;
            status.totalCorrupt++;
            status.findings.push(f);
            if (status.findings.length > MAX_FINDINGS) status.findings.splice(0, status.findings.length - MAX_FINDINGS);
            await save(true);
            opts.onCorrupt?.(f);
          } else await save();
          // Wait until this object's share of time is spent.
          spentMs += 1000 / rate.objectsPerSecond + (rate.bytesPerSecond ? (size * 1000) / rate.bytesPerSecond : 0);
          const ahead = spentMs - (performance.now() - clockStart);
          if (ahead > 1) await sleep(Math.min(ahead, 60_000), opts.signal);
          else if (ahead < -5000) {
            // Far behind (a slow disk, a huge object): do not burst to catch up.
            clockStart = performance.now();
            spentMs = 0;
          }
        }
      }
      status.lastPass = { startedAt: status.passStartedAt!, finishedAt: new Date().toISOString(), objects: status.passObjects, bytes: status.passBytes, corrupt: status.passCorrupt };
      status.passes++;
      status.passStartedAt = null;
      status.position = null;
      await save(true);
      // At least a second between passes (a minute after an empty one): never a busy loop.
      await sleep(Math.max(opts.pauseBetweenPassesMs ?? 0, status.lastPass.objects === 0 ? 60_000 : 1000), opts.signal);
      if (stopped()) return;
    }
  } finally {
    await writeStatus(repo, status).catch(() => undefined);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
