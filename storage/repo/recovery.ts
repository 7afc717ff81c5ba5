import { parse, type VarDict, Variant } from '../gvariant';
import { CairnError, isCairnError } from '../errors';
import { checksumFromBytes, isChecksum } from '../objects/checksum';
import { OBJECT_GVARIANT_TYPE, ObjectType } from '../objects/types';
import { JOURNAL_KEY } from './journal';
import { withRepoLock } from './mutex';
import { appendRefLog, newestEntries, type RefLogEntry } from './reflog';
import type { Repo } from './repo';
import { listStaticDeltas, onRollForward, switchPublished, type SummarySigner } from './summary';

/**
 * Bringing a repository's published state back into agreement after a crash,
 * a kill or a full disk (docs/publishing.md): at the start of `cairn serve`
 * (RepoRegistry.ensureDefault → recoverRepo, every repository Cairn owns)
 * and before every publish (recoverBeforePublish, from updateRefs).
 *
 * What it looks at, and what it does:
 * - temporary files of dead writers and stale lock files: removed (Backend.sweep);
 * - a publish journal left behind: the switch is rolled forward (refs and
 *   ref-log entries as recorded, summary and signature regenerated);
 * - a ref file that does not hold a checksum (truncated, garbled): restored
 *   from the ref log's newest entry for it when that names a commit that is
 *   present; otherwise reported;
 * - a ref whose commit is missing: reported (nothing to restore it from);
 * - a ref whose newest ref-log entry names another commit: an entry
 *   recording the ref as found is added (actor `system:recovery`);
 * - a summary that is missing (with refs), unreadable, lists other refs or
 *   deltas than the disk holds, or whose summary.sig is missing or does not
 *   verify with the repository's key: regenerated and signed.
 * Everything done or found is logged (one JSON line each) and kept as the
 * repository's recovery status, `state/cairn/recovery.json` (readRecoveryStatus).
 */

export interface RecoveryReport {
  repo: string;
  time: string;
  /** What was repaired or cleaned, one sentence each. */
  repaired: string[];
  /** What is wrong and could not be repaired, one sentence each. */
  problems: string[];
}

export const RECOVERY_STATUS_KEY = 'state/cairn/recovery.json';

export interface RecoverOptions {
  /** Signs a regenerated summary (the repository's keys); undefined: published unsigned. */
  signer?: SummarySigner;
  /** Checks summary.sig against the summary with the repository's public keys; undefined: not checked. */
  verify?: (summary: Buffer, sig: Buffer) => Promise<boolean>;
  /** Temporary files older than this are swept (default 1 h; those of dead processes after 1 min). */
  tempGraceMs?: number;
}

export type RecoveryLog = (level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown>) => void;

let log: RecoveryLog = (level, msg, fields) => {
  const setting = process.env.CAIRN_LOG ?? 'info';
  if (setting === 'silent' || (setting === 'error' && level !== 'error') || (setting === 'warn' && level === 'info')) return;
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }) + '\n');
};

/** Where recovery reports go (default: one JSON line on stdout, as the server's log). */
export function setRecoveryLog(fn: RecoveryLog): void {
  log = fn;
}

// A journal finished by a publish or a summary regeneration (not by recoverRepo) is logged too.
onRollForward((repo, r) => {
  if (r.damaged) log('error', 'publish journal damaged', { repo: repo.name, file: JOURNAL_KEY, action: 'the summary is regenerated from the refs as they are on disk' });
  else log('warn', 'unfinished publish rolled forward', { repo: repo.name, journal: r.journal, refsSet: r.refsSet, refLogEntriesWritten: r.entriesWritten });
});

/** How often a process sweeps a repository's temporary files before a publish. */
const SWEEP_EVERY_MS = 10 * 60_000;
const lastSweep = new Map<string, number>();

/**
 * Before a publish (caller holds the `refs` lock): sweeps what dead writers
 * left (at most every 10 minutes per repository and process), and finishes
 * a switch a crash or a full disk left unfinished.
 */
