import { CairnError } from '../../storage/errors';
import { parseDuration } from '../../storage/maintenance/duration';
import { DEFAULT_GRACE_MS, gc } from '../../storage/maintenance/gc';
import { RepoRegistry } from '../../storage/repo/registry';
import type { Repo } from '../../storage/repo/repo';
import { SettingsStore } from '../../storage/repo/settings';
import type { SummarySigner } from '../../storage/repo/summary';
import { hasRepoKeys } from '../../storage/signing/keys';
import { createServerContext } from '../../server/bootstrap';
import { type Command, parseCommandLine, UsageError } from '../command';
import { locationOption } from '../storage-option';

const usage = `Usage: cairn gc [--data DIR | --storage LOCATION] --repo NAME [--grace DURATION] [--dry-run] [--json]

Deletes the objects of repository NAME that no ref reaches: not in the tree
of any ref (refs/heads, mirrors, remotes) or of any commit of its history
(history is cut by 'cairn prune', never by gc), and older than the grace
window. Safe while publishers push to a running 'cairn serve': nothing
uploaded within the grace window is deleted (a push in flight is covered as
long as it takes less than the grace), deletions run in rounds of at most
0.1 s under the repository's ref lock, each round first marking refs that
moved, and publishing never waits longer than a round. Deltas whose commits
went are removed and the summary regenerated (signed when the repository has
keys in DIR/keys/NAME). On S3 (--storage s3://…) an object's age is measured by
the store's own clock (its Last-Modified against a probe written at the start),
whole seconds rounded in favour of keeping.

Options:
  --data DIR         data folder (env CAIRN_DATA, default ./data)
  --storage LOC      repositories on a store instead (env CAIRN_STORAGE): a folder,
                     file://PATH or s3://BUCKET/PREFIX, as 'cairn serve --storage'
  --repo NAME        repository (default main)
  --grace DURATION   keep objects younger than this (default 1h; 90s, 30m, 2h, 1d)
  --dry-run          report what would be deleted and how many bytes, delete nothing
  --json             print the report as JSON on stdout

Progress goes to stderr. Exit status 0 when done, 1 on failure.`;

export const gcCommand: Command = {
  name: 'gc',
  summary: 'delete unreachable objects of a repository, safe while publishing',
  usage,
  async run(args) {
    const { values, positionals } = parseCommandLine('gc', args, {
      data: { type: 'string' },
      storage: { type: 'string' },
      repo: { type: 'string' },
      grace: { type: 'string' },
      'dry-run': { type: 'boolean' },
      json: { type: 'boolean' },
    }, false);
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`, 'gc');
    let graceMs = DEFAULT_GRACE_MS;
    if (values.grace !== undefined) {
      try {
        graceMs = parseDuration(values.grace);
      } catch (e) {
        throw new UsageError((e as Error).message, 'gc');
      }
    }
    const dataDir = locationOption(values, 'gc');
    const { registry, repo } = await openOwnedRepo(dataDir, values.repo, !values['dry-run'], 'gc');
    const report = await gc(repo, {
      graceMs,
      dryRun: values['dry-run'],
      signer: values['dry-run'] ? undefined : await maintenanceSigner(dataDir, registry, repo),
      onProgress: (line) => process.stderr.write(`${line}\n`),
    });
    if (values.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else {
      const types = Object.entries(report.deleted).map(([t, n]) => `${n} ${t}`).join(', ') || 'nothing';
      process.stdout.write(
        `${report.dryRun ? 'would delete' : 'deleted'} ${report.deletedObjects} objects, ${report.deletedBytes} bytes (${types}); ` +
          `${report.marked} reachable, ${report.young} unreachable kept (younger than ${report.graceSeconds} s)` +
          (report.deltas.length ? `; ${report.deltas.length} deltas removed` : '') +
          '\n',
      );
    }
    return 0;
  },
};

/** The repository `name` (default main); with `write`, Cairn must own it (NOT_OWNED otherwise: maintenance never adopts). */
export async function openOwnedRepo(dataDir: string, name: string | undefined, write: boolean, command: string): Promise<{ registry: RepoRegistry; repo: Repo }> {
  const registry = new RepoRegistry(dataDir);
  const repoName = name ?? 'main';
  const repo = await registry.open(repoName);
  if (!repo) throw new CairnError('NOT_FOUND', `no repository ${repoName} in ${registry.reposDir}`);
  if (write && !(await new SettingsStore(dataDir).get(repoName)).owned) {
    throw new CairnError('NOT_OWNED', `repository ${repoName} was not created by Cairn; 'cairn ${command}' changes only repositories Cairn owns (see 'cairn adopt')`);
  }
  return { registry, repo };
}

/** Signs a regenerated summary as 'cairn serve' does when the repository has keys; never creates keys. */
export async function maintenanceSigner(dataDir: string, registry: RepoRegistry, repo: Repo): Promise<SummarySigner | undefined> {
  if (!(await hasRepoKeys(dataDir, repo.name))) return undefined;
  const ctx = await createServerContext(dataDir, registry, { deltas: false });
  return (await ctx.signerFor(repo))?.signSummary;
}
