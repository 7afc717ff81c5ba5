import * as path from 'node:path';
import { RepoRegistry } from '../../storage/repo/registry';
import { type Command, parseCommandLine, UsageError, dataDirOption } from '../command';

const usage = `Usage: cairn init-repo NAME [--data DIR] [--collection-id ID]

Creates an empty archive repository at DIR/repos/NAME, served at /repo/NAME/.
Cairn owns it from the start: it publishes into it (see 'cairn adopt' for
repositories made by other tools).

Options:
  --data DIR            data folder (env CAIRN_DATA, default ./data)
  --collection-id ID    set core.collection-id (reverse-DNS, e.g. org.example.Os)`;

export const initRepo: Command = {
  name: 'init-repo',
  summary: 'create a new empty repository in the data folder',
  usage,
  async run(args) {
    const { values, positionals } = parseCommandLine('init-repo', args, {
      data: { type: 'string' },
      'collection-id': { type: 'string' },
    }, true);
    if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'missing repository NAME' : `unexpected argument "${positionals[1]}"`, 'init-repo');
    const dataDir = dataDirOption(values.data);
    const registry = new RepoRegistry(dataDir);
    await registry.create(positionals[0], { collectionId: values['collection-id'] });
    process.stdout.write(`created repository ${positionals[0]} at ${path.join(registry.reposDir, positionals[0])}\n`);
    return 0;
  },
};
