import { ObjectType } from '../../storage/objects/types';

/** What the planner needs of an object. */
export interface Sized {
  name: string;
  type: ObjectType;
  size: number;
}

export interface BatchLimits {
  /** Objects at least this big go alone in a PUT (streamed, no multipart framing, own retry). */
  largeObjectBytes: number;
  /** A multipart request carries at most this many bytes of objects… */
  maxBatchBytes: number;
  /** …and at most this many objects (bounds server-side temp files and the cost of a retry). */
  maxBatchObjects: number;
}

export const DEFAULT_LIMITS: BatchLimits = {
  largeObjectBytes: 4 * 1024 * 1024,
  maxBatchBytes: 8 * 1024 * 1024,
  maxBatchObjects: 256,
};

export type UploadJob<T extends Sized> = { kind: 'multipart'; objects: T[]; bytes: number } | { kind: 'put'; objects: [T]; bytes: number };

/**
 * Upload order, in phases that each finish before the next starts: the tree
 * (file content, dirtrees and dirmetas together), then the commit, then its
 * detached metadata. So an interrupted push never leaves the server a commit
 * whose tree is not there (the ref update would refuse it anyway; this keeps
 * a half-pushed commit invisible). Content and dirtrees share a phase: the
 * server checks a dirtree's children only when a ref moves, and a wait for
 * the last content batch before the first dirtree batch cost an incremental
 * push (hundreds of changed dirtrees) a few tenths of a second.
 */
export function uploadPhases<T extends Sized>(objects: readonly T[]): T[][] {
  const rank = (t: ObjectType): number => {
    switch (t) {
      case ObjectType.File:
      case ObjectType.DirTree:
      case ObjectType.DirMeta:
        return 0;
      case ObjectType.Commit:
        return 1;
      default:
        return 2; // commitmeta: signatures of a commit that is already there
    }
  };
  const phases: T[][] = [[], [], []];
  for (const o of objects) phases[rank(o.type)]!.push(o);
  return phases.filter((p) => p.length > 0);
}

/**
 * Groups one phase into requests: each large object alone (PUT), small ones
 * packed into multipart batches bounded by count and bytes. Large jobs come
 * first so the longest transfers start early and the tail of the phase is
 * made of small batches that balance across workers.
 */
export function planBatches<T extends Sized>(objects: readonly T[], limits: BatchLimits = DEFAULT_LIMITS): UploadJob<T>[] {
  const puts: UploadJob<T>[] = [];
  const batches: UploadJob<T>[] = [];
  let cur: T[] = [];
  let curBytes = 0;
  const flush = () => {
    if (cur.length) batches.push({ kind: 'multipart', objects: cur, bytes: curBytes });
    cur = [];
    curBytes = 0;
  };
  for (const o of objects) {
    if (o.size >= limits.largeObjectBytes) {
      puts.push({ kind: 'put', objects: [o], bytes: o.size });
      continue;
    }
    if (cur.length > 0 && (cur.length >= limits.maxBatchObjects || curBytes + o.size > limits.maxBatchBytes)) flush();
    cur.push(o);
    curBytes += o.size;
  }
  flush();
  puts.sort((a, b) => b.bytes - a.bytes);
  return [...puts, ...batches];
}

/** Splits `items` into chunks of at most `size` (the missing-objects query takes ≤ 100,000 names). */
export function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
