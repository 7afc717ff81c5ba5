import { isChecksum } from '../../storage/objects/checksum';
import { PushApi, MAX_MISSING_QUERY, type RefChange } from './api';
import { describeFailure, PushError } from './errors';
import { ApiClient, ApiError } from './http';
import { enumerateCommit, openLocalRepo, openObject, resolveLocalRef, statObjects, type LocalObject } from './local';
import { chunk, DEFAULT_LIMITS, planBatches, uploadPhases, type BatchLimits } from './plan';
import { runPool } from './pool';
import type { Progress } from './progress';
import { DEFAULT_RETRY, type RetryPolicy } from './retry';
import type { PushTarget } from './target';

export interface PushOptions {
  target: PushTarget;
  token?: string;
  /** Local archive repository; absent: REF names a commit already on the server (promotion). */
  localRepo?: string;
  /** Local ref, `REMOTE:REF` or checksum (with no local repo: a server ref or checksum). */
  ref: string;
  /** Server ref to move (default: REF). */
  destRef: string;
  force: boolean;
  jobs: number;
  retry?: RetryPolicy;
  limits?: BatchLimits;
  /** Names per missing-objects query (≤ 100,000). */
  missingChunk?: number;
  progress: Progress;
  /**
   * Called once the server's ref value is known, before anything is read
   * locally. --tree commits its folder here (the current value is the parent)
   * and returns the scratch repository to push from.
   */
  onStart?: (current: string | null) => Promise<string | void>;
  /** Upload only: the caller moves this ref together with others (`cairn push --all`, updateRefsTogether). */
  uploadOnly?: boolean;
}

/** What a push did; printed as the summary line or as JSON (--json). */
export interface PushResult {
  url: string;
  ref: string;
  commit: string;
  /** Objects of the commit's tree (plus its .commitmeta when present locally). */
  objects: number;
  /** Of those, the ones the server lacked. */
  missing: number;
  /** Objects sent and acknowledged (stored now, or found present by then: a concurrent push). */
  uploaded: number;
  stored: number;
  /** Bytes of object files sent (archive format, i.e. compressed). */
  bytes: number;
  requests: { missing: number; batches: number; puts: number; retries: number };
  old: string | null;
  new: string;
  /** False when the ref already pointed at the commit. */
  refMoved: boolean;
  seconds: number;
}

/**
 * The whole push: read the server's ref, walk the local commit, ask what is
 * missing, upload it phase by phase in parallel, then move the ref with a
 * compare-and-swap against the value seen at the start.
 */
