import { EventEmitter } from 'node:events';
import { Counter, type Registry } from 'prom-client';
import { parseDuration } from '../../storage/maintenance/duration';
import { DEFAULT_GRACE_MS, gc } from '../../storage/maintenance/gc';
import { prune } from '../../storage/maintenance/prune';
import { scrub, type ScrubFinding } from '../../storage/maintenance/scrub';
import { CairnError } from '../../storage/errors';
import type { RepoRegistry } from '../../storage/repo/registry';
import type { Repo } from '../../storage/repo/repo';
import { assertOwned, type RepoSettings, type SettingsStore } from '../../storage/repo/settings';
import type { SummarySigner } from '../../storage/repo/summary';
import { createLogger, type Logger } from '../logging';
import type { JobKind, JobQueue } from './queue';

/**
 * Scheduled maintenance (README "Maintenance"), per repository settings
 * (`maintenance` in DATA/settings/NAME.json, PATCH /api/repos/NAME/settings),
 * in repositories Cairn owns, in the one process that runs the job queue
 * (a single `cairn serve`, or a cluster's primary):
 *   - prune and gc run as jobs of kind `maintenance` on the delta jobs' queue
 *     (GET /api/jobs shows them: params {repo, task}, result the report's
 *     figures), after every delta job queued (priority MAINTENANCE_PRIORITY),
 *     each every `every`; when it last ran is kept in the repository's
 *     `state/cairn/maintenance.json`, so a restart does not run it again early;
 *   - the background scrub (storage/maintenance/scrub.ts) runs beside the
 *     queue (it is slow on purpose and would hold a job slot for days), one
 *     loop per repository with `maintenance.scrub`; it stops when the setting
 *     goes and resumes at its position after a restart.
 * A corrupt object the scrub finds is quarantined, logged at error and told
 * through 'corrupt' (webhooks and metrics listen).
 *
 * Events: 'scrubbed' (repo, bytes), 'corrupt' (repo, ScrubFinding).
 */

export const MAINTENANCE_JOB = 'maintenance';
/** After every delta job (their priorities are 0 to 3). */
export const MAINTENANCE_PRIORITY = 4;
const STATE_KEY = 'state/cairn/maintenance.json';

export type MaintenanceTask = 'prune' | 'gc';

export interface MaintenanceJobParams {
  repo: string;
  task: MaintenanceTask;
}

export interface MaintenanceDeps {
  registry: RepoRegistry;
  settings: SettingsStore;
  summarySigner(repo: Repo): Promise<SummarySigner | undefined>;
  /** Largest file a `.filez` may declare (the scrub's check). */
  maxFileSize: number;
}

export function maintenanceJobKey(repo: string, task: MaintenanceTask): string {
  return `maintenance:${repo}:${task}`;
}

/** The `maintenance` job kind: one scheduled prune or gc with the repository's settings of the moment. */
export function maintenanceJobKind(deps: MaintenanceDeps): JobKind<MaintenanceJobParams, Record<string, unknown>> {
  return {
    name: MAINTENANCE_JOB,
    async run(p, ctl) {
      const repo = await deps.registry.open(p.repo);
      if (!repo) throw new CairnError('NOT_FOUND', `no repository named ${p.repo}`);
      const settings = deps.settings.current(p.repo);
      assertOwned(settings, p.repo);
      ctl.progress({ done: 0, phase: p.task });
      const signer = (await deps.summarySigner(repo)) ?? undefined;
      let result: Record<string, unknown>;
      if (p.task === 'prune') {
        const s = settings.maintenance.prune;
        if (!s) throw new CairnError('CONFLICT', `scheduled prune of ${p.repo} is no longer configured`);
        const r = await prune(repo, { keep: s.keep, keepYoungerThan: s.keepYoungerThan ? new Date(Date.now() - parseDuration(s.keepYoungerThan)) : undefined, signer });
        result = { task: 'prune', commits: r.commits.length, deltas: r.deltas.length, bytes: r.bytes, exclusiveObjects: r.exclusiveObjects, exclusiveBytes: r.exclusiveBytes };
      } else {
        const s = settings.maintenance.gc;
        if (!s) throw new CairnError('CONFLICT', `scheduled gc of ${p.repo} is no longer configured`);
        const r = await gc(repo, { graceMs: s.grace ? parseDuration(s.grace) : DEFAULT_GRACE_MS, signer });
        result = { task: 'gc', scanned: r.scanned, marked: r.marked, young: r.young, deletedObjects: r.deletedObjects, deletedBytes: r.deletedBytes, deltas: r.deltas.length, seconds: r.seconds };
      }
      await recordRun(repo, p.task);
      ctl.progress({ done: 1, total: 1, phase: p.task });
      return result;
    },
  };
}

type RunState = Partial<Record<MaintenanceTask, { lastRunAt: string }>>;

async function readRuns(repo: Repo): Promise<RunState> {
  const got = await repo.backend.read(STATE_KEY).catch(() => null);
  if (!got) return {};
  try {
    const v = JSON.parse(got.data.toString('utf8')) as RunState;
    return typeof v === 'object' && v !== null ? v : {};
  } catch {
    return {};
  }
}

async function recordRun(repo: Repo, task: MaintenanceTask): Promise<void> {
  const runs = await readRuns(repo);
  runs[task] = { lastRunAt: new Date().toISOString() };
  await repo.backend.write(STATE_KEY, Buffer.from(JSON.stringify(runs) + '\n'));
}

export interface SchedulerOptions {
  /** How often settings are looked at; default 30 s (CAIRN_MAINTENANCE_TICK_MS). */
  tickMs?: number;
}

