import { statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RepoRegistry } from '../../storage/repo/registry';
import type { Mount } from '../../server/app';
import { isClusterWorker } from '../../server/cluster';
import { serve as serveServer } from '../../server/start';
import { createLogger } from '../../server/logging';
import { batchedSink } from '../../server/logsink';
import { type Command, parseCommandLine, UsageError } from '../command';
import { locationOption } from '../storage-option';
import { validateRepoName } from '../../storage/repo/names';
import { checkPublicEndpoint, type S3RedirectOptions } from '../../server/files/redirect';
import { MAX_PRESIGN_SECONDS } from '../../storage/backends/s3';

const usage = `Usage: cairn serve [--data DIR | --storage s3://BUCKET/PREFIX] [--port N] [--host ADDR] [--workers N] [--mount PREFIX=DIR]...

Serves every OSTree archive repository DIR/repos/NAME at /repo/NAME/.
On first start with no repository, creates DIR/repos/main.

Options:
  --data DIR            data folder (env CAIRN_DATA, default ./data)
  --storage LOCATION    where repositories and server state live instead of the data
                        folder (env CAIRN_STORAGE): a folder, file://PATH, or
                        s3://BUCKET/PREFIX on an S3-compatible store (endpoint
                        CAIRN_S3_ENDPOINT, the standard AWS credentials and AWS_REGION);
                        replicas on one location share repositories, settings, keys and
                        revocations (give them one CAIRN_TOKEN_SECRET); --data then names
                        only local scratch
  --port N              TCP port, 0 picks a free one (env CAIRN_PORT, default 8080)
  --host ADDR           address to listen on (env CAIRN_HOST, default 127.0.0.1)
  --workers N           processes answering requests (env CAIRN_WORKERS, default: the
                        number of CPUs minus one, at least 1, at most 16); 1 runs
                        everything in one process
  --mount PREFIX=DIR    also serve folder DIR at URL prefix PREFIX with the repository
                        file rules (repeatable; /healthz, /metrics, /repo/ and /api/ win;
                        the first mount in the order given whose prefix matches answers)
  --follow-symlinks      also serve files reached through symlinks inside a repository
                        that lead out of it (env CAIRN_FOLLOW_SYMLINKS=1; default: such
                        files are absent, 404; a repository folder may itself be a symlink)
  --mount PREFIX=repo:NAME
                        also serve the data folder's repository NAME at PREFIX, exactly
                        as at /repo/NAME/ (an old URL hosts already have as their remote)
  --s3-redirect         with --storage s3://…: answer GETs of content-addressed files
                        (objects, delta parts and superblocks) with a 307 to a presigned
                        URL of the S3 object, so their bytes go from the store to the
                        client (env CAIRN_S3_REDIRECT=1); summary, signatures, refs and
                        config are still served by Cairn
  --s3-redirect-expires SECONDS
                        how long a presigned URL is valid (env CAIRN_S3_REDIRECT_EXPIRES,
                        default 300, at most 604800)
  --s3-public-endpoint URL
                        the store's origin as clients reach it, for the presigned URLs
                        (env CAIRN_S3_PUBLIC_ENDPOINT; default CAIRN_S3_ENDPOINT)

Once listening, prints one JSON line with "msg":"listening", "port" and "url".
Logs are JSON lines on stdout; CAIRN_LOG=debug|info|warn|error|silent.
SIGTERM or SIGINT stops it gracefully.`;

export const serve: Command = {
  name: 'serve',
  summary: 'serve the repositories of a data folder over HTTP',
  usage,
  async run(args) {
    const { values } = parseCommandLine('serve', args, {
      data: { type: 'string' },
      storage: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      mount: { type: 'string', multiple: true },
      workers: { type: 'string' },
      'follow-symlinks': { type: 'boolean' },
      's3-redirect': { type: 'boolean' },
      's3-redirect-expires': { type: 'string' },
      's3-public-endpoint': { type: 'string' },
    }, false);
    const env = process.env;
    const dataDir = locationOption(values, 'serve');
    const port = parsePort(values.port ?? env.CAIRN_PORT ?? '8080');
    const host = values.host ?? env.CAIRN_HOST ?? '127.0.0.1';
    const mounts = (values.mount ?? []).map(parseMount);
    const workers = parseWorkers(values.workers ?? env.CAIRN_WORKERS);
    const s3Redirect = s3RedirectOption(values, env, dataDir);

    const logger = createLogger({ write: batchedSink().write });
    const followSymlinks = values['follow-symlinks'] === true || env.CAIRN_FOLLOW_SYMLINKS === '1';
    const code = await serveServer({ dataDir, registry: new RepoRegistry(dataDir, { followSymlinks }), port, host, mounts, workers, logger, s3Redirect });
    // A cluster worker's IPC channel would keep it alive: leave once the log is out (the sink flushes on exit).
    if (isClusterWorker()) setImmediate(() => process.exit(code));
    return code;
  },
};