export async function recoverBeforePublish(repo: Repo, signer?: SummarySigner): Promise<void> {
  const b = repo.backend;
  const now = Date.now();
  if (now - (lastSweep.get(b.location) ?? 0) > SWEEP_EVERY_MS) {
    lastSweep.set(b.location, now);
    if (lastSweep.size > 4096) lastSweep.clear();
    const removed = await b.sweep().catch(() => [] as string[]);
    for (const line of removed) log('info', 'swept', { repo: repo.name, what: line });
  }
  const journal = await b.statFast(JOURNAL_KEY);
  if (journal) await withRepoLock(b, 'summary', () => switchPublished(repo, { changes: [], signer }));
}

/** The refs a summary lists (name → checksum), or null when the bytes are not a summary. */
export function summaryRefs(bytes: Buffer): { refs: Map<string, string>; deltas: Map<string, string> } | null {
  try {
    const [refs, extra] = parse(OBJECT_GVARIANT_TYPE.summary, bytes) as [Array<[string, [bigint, Buffer, VarDict]]>, VarDict];
    const out = new Map<string, string>();
    for (const [name, [, csum]] of refs) out.set(name, checksumFromBytes(csum));
    const deltas = new Map<string, string>();
    const d = extra.find(([k]) => k === 'ostree.static-deltas')?.[1];
    if (d instanceof Variant && d.type === 'a{sv}') {
      for (const [name, v] of d.value as VarDict) if (Buffer.isBuffer(v.value)) deltas.set(name, (v.value as Buffer).toString('hex'));
    }
    return { refs: out, deltas };
  } catch {
    return null;
  }
}

/**
 * The quick check of a publish that moves nothing: no journal, a summary
 * that lists exactly the refs on disk, and (for a signed repository) a
 * summary.sig beside it.
 */
export async function summaryAgrees(repo: Repo, signed: boolean): Promise<boolean> {
  const b = repo.backend;
  if (await b.stat(JOURNAL_KEY)) return false;
  const got = await b.read('summary');
  if (!got) return false;
  const parsed = summaryRefs(got.data);
  if (!parsed) return false;
  if (signed && !(await b.stat('summary.sig'))) return false;
  return sameMap(parsed.refs, await repo.listRefs());
}

