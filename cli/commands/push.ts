import { validateRefName } from '../../storage/repo/names';
import { type Command, parseCommandLine, UsageError } from '../command';
import { DEFAULT_LIMITS } from '../push/plan';
import { push, updateRefsTogether, type PushResult } from '../push/push';
import { PushApi } from '../push/api';
import { ApiClient } from '../push/http';
import { describeFailure, PushError } from '../push/errors';
import { openLocalRepo } from '../push/local';
import { QuietProgress, TerminalProgress } from '../push/progress';
import { DEFAULT_RETRY } from '../push/retry';
import { summaryLine } from '../push/summary';
import { parsePushUrl } from '../push/target';
import { commitTreeToTempRepo, type TreeRepo } from '../push/tree';

const usage = `Usage: cairn push --url URL [--repo LOCAL_REPO | --tree DIR] [options] REF
       cairn push --url URL --repo LOCAL_REPO --all [options]
       cairn push --url URL --end-of-life REASON [--end-of-life-rebase ID] REF

Publishes the commit at REF of a local archive OSTree repository with its whole
tree to a Cairn server, then moves the server's ref with a compare-and-swap
against the value it had when the push began. Only objects the server lacks
are sent; an interrupted push resumes where it stopped when run again.

  --url URL        the repository's URL, http://HOST:PORT/repo/NAME
  --token T        bearer token with push scope (env CAIRN_TOKEN)
  --repo DIR       local archive repository holding REF (a ref, REMOTE:REF or
                   a commit checksum). Without --repo and --tree, REF names a
                   commit already on the server (a ref or checksum) and only
                   --to moves: promotion.
  --tree DIR       publish folder DIR: commit it (parent: the server's current
                   commit of the ref) and push that; REF is the ref to publish
  --to REF         server ref to move (default: REF)
  --all            every ref of --repo (e.g. a flatpak build repository's apps,
                   runtimes, extensions, locales, debug): all objects first,
                   then one ref update moving them all together
  --end-of-life R  mark flatpak ref REF (app|runtime/ID/ARCH/BRANCH) of the
                   server end-of-life with reason R: a new commit on its head
                   (as flatpak build-commit-from --end-of-life); with
                   --end-of-life-rebase ID, users are offered app ID instead
  --force          move the ref whatever it holds now (no compare-and-swap)
  --jobs N         parallel upload requests (default 4)
  --batch-size N   most objects per multipart upload request (default ${DEFAULT_LIMITS.maxBatchObjects})
  --retries N      retries per request on network errors and 408/429/5xx (default ${DEFAULT_RETRY.retries})
  -s, --subject S  with --tree: commit subject
  --body TEXT      with --tree: commit body
  --version V      with --tree: the 'version' metadata
  --json           print the result as JSON instead of the summary line

Exit status 0 when the ref points at the commit, 1 on any failure (one line on
stderr saying why), 2 on bad usage.`;

export const pushCommand: Command = {
  name: 'push',
  summary: 'upload a commit to a Cairn server and move a ref to it',
  usage,
  async run(args) {
    const { values, positionals } = parseCommandLine('push', args, {
      url: { type: 'string' },
      token: { type: 'string' },
      repo: { type: 'string' },
      tree: { type: 'string' },
      to: { type: 'string' },
      force: { type: 'boolean' },
      jobs: { type: 'string' },
      retries: { type: 'string' },
      'batch-size': { type: 'string' },
      subject: { type: 'string', short: 's' },
      body: { type: 'string' },
      version: { type: 'string' },
      json: { type: 'boolean' },
      all: { type: 'boolean' },
      'end-of-life': { type: 'string' },
      'end-of-life-rebase': { type: 'string' },
    }, true);
    if (values.all) return pushAll(values, positionals);
    if (values['end-of-life'] !== undefined || values['end-of-life-rebase'] !== undefined) return endOfLife(values, positionals);
    if (!values.url) throw new UsageError('missing --url http://HOST:PORT/repo/NAME', 'push');
    if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'missing REF' : `unexpected argument "${positionals[1]}"`, 'push');
    if (values.repo && values.tree) throw new UsageError('--repo and --tree exclude each other', 'push');
    const ref = positionals[0]!;
    const destRef = validateRefName(values.to ?? (ref.includes(':') ? ref.slice(ref.indexOf(':') + 1) : ref));
    if (!values.repo && !values.tree && !values.to) throw new UsageError('without --repo or --tree, give --to: the ref to point at the server commit REF', 'push');
    if (!values.tree && (values.subject || values.body || values.version)) throw new UsageError('--subject, --body and --version go with --tree', 'push');
    const jobs = count(values.jobs, 'jobs', 4, 1, 64);
    const batchSize = count(values['batch-size'], 'batch-size', DEFAULT_LIMITS.maxBatchObjects, 1, 10_000);
    const retries = count(values.retries, 'retries', DEFAULT_RETRY.retries, 0, 100);
    const target = parsePushUrl(values.url);
    const token = values.token ?? process.env.CAIRN_TOKEN ?? undefined;

    const progress = process.stderr.isTTY && !values.json ? new TerminalProgress(process.stderr) : new QuietProgress(process.stderr);
    let tree: TreeRepo | undefined;
    let result: PushResult;
    try {
      result = await push({
        target,
        token: token || undefined,
        localRepo: values.repo,
        ref: values.tree ? destRef : ref,
        destRef,
        force: !!values.force,
        jobs,
        retry: { ...DEFAULT_RETRY, retries },
        limits: { ...DEFAULT_LIMITS, maxBatchObjects: batchSize },
        progress,
        onStart: values.tree
          ? async (current) => {
              progress.stage(`committing ${values.tree}`);
              tree = await commitTreeToTempRepo(values.tree!, destRef, {
                subject: values.subject,
                body: values.body,
                version: values.version,
                parent: current,
              });
              return tree.dir;
            }
          : undefined,
      });
    } finally {
      progress.stop();
      await tree?.dispose();
    }
    process.stdout.write(values.json ? JSON.stringify(result) + '\n' : summaryLine(result) + '\n');
    return 0;
  },
};

