import { createHash, randomBytes } from 'node:crypto';
import type { Backend } from '../backends/backend';
import { stateStore } from '../backends/factory';
import { isChecksum } from '../objects/checksum';
import { validateRepoName } from '../repo/names';

/**
 * Durable delta-job records in the server's state store (storage/backends/
 * factory.ts stateStore: one store for every replica on one data location).
 * One record per delta, at a key derived from the delta alone
 * (`jobs/delta/REPO/FROM|scratch-TO.json`), so two replicas queueing the same
 * delta meet at one record: it is written once (`create`), and every change
 * after that is a compare-and-swap on the version read. What the states mean
 * and who may change them: server/jobs/durable.ts.
 */

export type DeltaRecordState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface DeltaRecord {
  repo: string;
  from: string | null;
  to: string;
  /** The local queues' priority (lower runs first). */
  priority: number;
  /** Who asked: 'policy', 'on-demand', 'api'… (automatic jobs may be cancelled as obsolete). */
  source: string;
  state: DeltaRecordState;
  /** While running: the replica holding the lease (random per process start). */
  owner?: string;
  /** Bumped by every renewal: the record's version changes, which is what other replicas watch. */
  renewals?: number;
  /** Runs started (claims and takeovers). */
  attempts: number;
  /**
   * The job id every replica shows for this record (deltaJobId): drawn when the
   * record is written anew or set back to queued from a finished state (a new
   * request: a new job), kept by claims, takeovers, renewals, hand-backs and
   * demotions (the same job). Records written before it existed get one derived
   * from their key and createdAt (recordJobId).
   */
  job?: string;
  /** When done: what the run left (shown by the jobs API of every replica). */
  result?: DeltaRecordResult;
  error?: { code: string; message: string };
  createdAt: string;
  updatedAt: string;
  startedAt?: string;
  finishedAt?: string;
}

export interface DeltaRecordResult {
  existed: boolean;
  digest?: string;
  totalSize?: number;
  parts?: number;
}

export const DELTA_RECORDS_PREFIX = 'jobs/delta/';
/** A delta job id: 16 hex of SHA-256 of the record's key (the delta), '-', 8 hex of its generation. */
const DELTA_JOB_ID = /^[0-9a-f]{16}-[0-9a-f]{8}$/;
/** A record is a few hundred bytes; anything much larger is not one. */
const MAX_RECORD_BYTES = 16 * 1024;
const STATES: readonly DeltaRecordState[] = ['queued', 'running', 'done', 'failed', 'cancelled'];

/** The key of the record of delta `from → to` of `repo` (from null: from scratch). */
export function deltaRecordKey(repo: string, from: string | null, to: string): string {
  validateRepoName(repo);
  if ((from !== null && !isChecksum(from)) || !isChecksum(to)) throw new Error('a delta record names commit checksums');
  return `${DELTA_RECORDS_PREFIX}${repo}/${from ?? 'scratch'}-${to}.json`;
}

/** Whether `id` has the form of a delta job id (deltaJobId). */
export function isDeltaJobId(id: string): boolean {
  return DELTA_JOB_ID.test(id);
}

/** A new job id for the record at `key`: the key's hash (the same for every job of one delta) and a random generation. */
export function deltaJobId(key: string, generation: string = randomBytes(4).toString('hex')): string {
  return `${createHash('sha256').update(key).digest('hex').slice(0, 16)}-${generation}`;
}

/** The job id of record `r` stored at `key`: its own, or (records written before ids were stored) one derived from its createdAt. */
export function recordJobId(key: string, r: DeltaRecord): string {
  return r.job ?? deltaJobId(key, createHash('sha256').update(r.createdAt).digest('hex').slice(0, 8));
}

/** The records' keys of `repo`'s deltas, or of every repository. */
export function deltaRecordsPrefix(repo?: string): string {
  return repo === undefined ? DELTA_RECORDS_PREFIX : `${DELTA_RECORDS_PREFIX}${validateRepoName(repo)}/`;
}

export function encodeDeltaRecord(r: DeltaRecord): Buffer {
  return Buffer.from(JSON.stringify(r) + '\n');
}

/** The record in `data` if it is a well-formed one stored at `key`; null otherwise (treated as garbage). */
export function parseDeltaRecord(key: string, data: Buffer): DeltaRecord | null {
  if (data.length > MAX_RECORD_BYTES) return null;
  let o: Partial<DeltaRecord>;
  try {
    o = JSON.parse(data.toString('utf8')) as Partial<DeltaRecord>;
  } catch {
    return null;
  }
  if (!o || typeof o !== 'object') return null;
  if (typeof o.repo !== 'string' || typeof o.to !== 'string' || !(o.from === null || typeof o.from === 'string')) return null;
  if (!STATES.includes(o.state as DeltaRecordState) || !Number.isInteger(o.priority) || typeof o.source !== 'string' || !Number.isInteger(o.attempts)) return null;
  if (o.owner !== undefined && typeof o.owner !== 'string') return null;
  if (typeof o.createdAt !== 'string') return null;
  if (o.job !== undefined && (typeof o.job !== 'string' || !isDeltaJobId(o.job))) return null;
  if (o.result !== undefined && (typeof o.result !== 'object' || o.result === null || typeof o.result.existed !== 'boolean')) return null;
  try {
    if (deltaRecordKey(o.repo, o.from, o.to) !== key) return null;
  } catch {
    return null;
  }
  return o as DeltaRecord;
}

/** A record as read: the record (null when unreadable garbage) and the version to compare-and-swap on. */
export interface ReadRecord {
  record: DeltaRecord | null;
  version: string;
}

export async function readDeltaRecord(store: Backend, key: string): Promise<ReadRecord | null> {
  const r = await store.read(key);
  if (!r) return null;
  return { record: parseDeltaRecord(key, r.data), version: r.info.version };
}

/** Replaces the record at `key` if its version is still `expected` (null: only if absent); the new version or null. */
export function swapDeltaRecord(store: Backend, key: string, r: DeltaRecord, expected: string | null): Promise<string | null> {
  return store.compareAndSwap(key, encodeDeltaRecord(r), expected);
}

/** Up to `max` record keys below `prefix` (every repository's by default). */
export async function listDeltaRecordKeys(store: Backend, max: number, prefix = DELTA_RECORDS_PREFIX): Promise<string[]> {
  const out: string[] = [];
  for await (const k of store.list(prefix)) {
    if (!k.endsWith('.json')) continue;
    out.push(k);
    if (out.length >= max) break;
  }
  return out;
}

/** The store the records of data location `location` live in: its state store, shared by every replica on it. */
export function deltaRecordStore(location: string): Backend {
  return stateStore(location);
}