function sameMap(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/**
 * The start-up recovery of one repository Cairn owns (see the top of this
 * file). Takes the repository's locks (breaking those of dead processes);
 * never throws for what it finds, only for a storage failure while repairing
 * (reported in the result's problems as well).
 */
export async function recoverRepo(repo: Repo, opts: RecoverOptions = {}): Promise<RecoveryReport> {
  const report: RecoveryReport = { repo: repo.name, time: new Date().toISOString(), repaired: [], problems: [] };
  const b = repo.backend;
  try {
    report.repaired.push(...(await b.sweep({ graceMs: opts.tempGraceMs })));
    await withRepoLock(b, 'refs', () =>
      withRepoLock(b, 'summary', async () => {
        let regenerate: string | null = null;
        if (await b.stat(JOURNAL_KEY)) regenerate = 'an unfinished publish (its journal) was rolled forward';
        else regenerate = await checkRefsAndLog(repo, report);
        if (regenerate) {
          // switchPublished rolls a journal forward first (refs, ref-log entries).
          await switchPublished(repo, { changes: [], signer: opts.signer });
          report.repaired.push(`summary regenerated: ${regenerate}`);
          if (!regenerate.startsWith('an unfinished')) return;
          await checkRefsAndLog(repo, report);
          return;
        }
        const why = await summaryProblem(repo, opts);
        if (why) {
          await switchPublished(repo, { changes: [], signer: opts.signer });
          report.repaired.push(`summary regenerated: ${why}`);
        }
      }),
    );
  } catch (e) {
    report.problems.push(`recovery failed: ${isCairnError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e)}`);
  }
  for (const line of report.repaired) log('warn', 'recovered', { repo: repo.name, what: line });
  for (const line of report.problems) log('error', 'repository problem', { repo: repo.name, what: line });
  if (report.repaired.length || report.problems.length) {
    await b.write(RECOVERY_STATUS_KEY, Buffer.from(JSON.stringify(report, null, 2) + '\n')).catch(() => undefined);
  } else {
    await b.remove(RECOVERY_STATUS_KEY).catch(() => undefined);
  }
  return report;
}

/** The last start-up recovery's report of a repository, when it found anything. */
export async function readRecoveryStatus(repo: Repo): Promise<RecoveryReport | null> {
  const got = await repo.backend.read(RECOVERY_STATUS_KEY);
  if (!got) return null;
  try {
    return JSON.parse(got.data.toString('utf8')) as RecoveryReport;
  } catch {
    return null;
  }
}

/**
 * Damaged refs (restored from the ref log when it can), refs whose commit is
 * missing, ref-log entries that disagree with the refs. Returns why the
 * summary must be regenerated (a ref was restored), or null.
 */
async function checkRefsAndLog(repo: Repo, report: RecoveryReport): Promise<string | null> {
  const b = repo.backend;
  const names: string[] = [];
  for await (const key of b.list('refs/heads')) names.push(key.slice('refs/heads/'.length));
  const values = new Map<string, string>();
  const damaged: string[] = [];
  for (const name of names) {
    const got = await b.read(`refs/heads/${name}`).catch(() => null);
    const text = got?.data.toString('utf8').trim() ?? '';
    if (isChecksum(text)) values.set(name, text);
    else damaged.push(name);
  }
  const { entries } = await newestEntries(repo, names);
  let restored = null as string | null;
  for (const name of damaged) {
    const e = entries.get(name);
    if (e?.new && (await repo.hasObject(e.new, ObjectType.Commit))) {
      await repo.setRef(name, e.new);
      values.set(name, e.new);
      report.repaired.push(`ref ${name} was damaged (not a checksum); restored to ${e.new} from the ref log (${e.time}, by ${e.actor})`);
      restored = `ref ${name} was restored`;
    } else {
      report.problems.push(`ref ${name} is damaged (not a checksum) and the ref log has no entry naming a present commit to restore it from: it is left out of the summary until it is pushed again or deleted`);
    }
  }
  const disagree: RefLogEntry[] = [];
  const time = new Date().toISOString();
  for (const [name, value] of values) {
    if (!(await repo.hasObject(value, ObjectType.Commit))) report.problems.push(`ref ${name} points to commit ${value}, which is missing`);
    const e = entries.get(name);
    if (e && e.new !== value) disagree.push({ time, ref: name, old: e.new, new: value, actor: 'system:recovery' });
  }
  if (disagree.length) {
    await appendRefLog(repo, disagree);
    for (const d of disagree) report.repaired.push(`ref ${d.ref} holds ${d.new} but its newest ref-log entry says ${d.old ?? 'deleted'}: recorded the ref as found`);
  }
  return restored;
}

/** Why the summary pair does not describe the repository as it is, or null. */
async function summaryProblem(repo: Repo, opts: RecoverOptions): Promise<string | null> {
  const b = repo.backend;
  const refs = await repo.listRefs();
  const got = await b.read('summary');
  if (!got) return refs.size > 0 ? 'there was no summary' : null;
  const parsed = summaryRefs(got.data);
  if (!parsed) return `the summary could not be read (${got.data.length} bytes: truncated or damaged)`;
  if (!sameMap(parsed.refs, refs)) return 'it listed other refs than the repository holds';
  const deltas = new Map((await listStaticDeltas(repo)).map((d) => [d.name, d.digest]));
  if (!sameMap(parsed.deltas, deltas)) return 'it listed other static deltas than the repository holds';
  const sig = await b.read('summary.sig');
  if (opts.signer && !sig) return 'summary.sig was missing';
  if (sig && opts.verify) {
    let ok = false;
    try {
      ok = await opts.verify(got.data, sig.data);
    } catch (e) {
      if (!(e instanceof CairnError)) throw e;
    }
    if (!ok) return 'summary.sig did not verify over the summary';
  }
  return null;
}