export class MaintenanceScheduler extends EventEmitter {
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private closed = false;
  private readonly scrubs = new Map<string, { ctl: AbortController; done: Promise<void> }>();
  private log: Logger = createLogger({ level: 'silent' });
  private readonly tickMs: number;

  constructor(
    private readonly deps: MaintenanceDeps,
    private readonly queue: JobQueue,
    opts: SchedulerOptions = {},
  ) {
    super();
    this.tickMs = opts.tickMs ?? 30_000;
    if (!queue.hasKind(MAINTENANCE_JOB)) queue.register(maintenanceJobKind(deps));
  }

  setLogger(log: Logger): void {
    this.log = log;
  }

  start(): void {
    if (this.timer || this.closed) return;
    const run = () => {
      this.ticking = this.tick()
        .catch((e: unknown) => this.log.error('maintenance schedule failed', { err: e instanceof Error ? e.message : String(e) }))
        .finally(() => {
          this.ticking = null;
          if (!this.closed) this.timer = setTimeout(run, this.tickMs).unref();
        });
    };
    this.timer = setTimeout(run, 0).unref();
  }

  /** One look at every repository's settings: queue what is due, start and stop scrubs. */
  async tick(): Promise<void> {
    const wanted = new Set<string>();
    for (const name of await this.deps.registry.list()) {
      if (this.closed) return;
      let s: Readonly<RepoSettings>;
      try {
        s = this.deps.settings.current(name);
      } catch {
        continue; // unreadable settings: nothing scheduled
      }
      if (!s.owned) continue;
      const m = s.maintenance;
      if (m.scrub) wanted.add(name);
      if (!m.prune && !m.gc) continue;
      const repo = await this.deps.registry.open(name);
      if (!repo) continue;
      // A task with a job queued or running is not decided on the runs read next: that job may finish
      // (its run recorded) while they are read, and a second job would follow at once (seen on S3).
      const busy = new Set(
        this.queue
          .list({ repo: name, kind: MAINTENANCE_JOB })
          .filter((j) => j.state === 'queued' || j.state === 'running')
          .map((j) => (j.params as MaintenanceJobParams).task),
      );
      const runs = await readRuns(repo);
      for (const task of ['prune', 'gc'] as const) {
        const every = m[task]?.every;
        if (!every || busy.has(task)) continue;
        const last = Date.parse(runs[task]?.lastRunAt ?? '');
        if (Number.isFinite(last) && Date.now() - last < parseDuration(every)) continue;
        const out = this.queue.submit(MAINTENANCE_JOB, maintenanceJobKey(name, task), { repo: name, task }, { repo: name, source: 'schedule', priority: MAINTENANCE_PRIORITY });
        if (out.status === 'queued') this.log.info('maintenance job queued', { repo: name, task, job: out.job.id });
      }
    }
    for (const name of wanted) if (!this.scrubs.has(name)) this.startScrub(name);
    for (const [name, s] of this.scrubs) if (!wanted.has(name)) s.ctl.abort();
  }

  private startScrub(name: string): void {
    const ctl = new AbortController();
    const done = (async () => {
      const repo = await this.deps.registry.open(name);
      if (!repo) return;
      this.log.info('scrub started', { repo: name });
      await scrub(repo, {
        rate: () => {
          try {
            const s = this.deps.settings.current(name);
            return s.owned && s.maintenance.scrub ? s.maintenance.scrub : null;
          } catch {
            return null;
          }
        },
        maxFileSize: this.deps.maxFileSize,
        signal: ctl.signal,
        onObject: (bytes) => this.emit('scrubbed', name, bytes),
        onCorrupt: (f: ScrubFinding) => {
          this.log.error('scrub found a corrupt object: quarantined, it answers 404 until a push restores it', { repo: name, object: f.object, error: f.error, quarantined_to: f.quarantinedTo });
          this.emit('corrupt', name, f);
        },
      });
      this.log.info('scrub stopped', { repo: name });
    })()
      .catch((e: unknown) => this.log.error('scrub failed', { repo: name, err: e instanceof Error ? e.message : String(e) }))
      .finally(() => {
        if (this.scrubs.get(name)?.ctl === ctl) this.scrubs.delete(name);
      });
    this.scrubs.set(name, { ctl, done });
  }

  /** Stops scheduling and the scrubs (their positions are saved); queued jobs go with the queue. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.ticking;
    for (const s of this.scrubs.values()) s.ctl.abort();
    await Promise.all([...this.scrubs.values()].map((s) => s.done));
  }
}

/** CAIRN_MAINTENANCE_TICK_MS for `cairn serve` (tests make it short). */
export function schedulerOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): SchedulerOptions {
  const v = env.CAIRN_MAINTENANCE_TICK_MS;
  if (v === undefined || v === '') return {};
  if (!/^\d+$/.test(v) || Number(v) < 10) throw new Error(`CAIRN_MAINTENANCE_TICK_MS must be an integer ≥ 10, not "${v}"`);
  return { tickMs: Number(v) };
}

/** Prometheus counters of the background scrub (no repository label: private ones must not show). */
export function instrumentScrub(registry: Registry, scheduler: MaintenanceScheduler): void {
  const objects = new Counter({ name: 'cairn_scrub_objects_total', help: 'Objects verified by the background scrub', registers: [registry] });
  const bytes = new Counter({ name: 'cairn_scrub_bytes_total', help: 'Bytes of the objects verified by the background scrub', registers: [registry] });
  const corrupt = new Counter({ name: 'cairn_scrub_corrupt_total', help: 'Corrupt objects the background scrub found (each quarantined)', registers: [registry] });
  scheduler.on('scrubbed', (_repo: string, n: number) => {
    objects.inc();
    bytes.inc(n);
  });
  scheduler.on('corrupt', () => corrupt.inc());
}
