import { deltasOfCommit, refHistory, TrafficRecorder, TRAFFIC_OTHER, type RefCommit, type RefTraffic } from '../../storage/browse';
import { CairnError } from '../../storage/errors';
import type { ServiceCall } from '../jobs/service';
import type { TrafficSink } from '../observe';
import { route, type AnyRoute } from './route';
import { refName, ref, type TrafficAnswer, type TrafficUpdate } from './schema';

/**
 * Update traffic (issue #10 item 4): per ref, over a recent window, how many
 * updates the server served through which static delta (by from-version) and
 * through plain objects, with their bytes; and, for the ref's recent commits,
 * whether a delta to its head exists and its size (the UI queues a missing
 * one with POST /api/repos/:repo/deltas).
 *
 * Every GET of a repository file is told to the sink once answered, by the
 * one accounting function both transports use (server/observe.ts
 * recordRequest; server/files/answer.ts gives it the repository, the path
 * and the client's address).
 *
 * In a cluster (`--workers N`), a host's requests land on any worker (the
 * stock client opens several connections, each may go to another process),
 * and the recorder ties a client's loose objects to the update its
 * superblock or commit began: per-worker recorders would each see pieces of
 * one update and could not be merged back. So there is one recorder, in the
 * primary: a worker forwards what it serves in batches over the cluster's
 * IPC channel (every 50 ms or 256 records, in order), and its traffic route
 * asks the primary, after sending its own pending records. A record that
 * begins an update (a superblock or a loose commit) is sent at once, with
 * what was pending before it: the host asks for the update's other objects
 * only after it has that answer, maybe from another worker, and those must
 * find the update begun when they reach the primary, not 50 ms later. Nothing
 * is written to disk: a restart starts a new window.
 */

/** The traffic recorder as routes and the read path use it, wherever it runs. */
export interface TrafficService extends TrafficSink {
  refTraffic(repo: string, ref: string, commits: RefCommit[], minutes?: number): Promise<RefTraffic>;
}

/** A recorder in this process (single-process serve, tests, a cluster's primary). */
export function localTraffic(recorder = new TrafficRecorder()): TrafficService {
  return {
    record: (repo, relPath, bytes, status, client) => recorder.record(repo, relPath, bytes, status, client),
    refTraffic: async (repo, refName, commits, minutes) => recorder.refTraffic(repo, refName, commits, minutes),
  };
}

/** Records a worker keeps while the primary does not take them (beyond: dropped, and counted). */
const MAX_PENDING = 10_000;
const BATCH = 256;
const FLUSH_MS = 50;

/** A superblock or a loose commit: what the recorder takes as the start of a host's update (storage/browse/traffic.ts). */
function beginsUpdate(relPath: string): boolean {
  return relPath.endsWith('/superblock') || relPath.endsWith('.commit');
}

type Rec = [repo: string, relPath: string, bytes: number, status: number, client: string | null];

/** A cluster worker's side: records forwarded to the primary's recorder (see the module comment). */
export function remoteTraffic(call: ServiceCall): TrafficService & { dropped(): number } {
  let pending: Rec[] = [];
  let timer: NodeJS.Timeout | null = null;
  let dropped = 0;
  const flush = (): Promise<unknown> => {
    if (timer) clearTimeout(timer);
    timer = null;
    if (pending.length === 0) return Promise.resolve();
    const batch = pending;
    pending = [];
    return call('traffic.record', [batch]).catch(() => {
      dropped += batch.length;
    });
  };
  return {
    record(repo, relPath, bytes, status, client) {
      if (pending.length >= MAX_PENDING) {
        dropped++;
        return;
      }
      pending.push([repo, relPath, bytes, status, client ?? null]);
      if (pending.length >= BATCH || beginsUpdate(relPath)) void flush();
      else if (!timer) {
        timer = setTimeout(() => void flush(), FLUSH_MS);
        timer.unref();
      }
    },
    async refTraffic(repo, refName, commits, minutes) {
      // The channel keeps order: the primary has this worker's records before it answers.
      void flush();
      const r = await call('traffic.ref', [repo, refName, commits, minutes ?? null]).catch((e: unknown) => {
        throw new CairnError('IO', `traffic: the primary process did not answer: ${e instanceof Error ? e.message : String(e)}`);
      });
      return r as RefTraffic;
    },
    dropped: () => dropped,
  };
}

