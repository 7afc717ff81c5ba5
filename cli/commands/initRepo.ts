import { RepoRegistry } from '../../storage/repo/registry';
import { validateRemoteConfigPatch, writeRemoteConfig } from '../../storage/flatpak/config';
import { childLocation } from '../../storage/backends/factory';
import { type Command, parseCommandLine, UsageError } from '../command';
import { locationOption } from '../storage-option';

const usage = `Usage: cairn init-repo NAME [--data DIR | --storage LOCATION] [--collection-id ID] [--flatpak [--title T]]

Creates an empty archive repository at DIR/repos/NAME, served at /repo/NAME/.
Cairn owns it from the start: it publishes into it (see 'cairn adopt' for
repositories made by other tools).

Options:
  --data DIR            data folder (env CAIRN_DATA, default ./data)
  --storage LOCATION    repositories on a store instead (env CAIRN_STORAGE): a folder,
                        file://PATH or s3://BUCKET/PREFIX, as 'cairn serve --storage'
  --collection-id ID    set core.collection-id (reverse-DNS, e.g. org.example.Os)
  --flatpak             a flatpak repository: its summary carries what flatpak
                        reads (xa.cache, summary.idx, summaries/, appstream),
                        and /repo/NAME.flatpakrepo adds it in one command
  --title T             with --flatpak: the remote's title (xa.title); the other
                        keys through PATCH /api/repos/NAME/settings`;

export const initRepo: Command = {
  name: 'init-repo',
  summary: 'create a new empty repository in the data folder',
  usage,
  async run(args) {
    const { values, positionals } = parseCommandLine('init-repo', args, {
      data: { type: 'string' },
      storage: { type: 'string' },
      'collection-id': { type: 'string' },
      flatpak: { type: 'boolean' },
      title: { type: 'string' },
    }, true);
    if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'missing repository NAME' : `unexpected argument "${positionals[1]}"`, 'init-repo');
    const dataDir = locationOption(values, 'init-repo');
    if (values.title !== undefined && !values.flatpak) throw new UsageError('--title goes with --flatpak', 'init-repo');
    if (values.title !== undefined) validateRemoteConfigPatch({ title: values.title });
    const registry = new RepoRegistry(dataDir);
    const repo = await registry.create(positionals[0], { collectionId: values['collection-id'] });
    if (values.flatpak) await writeRemoteConfig(repo, values.title !== undefined ? { title: values.title } : {});
    process.stdout.write(`created repository ${positionals[0]} at ${childLocation(registry.reposDir, positionals[0])}\n`);
    return 0;
  },
};
