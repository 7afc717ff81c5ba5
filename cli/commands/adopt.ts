import { CairnError } from '../../storage/errors';
import { RepoRegistry } from '../../storage/repo/registry';
import type { Repo } from '../../storage/repo/repo';
import { SettingsStore } from '../../storage/repo/settings';
import { createServerContext } from '../../server/bootstrap';
import { adoptRepo } from '../../server/context';
import { type Command, parseCommandLine, UsageError } from '../command';
import { locationOption } from '../storage-option';

const usage = `Usage: cairn adopt NAME [--data DIR | --storage LOCATION] [--no-sign]

Lets Cairn publish into repository NAME of the data folder, which Cairn did
not create (one made by 'ostree init', 'flatpak build-update-repo', or copied
or symlinked into DIR/repos/). Until then Cairn serves it as it is and writes
nothing into it: pushes answer 403 NOT_OWNED, no static deltas are built, no
summary or signature is written, no keys are generated.

Adopting records 'owned' in DIR/settings/NAME.json, then regenerates the
summary and delta indexes once and signs the summary with the repository's
keys (DIR/keys/NAME/, generated now unless an operator placed keys there), so
the repository is consistent at once. From then on Cairn owns the summary and
its signature: publish through Cairn ('cairn push', 'cairn commit'), not with
'ostree commit' or 'flatpak build-update-repo' behind its back. Cairn's summary
replaces the previous one (keys Cairn does not write, such as flatpak's xa.*,
are dropped) and hosts must trust Cairn's key (/repo/NAME/keys/gpg.asc).

A running 'cairn serve' on the same data folder sees the change at once.
Repositories Cairn creates ('cairn init-repo', POST /api/repos) are owned
from the start. Adopting an owned repository again only regenerates its summary.

Options:
  --data DIR     data folder (env CAIRN_DATA, default ./data)
  --storage LOC  repositories on a store instead (env CAIRN_STORAGE): a folder,
                 file://PATH or s3://BUCKET/PREFIX (a repository copied into the
                 bucket, say by 'aws s3 sync'), as 'cairn serve --storage'
  --no-sign      regenerate the summary unsigned (removes summary.sig; no keys made)`;

export const adopt: Command = {
  name: 'adopt',
  summary: 'let Cairn publish into a repository it did not create',
  usage,
  async run(args) {
    const { values, positionals } = parseCommandLine('adopt', args, {
      data: { type: 'string' },
      storage: { type: 'string' },
      'no-sign': { type: 'boolean' },
    }, true);
    if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'missing repository NAME' : `unexpected argument "${positionals[1]}"`, 'adopt');
    const name = positionals[0]!;
    const dataDir = locationOption(values, 'adopt');
    const registry = new RepoRegistry(dataDir);
    const repo = await registry.open(name);
    if (!repo) throw new CairnError('NOT_FOUND', `no repository ${name} in ${registry.reposDir}`);
    const was = (await new SettingsStore(dataDir).get(name)).owned;
    await adoptRepository(dataDir, registry, repo, { sign: !values['no-sign'] });
    process.stderr.write(`${was ? 'regenerated the summary of' : 'adopted'} ${name}: Cairn owns its summary${values['no-sign'] ? '' : ' and its signature'} now\n`);
    return 0;
  },
};

/**
 * Adopts `repo` as the server would (server/context.ts adoptRepo): owned,
 * summary regenerated and signed once (`sign: false`: unsigned, no keys).
 * Also used by `cairn commit --adopt` and `cairn delta --adopt`.
 */
export async function adoptRepository(dataDir: string, registry: RepoRegistry, repo: Repo, opts: { sign?: boolean } = {}): Promise<void> {
  const ctx = await createServerContext(dataDir, registry, { deltas: false, signing: opts.sign !== false });
  await adoptRepo(ctx, repo);
}

/** For commands that write into a repository: NOT_OWNED unless Cairn owns it, or adopts it first with `--adopt`. */
export async function ownedOrAdopt(dataDir: string, registry: RepoRegistry, repo: Repo, adoptFirst: boolean | undefined, command: string, opts: { sign?: boolean } = {}): Promise<void> {
  if ((await new SettingsStore(dataDir).get(repo.name)).owned) return;
  if (!adoptFirst) {
    throw new CairnError('NOT_OWNED', `repository ${repo.name} was not created by Cairn; run \`cairn adopt ${repo.name}\` (or 'cairn ${command} --adopt') to let Cairn publish into it`);
  }
  await adoptRepository(dataDir, registry, repo, opts);
  process.stderr.write(`adopted ${repo.name}: Cairn owns its summary${opts.sign === false ? '' : ' and its signature'} now\n`);
}
