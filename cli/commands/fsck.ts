import { CairnError } from '../../storage/errors';
import { fsck, type FsckReport } from '../../storage/maintenance/fsck';
import { RepoRegistry } from '../../storage/repo/registry';
import { SettingsStore } from '../../storage/repo/settings';
import { type Command, parseCommandLine, UsageError } from '../command';
import { locationOption } from '../storage-option';

const usage = `Usage: cairn fsck [--data DIR | --storage LOCATION] [--repo NAME] [--repair] [--json]

Verifies every object of the repository NAME (every repository of the data
folder without --repo) against its name, as uploads are verified: metadata
in normal form hashing to its name, each .filez inflated under its declared
size with its content checksum recomputed, detached metadata parsed. Then
walks every ref's closure (tree and present history) for missing objects.
Names every corrupt and missing object and every damaged ref file.

  --repair   move each corrupt object out of objects/ into the repository's
             state/cairn/quarantine/ (never served; 'ostree fsck' does not
             look there): it is answered 404 from then on, and the next push
             of a commit holding it uploads it again. When nothing is corrupt,
             the partial marker ostree's fsck leaves on a damaged commit
             (state/C.commitpartial) is removed once the commit is whole
             again. Only repositories Cairn owns are repaired.

Options:
  --data DIR     data folder (env CAIRN_DATA, default ./data)
  --storage LOC  repositories on a store instead (env CAIRN_STORAGE): a folder,
                 file://PATH or s3://BUCKET/PREFIX, as 'cairn serve --storage'
  --repo NAME    one repository (default: all)
  --json         print the reports as JSON on stdout

Progress goes to stderr. Exit status 0 when nothing is damaged, 1 when
anything is (also after a repair: run fsck again after pushing).`;

export const fsckCommand: Command = {
  name: 'fsck',
  summary: 'verify every object and ref closure; --repair quarantines corrupt objects',
  usage,
  async run(args) {
    const { values, positionals } = parseCommandLine('fsck', args, {
      data: { type: 'string' },
      storage: { type: 'string' },
      repo: { type: 'string' },
      repair: { type: 'boolean' },
      json: { type: 'boolean' },
    }, false);
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`, 'fsck');
    const dataDir = locationOption(values, 'fsck');
    const registry = new RepoRegistry(dataDir);
    const settings = new SettingsStore(dataDir);
    const names = values.repo !== undefined ? [values.repo] : await registry.list();
    const reports: FsckReport[] = [];
    for (const name of names) {
      const repo = await registry.open(name);
      if (!repo) throw new CairnError('NOT_FOUND', `no repository ${name} in ${registry.reposDir}`);
      const repair = values.repair === true && (await settings.get(name)).owned;
      if (values.repair && !repair) process.stderr.write(`${name}: not owned by Cairn: checked, not repaired\n`);
      const r = await fsck(repo, { repair, onProgress: (line) => process.stderr.write(`${line}\n`) });
      reports.push(r);
      if (!values.json) {
        for (const c of r.corrupt) process.stdout.write(`${name}: corrupt ${c.object}: ${c.error}\n`);
        for (const m of r.missing) process.stdout.write(`${name}: missing ${m.object} (needed by commit ${m.commit})\n`);
        for (const d of r.damagedRefs) process.stdout.write(`${name}: damaged ref ${d}\n`);
        for (const c of r.partialCommits) if (!r.partialCleared.includes(c)) process.stdout.write(`${name}: commit ${c} is marked partial (state/${c}.commitpartial)\n`);
        for (const c of r.partialCleared) process.stdout.write(`${name}: commit ${c} is whole: partial marker removed\n`);
        for (const q of r.quarantined) process.stdout.write(`${name}: quarantined ${q.object} -> ${q.to}\n`);
      }
    }
    if (values.json) process.stdout.write(JSON.stringify({ repos: reports }, null, 2) + '\n');
    const bad = reports.filter((r) => !r.ok);
    process.stderr.write(bad.length ? `damage found in ${bad.map((r) => r.repo).join(', ')}\n` : `${reports.length} repositories checked: no damage\n`);
    return bad.length ? 1 : 0;
  },
};
