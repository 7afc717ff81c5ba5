import { parseTimeOrAge } from '../../storage/maintenance/duration';
import { prune } from '../../storage/maintenance/prune';
import { type Command, parseCommandLine, UsageError } from '../command';
import { locationOption } from '../storage-option';
import { maintenanceSigner, openOwnedRepo } from './gc';

const usage = `Usage: cairn prune [--data DIR | --storage LOCATION] --repo NAME [--ref REF]... [--keep N] [--keep-younger-than T] [--dry-run] [--json]

Cuts the history of refs of repository NAME (every ref under refs/heads, or
only those named with --ref): from each head, commits are kept while they
are among the last N (the head counts) or younger than T; from the first
that is neither, that commit and all older ones are deleted, unless another
ref keeps them. The new oldest kept commit's parent is then absent, as after
'ostree prune --depth': 'ostree log' stops there. Each pruned commit goes
with its detached metadata; with core.tombstone-commits=true in the
repository's config a .tombstone-commit object is written for it. Static
deltas from or to a pruned commit are removed and the summary regenerated.
The objects only pruned commits reached are left to 'cairn gc' (the report
says how many and how many bytes that frees).

Options:
  --data DIR               data folder (env CAIRN_DATA, default ./data)
  --storage LOCATION       repositories on a store instead (env CAIRN_STORAGE): a folder,
                           file://PATH or s3://BUCKET/PREFIX, as 'cairn serve --storage'
  --repo NAME              repository (default main)
  --ref REF                prune this ref only (repeat for several)
  --keep N                 keep the last N commits of each ref (N >= 1)
  --keep-younger-than T    keep commits younger than T: an age (30d, 12h) or a date (2024-05-01)
  --dry-run                report what would go and how many bytes, change nothing
  --json                   print the report as JSON on stdout

At least one of --keep and --keep-younger-than is needed.`;

export const pruneCommand: Command = {
  name: 'prune',
  summary: 'cut the history of refs, keeping the last N commits and/or the younger ones',
  usage,
  async run(args) {
    const { values, positionals } = parseCommandLine('prune', args, {
      data: { type: 'string' },
      storage: { type: 'string' },
      repo: { type: 'string' },
      ref: { type: 'string', multiple: true },
      keep: { type: 'string' },
      'keep-younger-than': { type: 'string' },
      'dry-run': { type: 'boolean' },
      json: { type: 'boolean' },
    }, false);
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`, 'prune');
    if (values.keep === undefined && values['keep-younger-than'] === undefined) throw new UsageError('say what to keep: --keep N and/or --keep-younger-than T', 'prune');
    let keep: number | undefined;
    if (values.keep !== undefined) {
      if (!/^\d{1,9}$/.test(values.keep) || Number(values.keep) < 1) throw new UsageError(`--keep must be a whole number of at least 1, not "${values.keep}"`, 'prune');
      keep = Number(values.keep);
    }
    let younger: Date | undefined;
    if (values['keep-younger-than'] !== undefined) {
      try {
        younger = parseTimeOrAge(values['keep-younger-than']);
      } catch (e) {
        throw new UsageError((e as Error).message, 'prune');
      }
    }
    const dataDir = locationOption(values, 'prune');
    const dryRun = values['dry-run'] === true;
    const { registry, repo } = await openOwnedRepo(dataDir, values.repo, !dryRun, 'prune');
    const report = await prune(repo, {
      refs: values.ref,
      keep,
      keepYoungerThan: younger,
      dryRun,
      signer: dryRun ? undefined : await maintenanceSigner(dataDir, registry, repo),
      onProgress: (line) => process.stderr.write(`${line}\n`),
    });
    if (values.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else {
      for (const c of report.commits) process.stdout.write(`${dryRun ? 'would prune' : 'pruned'} ${c.commit} ${c.timestamp} (${c.ref})\n`);
      for (const d of report.deltas) process.stdout.write(`${dryRun ? 'would remove' : 'removed'} delta ${d}\n`);
      process.stderr.write(
        `${report.commits.length} commits, ${report.deltas.length} deltas, ${report.bytes} bytes${dryRun ? ' would go' : ' removed'}` +
          `${report.tombstones && !dryRun ? ' (tombstones written)' : ''}; ${report.exclusiveObjects} objects (${report.exclusiveBytes} bytes) only they reached, for 'cairn gc'\n`,
      );
    }
    return 0;
  },
};
