import { compileDelta } from '../../storage/deltas/compile';
import { deltaName, parseDeltaName } from '../../storage/deltas/format';
import { deltaExists, listDeltas } from '../../storage/deltas/inventory';
import { pruneDeltas } from '../../storage/deltas/prune';
import { backendDeltaSource, describeDelta, type DeltaDescription } from '../../storage/deltas/read';
import { CairnError } from '../../storage/errors';
import { isChecksum } from '../../storage/objects/checksum';
import { RepoRegistry } from '../../storage/repo/registry';
import type { Repo } from '../../storage/repo/repo';
import { updateSummary, type SummarySigner } from '../../storage/repo/summary';
import { hasRepoKeys } from '../../storage/signing/keys';
import { createServerContext } from '../../server/bootstrap';
import { type Command, parseCommandLine, UsageError } from '../command';
import { locationOption } from '../storage-option';
import { ownedOrAdopt } from './adopt';

const usage = `Usage: cairn delta generate --repo NAME --to C|REF [--from C|REF | --empty] [--data DIR | --storage LOC] [--adopt]
       cairn delta list --repo NAME [--data DIR | --storage LOC] [--json]
       cairn delta show --repo NAME [--data DIR | --storage LOC] [--json] FROM-TO|TO
       cairn delta prune --repo NAME [--data DIR | --storage LOC] [--adopt]

Static deltas of a repository in the data folder, for operators. A running
'cairn serve' makes them by itself when refs move (see the repository settings
deltas.scratch and deltas.previousCommits) and when hosts ask for missing ones.

  generate   compile the delta FROM → TO here and now (in this process), then
             regenerate the summary and delta indexes (signed when the
             repository has signing keys in DATA/keys/NAME). Without --from
             or --empty, FROM is TO's parent. Deltas are immutable: an existing
             one is left as it is.
  list       every delta: name, size (superblock and parts), parts
  show       what one delta holds: parts, objects, opcodes, fallbacks
  prune      remove deltas whose from- or to-commit is no longer in the
             repository, then regenerate the summary

Options:
  --repo NAME    repository (default main)
  --data DIR     data folder (env CAIRN_DATA, default ./data)
  --storage LOC  repositories on a store instead (env CAIRN_STORAGE): a folder,
                 file://PATH or s3://BUCKET/PREFIX, as 'cairn serve --storage'
  --to C|REF     target commit (checksum or ref name)
  --from C|REF   source commit
  --empty        from scratch (hosts with nothing installed)
  --json         machine-readable output
  --adopt        generate, prune: adopt the repository first if Cairn does not
                 own it (see 'cairn adopt'); without it they refuse a
                 repository Cairn did not create and leave it untouched`;

export const delta: Command = {
  name: 'delta',
  summary: 'generate, list, show and prune static deltas',
  usage,
  async run(args) {
    const [sub, ...rest] = args;
    const { values, positionals } = parseCommandLine('delta', rest, {
      repo: { type: 'string' },
      data: { type: 'string' },
      storage: { type: 'string' },
      to: { type: 'string' },
      from: { type: 'string' },
      empty: { type: 'boolean' },
      json: { type: 'boolean' },
      adopt: { type: 'boolean' },
    }, true);
    const dataDir = locationOption(values, 'delta');
    const registry = new RepoRegistry(dataDir);
    const openRepo = async () => {
      const name = values.repo ?? 'main';
      const repo = await registry.open(name);
      if (!repo) throw new CairnError('NOT_FOUND', `no repository ${name} in ${registry.reposDir}`);
      return repo;
    };
    const onlyFor = (flags: Array<keyof typeof values>, allowed: string[]) => {
      for (const f of flags) if (values[f] !== undefined && !allowed.includes(f)) throw new UsageError(`--${f} is not an option of 'delta ${sub}'`, 'delta');
    };
    const flags = Object.keys(values) as Array<keyof typeof values>;

    switch (sub) {
      case 'generate': {
        onlyFor(flags, ['repo', 'data', 'storage', 'to', 'from', 'empty', 'adopt']);
        if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`, 'delta');
        if (!values.to) throw new UsageError('missing --to COMMIT|REF', 'delta');
        if (values.from && values.empty) throw new UsageError('--from and --empty exclude each other', 'delta');
        const repo = await openRepo();
        await ownedOrAdopt(dataDir, registry, repo, values.adopt, 'delta generate');
        return generate(repo, dataDir, registry, values.to, values.empty ? null : values.from);
      }
      case 'list': {
        onlyFor(flags, ['repo', 'data', 'storage', 'json']);
        if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`, 'delta');
        const deltas = await listDeltas(await openRepo());
        if (values.json) process.stdout.write(JSON.stringify({ deltas }, null, 2) + '\n');
        else for (const d of deltas) process.stdout.write(`${d.name}\t${d.size}\t${d.parts ?? '?'}\n`);
        return 0;
      }
      case 'show': {
        onlyFor(flags, ['repo', 'data', 'storage', 'json']);
        if (positionals.length !== 1) throw new UsageError('show takes one delta name: FROM-TO or TO (hex)', 'delta');
        const { from, to } = parseDeltaName(positionals[0]!);
        const repo = await openRepo();
        if (!(await deltaExists(repo, from, to))) throw new CairnError('NOT_FOUND', `no static delta ${deltaName(from, to)} in ${repo.name}`);
        const d = await describeDelta(backendDeltaSource(repo.backend, from, to));
        process.stdout.write(values.json ? JSON.stringify(d, (_k, v) => (typeof v === 'bigint' ? Number(v) : v), 2) + '\n' : describeText(d));
        return 0;
      }
      case 'prune': {
        onlyFor(flags, ['repo', 'data', 'storage', 'adopt']);
        const repo = await openRepo();
        await ownedOrAdopt(dataDir, registry, repo, values.adopt, 'delta prune');
        const removed = await pruneDeltas(repo);
        if (removed.length) await updateSummary(repo, await summarySigner(dataDir, registry, repo));
        for (const n of removed) process.stdout.write(`removed ${n}\n`);
        process.stderr.write(`${removed.length} deltas removed\n`);
        return 0;
      }
      case undefined:
        throw new UsageError('missing subcommand: generate, list, show or prune', 'delta');
      default:
        throw new UsageError(`unknown subcommand "${sub}": use generate, list, show or prune`, 'delta');
    }
  },
};

