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
  error?: { code: string; message: string };
  createdAt: string;
  updatedAt: string;
  startedAt?: string;
  finishedAt?: string;
}

export const DELTA_RECORDS_PREFIX = 'jobs/delta/';
/** A record is a few hundred bytes; anything much larger is not one. */
const MAX_RECORD_BYTES = 16 * 1024;
const STATES: readonly DeltaRecordState[] = ['queued', 'running', 'done', 'failed', 'cancelled'];

/** The key of the record of delta `from → to` of `repo` (from null: from scratch). */
export function deltaRecordKey(repo: string, from: string | null, to: string): string {
  validateRepoName(repo);
  if ((from !== null && !isChecksum(from)) || !isChecksum(to)) throw new Error('a delta record names commit checksums');
  return `${DELTA_RECORDS_PREFIX}${repo}/${from ?? 'scratch'}-${to}.json`;
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