function count(raw: string | undefined, name: string, dflt: number, min: number, max: number): number {
  if (raw === undefined) return dflt;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) throw new UsageError(`--${name} takes a whole number from ${min} to ${max}`, 'push');
  return Number(raw);
}

/** `cairn push --all`: every local ref's objects, then one atomic update of all the refs. */
async function pushAll(values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number> {
  if (!values.url) throw new UsageError('missing --url http://HOST:PORT/repo/NAME', 'push');
  if (!values.repo) throw new UsageError('--all needs --repo LOCAL_REPO', 'push');
  if (positionals.length) throw new UsageError(`--all takes no REF (got "${positionals[0]}")`, 'push');
  if (values.tree || values.to || values.subject || values.body || values.version) throw new UsageError('--all goes with neither --tree, --to, --subject, --body nor --version', 'push');
  const jobs = count(values.jobs as string | undefined, 'jobs', 4, 1, 64);
  const batchSize = count(values['batch-size'] as string | undefined, 'batch-size', DEFAULT_LIMITS.maxBatchObjects, 1, 10_000);
  const retries = count(values.retries as string | undefined, 'retries', DEFAULT_RETRY.retries, 0, 100);
  const target = parsePushUrl(values.url as string);
  const token = (values.token as string | undefined) ?? process.env.CAIRN_TOKEN ?? undefined;
  const { repo } = await openLocalRepo(values.repo as string);
  const refs = [...(await repo.listRefs()).keys()];
  if (refs.length === 0) throw new UsageError(`${values.repo as string} has no refs`, 'push');
  const progress = process.stderr.isTTY && !values.json ? new TerminalProgress(process.stderr) : new QuietProgress(process.stderr);
  const results: PushResult[] = [];
  try {
    for (const ref of refs) {
      results.push(
        await push({
          target,
          token: token || undefined,
          localRepo: values.repo as string,
          ref,
          destRef: validateRefName(ref),
          force: !!values.force,
          jobs,
          retry: { ...DEFAULT_RETRY, retries },
          limits: { ...DEFAULT_LIMITS, maxBatchObjects: batchSize },
          progress,
          uploadOnly: true,
        }),
      );
    }
    progress.stage(`updating ${refs.length} refs together`);
    const client = new ApiClient({ apiBase: target.apiBase, token: token || undefined, retry: { ...DEFAULT_RETRY, retries } });
    try {
      await updateRefsTogether(new PushApi(client), results.map((r) => ({ ref: r.ref, commit: r.commit, expected: r.old })), !!values.force);
    } catch (e) {
      throw new PushError(describeFailure(e, `updating ${refs.length} refs`, { tokenGiven: !!token }), e);
    }
  } finally {
    progress.stop();
  }
  for (const r of results) {
    const done = { ...r, refMoved: r.old !== r.commit };
    process.stdout.write(values.json ? JSON.stringify(done) + '\n' : summaryLine(done) + '\n');
  }
  return 0;
}

/** `cairn push --end-of-life REASON REF`: the server publishes the end-of-life commit on REF's head. */
async function endOfLife(values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number> {
  if (!values.url) throw new UsageError('missing --url http://HOST:PORT/repo/NAME', 'push');
  const reason = values['end-of-life'];
  if (typeof reason !== 'string' || reason === '') throw new UsageError('--end-of-life takes the reason users will see', 'push');
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'missing REF' : `unexpected argument "${positionals[1]}"`, 'push');
  if (values.repo || values.tree || values.to || values.all) throw new UsageError('--end-of-life goes with neither --repo, --tree, --to nor --all', 'push');
  const ref = validateRefName(positionals[0]!);
  const target = parsePushUrl(values.url as string);
  const token = (values.token as string | undefined) ?? process.env.CAIRN_TOKEN ?? undefined;
  const api = new PushApi(new ApiClient({ apiBase: target.apiBase, token: token || undefined, retry: DEFAULT_RETRY }));
  try {
    const expected = (await api.refs())[ref];
    if (!expected) throw new PushError(`no ref ${ref} on ${target.repoUrl}`);
    const rebase = values['end-of-life-rebase'] as string | undefined;
    const r = await api.endOfLife({ ref, reason, expected, ...(rebase !== undefined ? { rebase } : {}) });
    process.stdout.write(values.json ? JSON.stringify({ ref, old: expected, new: r.new ?? null }) + '\n' : `${ref}: end of life (${expected.slice(0, 12)} -> ${(r.new ?? '').slice(0, 12)})\n`);
  } catch (e) {
    if (e instanceof PushError) throw e;
    throw new PushError(describeFailure(e, `marking ${ref} end-of-life`, { tokenGiven: !!token }), e);
  }
  return 0;
}
