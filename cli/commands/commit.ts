import { Variant, type VarDict } from '../../storage/gvariant';
import { CairnError } from '../../storage/errors';
import { commitFolder } from '../../storage/import/folder';
import { validateRefName } from '../../storage/repo/names';
import { RepoRegistry } from '../../storage/repo/registry';
import { updateRefs } from '../../storage/repo/publish';
import { ensureRepoKeys } from '../../storage/signing/keys';
import { createRepoSigner } from '../../storage/signing/signer';
import { type Command, parseCommandLine, UsageError } from '../command';
import { locationOption } from '../storage-option';
import { ownedOrAdopt } from './adopt';

const usage = `Usage: cairn commit --branch REF --tree DIR [--repo NAME] [--data DIR] [options]

Writes folder DIR into a repository of the data folder as a new commit (as
'ostree commit' records it: owners, modes, symlinks, xattrs), moves REF to it
and regenerates the summary.

Options:
  --repo NAME          repository (default main)
  --data DIR           data folder (env CAIRN_DATA, default ./data)
  --storage LOCATION   repositories on a store instead (env CAIRN_STORAGE): a folder,
                       file://PATH or s3://BUCKET/PREFIX, as 'cairn serve --storage'
  -s, --subject TEXT   commit subject
  --body TEXT          commit body
  --version V          set the 'version' metadata
  --timestamp SECONDS  commit time (default now)
  --no-bindings        do not bind the commit to REF (ostree.ref-binding)
  --no-sign            publish without signing (removes summary.sig)
  --adopt              adopt the repository first if Cairn does not own it
                       (see 'cairn adopt'); without it, a repository Cairn did
                       not create is refused and left untouched

Signs the commit and the summary with the repository's keys (DATA/keys/NAME/,
generated on first use). A running server builds static deltas only for
publishes it sees: use 'cairn delta generate' after committing this way.`;

export const commit: Command = {
  name: 'commit',
  summary: 'commit a folder into a repository and move a ref to it',
  usage,
  async run(args) {
    const { values, positionals } = parseCommandLine('commit', args, {
      branch: { type: 'string', short: 'b' },
      tree: { type: 'string' },
      repo: { type: 'string' },
      data: { type: 'string' },
      storage: { type: 'string' },
      subject: { type: 'string', short: 's' },
      body: { type: 'string' },
      version: { type: 'string' },
      timestamp: { type: 'string' },
      'no-bindings': { type: 'boolean' },
      'no-sign': { type: 'boolean' },
      adopt: { type: 'boolean' },
    }, false);
    void positionals;
    if (!values.branch) throw new UsageError('missing --branch REF', 'commit');
    if (!values.tree) throw new UsageError('missing --tree DIR', 'commit');
    if (values.timestamp !== undefined && !/^\d+$/.test(values.timestamp)) throw new UsageError('--timestamp takes seconds since the epoch', 'commit');
    const branch = validateRefName(values.branch);
    const registry = new RepoRegistry(locationOption(values, 'commit'));
    const name = values.repo ?? 'main';
    const repo = await registry.open(name);
    if (!repo) throw new CairnError('NOT_FOUND', `no repository ${name} in ${registry.reposDir}`);
    await repo.checkMode();
    // Before any object is written: a repository Cairn does not own stays untouched.
    await ownedOrAdopt(registry.dataDir, registry, repo, values.adopt, 'commit', { sign: !values['no-sign'] });
    const metadata: VarDict = values.version ? [['version', new Variant('s', values.version)]] : [];
    const result = await commitFolder(repo, values.tree, branch, {
      subject: values.subject,
      body: values.body,
      metadata,
      timestamp: values.timestamp ? BigInt(values.timestamp) : undefined,
      bindRef: !values['no-bindings'],
    });
    // The same path as a publish through the API: completeness check, signed
    // commit and summary (keys generated on first use), ref log entry.
    const signer = values['no-sign'] ? undefined : createRepoSigner(await ensureRepoKeys(registry.dataDir, name));
    await updateRefs(repo, [{ ref: branch, commit: result.commit }], { actor: `cli:${process.env.USER ?? 'unknown'}`, signer });
    process.stdout.write(`${result.commit}\n`);
    process.stderr.write(`committed ${result.files} files (${result.bytes} bytes) to ${name}:${branch}\n`);
    return 0;
  },
};