/** The primary's side: answers the workers' traffic calls, and hands every other call to `next` (the job service). */
export function serveTrafficCalls(service: TrafficService, next: ServiceCall): ServiceCall {
  return async (method, args) => {
    if (method === 'traffic.record') {
      const batch = args[0];
      if (!Array.isArray(batch)) return null;
      for (const r of batch.slice(0, MAX_PENDING) as unknown[]) {
        if (!Array.isArray(r) || typeof r[0] !== 'string' || typeof r[1] !== 'string') continue;
        service.record(r[0], r[1], Number(r[2]), Number(r[3]), typeof r[4] === 'string' ? r[4] : undefined);
      }
      return null;
    }
    if (method === 'traffic.ref') {
      const commits = (Array.isArray(args[2]) ? args[2] : []) as RefCommit[];
      return service.refTraffic(String(args[0]), String(args[1]), commits.slice(0, MAX_COVERAGE), typeof args[3] === 'number' ? args[3] : undefined);
    }
    return next(method, args);
  };
}

/** Commits of the ref's history looked at (updates to them are counted; their deltas to the head shown). */
export const DEFAULT_COVERAGE = 10;
export const MAX_COVERAGE = 50;

export const trafficRoutes: AnyRoute[] = [
  route<Record<string, never>, { ref: string; minutes?: number; commits: number }>({
    method: 'get',
    path: '/api/repos/:repo/traffic',
    label: 'api_traffic',
    summary: "Update traffic of a ref over a recent window (through which delta, through plain objects, bytes) and delta coverage of its recent commits",
    description:
      "Counted from what this server served since it started (in memory, a window of one-minute buckets, one recorder for all `--workers`). An update through a delta is a superblock served (its parts add bytes); an update through plain objects is a loose `.commit` served (its bytes are the commit object's: the loose objects of all the ref's updates are in `objects`). Updates to the ref's head and to the `commits` commits before it are counted. `coverage`: for each of those commits, whether a delta from it to the head exists and its size (queue one with POST /api/repos/{repo}/deltas).",
    access: { repo: 'read' },
    query: {
      type: 'object',
      required: ['ref'],
      additionalProperties: false,
      properties: {
        ref: refName,
        minutes: { type: 'integer', minimum: 1, maximum: 1440, description: 'the last N minutes (default: the whole window, 60)' },
        commits: { type: 'integer', minimum: 1, maximum: MAX_COVERAGE, default: DEFAULT_COVERAGE, description: "commits of the ref's history before its head to count and cover" },
      },
    },
    responses: { 200: { description: "the ref's update traffic", schema: ref('Traffic') } },
    errors: [501],
    async handler({ ctx, repo, query }): Promise<TrafficAnswer> {
      if (!ctx.traffic) throw new CairnError('UNSUPPORTED', 'update traffic is not recorded by this server');
      const page = await refHistory(repo, query.ref, { limit: query.commits + 1 });
      const commits: RefCommit[] = page.entries.map((e) => ({ checksum: e.checksum, version: e.version }));
      const t = await ctx.traffic.refTraffic(repo.name, query.ref, commits, query.minutes);
      const version = (c: string | null) => (c === null ? null : (commits.find((x) => x.checksum === c)?.version ?? null));
      const updates: TrafficUpdate[] = [
        ...t.viaDelta.map((d) => ({
          via: 'delta' as const,
          from: d.from,
          fromVersion: d.from === TRAFFIC_OTHER ? null : version(d.from),
          to: d.to,
          toVersion: d.to === TRAFFIC_OTHER ? null : version(d.to),
          count: d.updates,
          bytes: d.bytes,
          missed: d.missed,
        })),
        ...t.viaObjects.map((p) => ({ via: 'objects' as const, from: null, fromVersion: null, to: p.to, toVersion: version(p.to), count: p.updates, bytes: p.bytes, missed: 0 })),
      ];
      const toHead = await deltasOfCommit(repo, page.head);
      const sizeFrom = (from: string | null) => toHead.to.find((d) => d.from === from)?.size ?? null;
      const coverage = page.entries.slice(1).map((e) => {
        const size = sizeFrom(e.checksum);
        return { commit: e.checksum, version: e.version, delta: { exists: size !== null, size } };
      });
      const scratch = sizeFrom(null);
      return {
        ref: query.ref,
        head: page.head,
        headVersion: page.entries[0]?.version ?? null,
        window: { minutes: t.windowMinutes },
        updates,
        objects: t.objects,
        totals: t.totals,
        coverage,
        scratch: { exists: scratch !== null, size: scratch },
      };
    },
  }),
];
