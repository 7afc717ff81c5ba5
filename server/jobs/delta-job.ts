import { compileDelta, type CompileOptions, type CompileStats } from '../../storage/deltas/compile';
import { deltaName } from '../../storage/deltas/format';
import { deltaExists } from '../../storage/deltas/inventory';
import { pruneDeltas } from '../../storage/deltas/prune';
import { CairnError } from '../../storage/errors';
import { ObjectType } from '../../storage/objects/types';
import { RepoRegistry } from '../../storage/repo/registry';
import type { Repo } from '../../storage/repo/repo';
import { assertOwned, SettingsStore } from '../../storage/repo/settings';
import { updateSummary, type SummarySigner } from '../../storage/repo/summary';
import type { JobKind, JobProgress } from './queue';
import { runInWorker, WorkerTaskError, type WorkerTaskContext } from './worker';

/**
 * The `delta` job kind: compile one static delta in a worker thread, then, on
 * the main thread, remove deltas whose commits were pruned and regenerate the
 * summary and delta indexes (signed when the repository signs) so hosts see it.
 * Summary updates of one repository are serialised by updateSummary's lock.
 * A job never writes into a repository Cairn does not own (NOT_OWNED), whoever
 * queued it: checked before compiling, in the worker, and before the summary.
 * The job's signal (queue shutdown, or an obsolete delta: server/jobs/deltas.ts)
 * stops it before compiling, or asks the compile in the worker to stop
 * (cooperatively: worker.ts, storage/deltas/cancel.ts; the parts it wrote are
 * removed, no superblock was written); once compiled, the summary update runs on.
 */

export const DELTA_JOB = 'delta';

/** What a delta job is asked to do (shown by the jobs API: no paths here). */
export interface DeltaJobParams {
  repo: string;
  from: string | null;
  to: string;
}

export interface DeltaJobResult {
  name: string;
  from: string | null;
  to: string;
  /** The delta was already there (deltas are immutable): nothing was compiled. */
  existed: boolean;
  digest?: string;
  /** Superblock plus part files. */
  totalSize?: number;
  parts?: number;
  fallbackSize?: number;
  stats?: CompileStats;
  /** Deltas removed afterwards because one of their commits is gone. */
  pruned: string[];
  /** Another replica runs (or ran) this delta (its durable record: server/jobs/durable.ts): nothing was done here. */
  ranBy?: string;
}

export interface DeltaJobDeps {
  /** Data folder: the worker opens the repository through its own registry. */
  dataDir: string;
  openRepo(name: string): Promise<Repo | null>;
  /** Whether Cairn owns repository `name` (RepoSettings.owned). */
  owned(name: string): boolean;
  summarySigner(repo: Repo): Promise<SummarySigner | undefined>;
  /** Passed to the compiler (tests use small parts). */
  compileOptions?: Pick<CompileOptions, 'maxPartSize' | 'minFallbackSize' | 'maxBsdiffSize' | 'bsdiff' | 'inline'>;
  /**
   * For tests: awaited just before compiling, with the job's signal (a test
   * holds jobs here to look at the queue; it should reject when the signal aborts).
   */
  beforeCompile?(p: DeltaJobParams, signal: AbortSignal): Promise<void>;
}

export function deltaJobKey(repo: string, from: string | null, to: string): string {
  return `delta:${repo}:${deltaName(from, to)}`;
}

export function deltaJobKind(deps: DeltaJobDeps): JobKind<DeltaJobParams, DeltaJobResult> {
  return {
    name: DELTA_JOB,
    async run(p, ctl) {
      const repo = await deps.openRepo(p.repo);
      if (!repo) throw new CairnError('NOT_FOUND', `no repository named ${p.repo}`);
      assertOwned({ owned: deps.owned(p.repo) }, p.repo);
      const name = deltaName(p.from, p.to);
      let result: DeltaJobResult = { name, from: p.from, to: p.to, existed: true, pruned: [] };
      if (!(await deltaExists(repo, p.from, p.to))) {
        await requireCommits(repo, p.from, p.to);
        if (deps.beforeCompile) await deps.beforeCompile(p, ctl.signal);
        if (ctl.signal.aborted) throw new WorkerTaskError('CANCELLED', 'the job was cancelled before it compiled');
        ctl.progress({ done: 0, phase: 'compiling' });
        try {
          const c = await runInWorker<WorkerParams, WorkerResult>(
            { module: __filename, export: 'compileDeltaTask' },
            { dataDir: deps.dataDir, ...p, options: deps.compileOptions ?? {} },
            { onProgress: (pr) => ctl.progress(pr), signal: ctl.signal },
          );
          result = { ...result, existed: false, ...c };
        } catch (e) {
          // Someone else (the CLI, another process) made it meanwhile: same outcome.
          if (!(e instanceof WorkerTaskError && e.code === 'ALREADY_EXISTS')) throw e;
        }
      }
      ctl.progress({ done: 1, total: 1, phase: 'summary' });
      assertOwned({ owned: deps.owned(p.repo) }, p.repo);
      result.pruned = await pruneDeltas(repo);
      if (!result.existed || result.pruned.length) await updateSummary(repo, await deps.summarySigner(repo));
      return result;
    },
  };
}

async function requireCommits(repo: Repo, from: string | null, to: string): Promise<void> {
  for (const c of from ? [from, to] : [to]) {
    if (!(await repo.hasObject(c, ObjectType.Commit))) throw new CairnError('NOT_FOUND', `commit ${c} is not in repository ${repo.name}`, { commit: c });
  }
}

// ---------------------------------------------------------------------------------------------
// Worker side (runs in a worker thread; see worker.ts)

interface WorkerParams extends DeltaJobParams {
  dataDir: string;
  options: DeltaJobDeps['compileOptions'] & object;
}

type WorkerResult = Required<Pick<DeltaJobResult, 'digest' | 'totalSize' | 'parts' | 'fallbackSize' | 'stats'>>;

export async function compileDeltaTask(p: WorkerParams, progress: (p: JobProgress) => void, ctx?: WorkerTaskContext): Promise<WorkerResult> {
  const repo = await new RepoRegistry(p.dataDir).open(p.repo);
  if (!repo) throw new CairnError('NOT_FOUND', `no repository named ${p.repo}`);
  assertOwned(await new SettingsStore(p.dataDir).get(p.repo), p.repo);
  progress({ done: 0, phase: 'compiling' });
  const r = await compileDelta(repo, p.from, p.to, {
    ...p.options,
    signal: ctx?.signal,
    gate: ctx?.gate,
    onProgress: (pr) => progress({ done: pr.done, total: pr.total, phase: pr.phase === 'objects' ? 'compiling' : 'compressing' }),
  });
  return { digest: r.digest, totalSize: r.totalSize, parts: r.partSizes.length, fallbackSize: r.fallbackSize, stats: r.stats };
}