/**
 * Default: one process fewer than CPUs (at least 1, at most 16), so on one or
 * two CPUs a single process and no cluster at all. Measured on 2 cores with
 * the stock client pulling the bench repo (bench/pull.ts, bare-user, warm):
 * `--workers 2` spent 2.1-2.4 s of server CPU per pull against 1.3-1.4 s for
 * one process (each worker keeps its own file cache, so a connection landing
 * on the other worker re-reads objects; two processes wake per burst), and
 * pulled no faster (5.05-5.32 s vs 4.93-5.16 s): on a small machine the
 * cluster takes CPU from everything else. The one left over on bigger
 * machines is for the primary, which in cluster mode runs the delta
 * compiler. Workers pay off for many concurrent
 * clients (64-connection small-object throughput ~26k vs ~18k req/s on the
 * same 2 cores): ask for them with --workers.
 */
export function defaultWorkers(cpus: number): number {
  return Math.max(1, Math.min(16, cpus - 1));
}

export function parseWorkers(s: string | undefined, cpus = os.availableParallelism()): number {
  if (s === undefined || s === '' || s === 'auto') return defaultWorkers(cpus);
  if (!/^\d{1,3}$/.test(s) || Number(s) < 1 || Number(s) > 256) throw new UsageError(`invalid --workers "${s}": use 1-256 or auto`, 'serve');
  return Number(s);
}

function parsePort(s: string): number {
  if (!/^\d{1,5}$/.test(s) || Number(s) > 65535) throw new UsageError(`invalid port "${s}": use 0-65535`, 'serve');
  return Number(s);
}

function parseMount(spec: string): Mount {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) throw new UsageError(`invalid --mount "${spec}": use PREFIX=DIR`, 'serve');
  const prefix = spec.slice(0, eq);
  if (!prefix.startsWith('/') || /[?#%\\]/.test(prefix) || prefix.split('/').some((s) => s === '.' || s === '..')) {
    throw new UsageError(`invalid --mount prefix "${prefix}": use an absolute URL path such as / or /httpd`, 'serve');
  }
  const what = spec.slice(eq + 1);
  if (what.startsWith('repo:')) {
    const repo = what.slice('repo:'.length);
    try {
      validateRepoName(repo);
    } catch {
      throw new UsageError(`invalid --mount "${spec}": "${repo}" is not a repository name`, 'serve');
    }
    return { prefix, repo };
  }
  const dir = path.resolve(what);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    /* reported below */
  }
  if (!isDir) throw new UsageError(`invalid --mount "${spec}": ${dir} is not a folder`, 'serve');
  return { prefix, dir };
}

/** `--s3-redirect` and its settings; only for a store on S3. */
export function s3RedirectOption(
  values: { 's3-redirect'?: boolean; 's3-redirect-expires'?: string; 's3-public-endpoint'?: string },
  env: NodeJS.ProcessEnv,
  location: string,
): S3RedirectOptions | undefined {
  const on = values['s3-redirect'] === true || env.CAIRN_S3_REDIRECT === '1';
  if (!on) {
    if (values['s3-redirect-expires'] !== undefined || values['s3-public-endpoint'] !== undefined) throw new UsageError('--s3-redirect-expires and --s3-public-endpoint go with --s3-redirect', 'serve');
    return undefined;
  }
  if (!location.startsWith('s3://')) throw new UsageError('--s3-redirect needs --storage s3://BUCKET/PREFIX (a folder\'s files are always served by Cairn)', 'serve');
  const expires = values['s3-redirect-expires'] ?? env.CAIRN_S3_REDIRECT_EXPIRES;
  let expiresSec: number | undefined;
  if (expires !== undefined && expires !== '') {
    if (!/^\d{1,6}$/.test(expires) || Number(expires) < 1 || Number(expires) > MAX_PRESIGN_SECONDS) throw new UsageError(`invalid --s3-redirect-expires "${expires.slice(0, 40)}": use 1-${MAX_PRESIGN_SECONDS} (seconds)`, 'serve');
    expiresSec = Number(expires);
  }
  const endpoint = values['s3-public-endpoint'] ?? (env.CAIRN_S3_PUBLIC_ENDPOINT || undefined);
  let publicEndpoint: string | undefined;
  if (endpoint !== undefined) {
    try {
      publicEndpoint = checkPublicEndpoint(endpoint);
    } catch (e) {
      throw new UsageError(`invalid --s3-public-endpoint "${endpoint.slice(0, 200)}": ${(e as Error).message}`, 'serve');
    }
  }
  return { expiresSec, publicEndpoint };
}