async function generate(repo: Repo, dataDir: string, registry: RepoRegistry, toArg: string, fromArg: string | null | undefined): Promise<number> {
  const to = await resolveCommit(repo, toArg, '--to');
  let from: string | null;
  if (fromArg === null) from = null;
  else if (fromArg !== undefined) from = await resolveCommit(repo, fromArg, '--from');
  else {
    // As `ostree static-delta generate`: the parent by default.
    from = (await repo.readCommit(to))?.parent ?? null;
    if (!from) throw new UsageError(`commit ${to} has no parent; give --from or --empty`, 'delta');
    await resolveCommit(repo, from, 'the parent');
  }
  const name = deltaName(from, to);
  if (await deltaExists(repo, from, to)) {
    process.stderr.write(`static delta ${name} already exists (deltas are immutable)\n`);
    process.stdout.write(`${name}\n`);
    return 0;
  }

  const progress = progressLine(`compiling ${from ? `${from.slice(0, 10)}… → ` : 'scratch → '}${to.slice(0, 10)}…`);
  let result;
  try {
    result = await compileDelta(repo, from, to);
  } finally {
    progress.stop();
  }
  process.stderr.write(`updating the summary of ${repo.name}\n`);
  await updateSummary(repo, await summarySigner(dataDir, registry, repo));
  const s = result.stats;
  process.stdout.write(`${name}\n`);
  process.stderr.write(
    `delta ${name}: ${result.totalSize} bytes in ${result.partSizes.length} parts (+${result.fallbackSize} in ${s.fallbacks} fallbacks), ` +
      `${s.splicedFiles} files spliced, ${s.bsdiffFiles} bsdiff, ${s.metadataObjects} metadata, ${(s.elapsedMs / 1000).toFixed(1)} s\n`,
  );
  return 0;
}

/** Signs like `cairn serve` when the repository has keys; never creates keys from here. */
async function summarySigner(dataDir: string, registry: RepoRegistry, repo: Repo): Promise<SummarySigner | undefined> {
  if (!(await hasRepoKeys(dataDir, repo.name))) return undefined;
  const ctx = await createServerContext(dataDir, registry, { deltas: false });
  return (await ctx.signerFor(repo))?.signSummary;
}

async function resolveCommit(repo: Repo, v: string, what: string): Promise<string> {
  const commit = isChecksum(v) ? v : await repo.readRef(v);
  if (!commit) throw new CairnError('NOT_FOUND', `${what}: no ref ${v} in ${repo.name}`);
  if (!(await repo.readCommit(commit))) throw new CairnError('NOT_FOUND', `${what}: commit ${commit} is not in ${repo.name}`);
  return commit;
}

/** One self-rewriting line on a terminal (elapsed time); a single line otherwise. */
function progressLine(label: string): { stop(): void } {
  const started = Date.now();
  const tty = process.stderr.isTTY;
  if (!tty) {
    process.stderr.write(`${label}\n`);
    return { stop() {} };
  }
  const draw = () => process.stderr.write(`\r${label} ${((Date.now() - started) / 1000).toFixed(1)} s`);
  draw();
  const timer = setInterval(draw, 250);
  return {
    stop() {
      clearInterval(timer);
      draw();
      process.stderr.write('\n');
    },
  };
}

function describeText(d: DeltaDescription): string {
  const lines = [
    `Delta:       ${d.name}`,
    `From:        ${d.from ?? '(scratch)'}`,
    `To:          ${d.to}`,
    `Digest:      ${d.digest}`,
    `Generated:   ${new Date(Number(d.timestamp) * 1000).toISOString()}`,
    `Endianness:  ${d.endianness}`,
    `Size:        ${d.totalSize} bytes (superblock ${d.superblockSize}), ${d.totalUsize} uncompressed`,
    `Fallbacks:   ${d.fallbacks.length} (${d.fallbackSize} bytes)`,
    `Parts:       ${d.parts.length}`,
  ];
  for (const p of d.parts) {
    const objs = Object.entries(p.objects).filter(([, n]) => n > 0).map(([t, n]) => `${n} ${t}`).join(', ');
    const ops = Object.entries(p.ops).map(([o, n]) => `${o}×${n}`).join(' ');
    lines.push(`  ${p.index}: ${p.inline ? 'inline ' : ''}${p.compression} ${p.size} → ${p.usize} bytes; ${objs}; ops ${ops}`);
  }
  return lines.join('\n') + '\n';
}