export async function push(opts: PushOptions): Promise<PushResult> {
  const started = performance.now();
  const { progress } = opts;
  let retries = 0;
  const client = new ApiClient({
    apiBase: opts.target.apiBase,
    token: opts.token,
    retry: opts.retry ?? DEFAULT_RETRY,
    onRetry: (request, err, attempt, delay) => {
      retries++;
      progress.warn(`retrying ${request} in ${(delay / 1000).toFixed(1)} s (attempt ${attempt + 1}): ${err.message}`);
    },
  });
  const api = new PushApi(client);
  const ctx = { tokenGiven: !!opts.token };
  const step = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    try {
      return await f();
    } catch (e) {
      if (e instanceof PushError) throw e;
      throw new PushError(describeFailure(e, name, ctx), e);
    }
  };

  progress.stage(`reading refs of ${opts.target.repoUrl}`);
  const serverRefs = await step('reading the server refs', () => api.refs());
  const old = serverRefs[opts.destRef] ?? null;
  const localRepo = (await opts.onStart?.(old)) ?? opts.localRepo;

  const counts = { missing: 0, batches: 0, puts: 0 };
  let commit: string;
  let objectsTotal = 0;
  let missing: LocalObject[] = [];
  let uploaded = 0;
  let stored = 0;
  let bytes = 0;

  if (localRepo !== undefined) {
    const { repo, root } = await openLocalRepo(localRepo);
    commit = await resolveLocalRef(repo, root, opts.ref);
    progress.stage(`walking commit ${commit.slice(0, 12)}`);
    const local = await enumerateCommit(repo, root, commit);
    objectsTotal = local.objects.length;

    progress.stage(`checking ${objectsTotal} objects`);
    const byName = new Map(local.objects.map((o) => [o.name, o]));
    const chunks = chunk(
      local.objects.map((o) => o.name),
      Math.min(opts.missingChunk ?? 20_000, MAX_MISSING_QUERY),
    );
    const lacking = new Set<string>();
    await step('checking which objects the server has', () =>
      runPool(chunks, Math.min(2, opts.jobs), async (names) => {
        counts.missing++;
        for (const n of await api.missing(names)) lacking.add(n);
      }),
    );
    missing = local.objects.filter((o) => lacking.has(o.name));
    const unknown = [...lacking].filter((n) => !byName.has(n));
    if (unknown.length) throw new PushError(`checking objects: the server answered with names it was not asked about: ${unknown.slice(0, 3).join(', ')}`);

    // A partial local repo (e.g. a metadata-only pull) is fine as long as the server has the rest.
    const { sizes, absent: notHere } = await statObjects(missing);
    const absent = new Set([...local.absent.map((o) => o.name), ...notHere]);
    const cannot = missing.filter((o) => absent.has(o.name));
    if (cannot.length) {
      throw new PushError(
        `${cannot.length} object(s) of commit ${commit} are neither in ${localRepo} nor on the server: ` +
          `${cannot.slice(0, 3).map((o) => o.name).join(', ')}${cannot.length > 3 ? ' …' : ''}`,
      );
    }

    const sized = missing.map((o) => ({ ...o, size: sizes.get(o.name)! }));
    const totalBytes = sized.reduce((n, o) => n + o.size, 0);
    progress.startUpload(sized.length, totalBytes);
    const onBytes = (n: number) => {
      bytes += n;
      progress.addBytes(n);
    };
    const part = (o: (typeof sized)[number]) => ({ name: o.name, size: o.size, open: () => openObject(o.file, o.size) });

    for (const phase of uploadPhases(sized)) {
      const jobs = planBatches(phase, opts.limits ?? DEFAULT_LIMITS);
      await step('uploading objects', () =>
        runPool(jobs, opts.jobs, async (job) => {
          if (job.kind === 'put') {
            counts.puts++;
            const r = await api.putObject(part(job.objects[0]), onBytes);
            if (r === 'stored') stored++;
            uploaded++;
            progress.addObjects(1);
            return;
          }
          counts.batches++;
          const r = await api.uploadBatch(job.objects.map(part), onBytes);
          const acked = new Set([...r.stored, ...r.present]);
          const lost = job.objects.filter((o) => !acked.has(o.name));
          if (lost.length) throw new PushError(`uploading objects: the server did not acknowledge ${lost.length} object(s) it was sent: ${lost.slice(0, 3).map((o) => o.name).join(', ')}`);
          stored += r.stored.filter((n) => byName.has(n)).length;
          uploaded += job.objects.length;
          progress.addObjects(job.objects.length);
        }),
      );
    }
  } else {
    // Promotion: the commit is already on the server, named by a server ref or its checksum.
    const c = isChecksum(opts.ref) ? opts.ref : serverRefs[opts.ref];
    if (!c) throw new PushError(`no ref ${opts.ref} on ${opts.target.repoUrl} (without --repo, REF must be a server ref or a commit checksum)`);
    commit = c;
  }

  // Also when the ref already points at the commit: the server then makes sure its summary does too
  // (a summary left stale by a crash or a full disk is regenerated), and nothing moves.
  if (!opts.uploadOnly) {
    progress.stage(`updating ${opts.destRef}`);
    await step(`updating ref ${opts.destRef}`, () => updateRef(api, opts.destRef, commit, old, opts.force));
  }
  const refMoved = !opts.uploadOnly && old !== commit;
  progress.stop();
  return {
    url: opts.target.repoUrl,
    ref: opts.destRef,
    commit,
    objects: objectsTotal,
    missing: missing.length,
    uploaded,
    stored,
    bytes,
    requests: { ...counts, retries },
    old,
    new: commit,
    refMoved,
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * The compare-and-swap. It is the one request that is not idempotent: if an
 * attempt moved the ref but its answer was lost, the retry meets a 409 whose
 * "actual" is our own commit. That is our success, not a conflict.
 */
export async function updateRef(api: PushApi, ref: string, commit: string, expected: string | null, force: boolean): Promise<RefChange[]> {
  return updateRefsTogether(api, [{ ref, commit, expected }], force);
}

/** updateRef for several refs moved in one compare-and-swap (all or none). */
export async function updateRefsTogether(api: PushApi, updates: Array<{ ref: string; commit: string; expected: string | null }>, force: boolean): Promise<RefChange[]> {
  let retried = false;
  try {
    return await api.updateRefs(updates, force, () => (retried = true));
  } catch (e) {
    if (retried && e instanceof ApiError && e.status === 409) {
      const conflicts = (e.details?.conflicts ?? []) as Array<{ ref?: string; actual?: string | null }>;
      const ours = new Map(updates.map((u) => [u.ref, u.commit]));
      if (conflicts.length > 0 && conflicts.every((c) => c.ref !== undefined && ours.get(c.ref) === c.actual)) {
        return updates.map((u) => ({ ref: u.ref, old: u.expected, new: u.commit }));
      }
    }
    throw e;
  }
}
