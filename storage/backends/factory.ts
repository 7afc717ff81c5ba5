import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { CairnError, isNotFoundErrno } from '../errors';
import { full } from './full';
import { type Backend, validateKey } from './backend';
import { FsBackend, type FsBackendOptions } from './fs';
import { S3Backend, type S3BackendOptions, type S3ClientSettings, makeS3Client, parseS3Url, s3SettingsFromEnv } from './s3';

/**
 * The one place that constructs storage drivers. A location is either a
 * folder (a path, or `file://PATH`) or `s3://BUCKET/PREFIX` (an S3-compatible
 * store: endpoint `CAIRN_S3_ENDPOINT`, the SDK's standard credentials and
 * `AWS_REGION`). Everything above storage/backends/ asks for a store by
 * location; `childLocation` names the stores below one (a repository below
 * the data location).
 */
export interface BackendForOptions {
  /** FsBackend options (symlink confinement, kept folders); ignored for S3. */
  fs?: FsBackendOptions;
  /** S3Backend options (part size, lock lease); ignored for folders. */
  s3?: S3BackendOptions;
  /** Where S3 settings come from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** S3 client settings, overriding the environment's. */
  s3Client?: S3ClientSettings;
}

export type LocationKind = 'fs' | 's3';

export function locationKind(location: string): LocationKind {
  if (location.startsWith('s3://')) return 's3';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location) && !location.startsWith('file://')) {
    throw new CairnError('INVALID_ARGUMENT', `unsupported storage location ${location.slice(0, 200)} (a folder, file://PATH or s3://BUCKET/PREFIX)`);
  }
  return 'fs';
}

/** One S3 client per endpoint, region and credentials: every repository's store shares its connections. */
const clients = new Map<string, S3Client>();

function clientFor(settings: S3ClientSettings): S3Client {
  const id = JSON.stringify([settings.endpoint ?? '', settings.region ?? '', settings.credentials?.accessKeyId ?? '', settings.credentials?.secretAccessKey ?? '', settings.credentials?.sessionToken ?? '']);
  let c = clients.get(id);
  if (!c) {
    c = makeS3Client(settings);
    clients.set(id, c);
  }
  return c;
}

/** The driver for a location: FsBackend for a folder, S3Backend for s3://BUCKET/PREFIX. */
export function backendFor(location: string, opts: BackendForOptions = {}): Backend {
  if (locationKind(location) === 's3') {
    const { bucket, prefix } = parseS3Url(location);
    const settings = { ...s3SettingsFromEnv(opts.env), ...opts.s3Client };
    return new S3Backend(clientFor(settings), bucket, prefix, opts.s3);
  }
  const dir = location.startsWith('file://') ? decodeURIComponent(location.slice('file://'.length)) : location;
  if (dir === '') throw new CairnError('INVALID_ARGUMENT', 'empty storage location');
  return new FsBackend(dir, opts.fs);
}

/** The location of `sub` (validated like a key: no `..`, no empty segment) below `location`. */
export function childLocation(location: string, sub: string): string {
  validateKey(sub);
  if (locationKind(location) === 's3') {
    const { bucket, prefix } = parseS3Url(location);
    return `s3://${bucket}/${prefix}${sub}`;
  }
  if (location.startsWith('file://')) return `${location.replace(/\/+$/, '')}/${sub}`;
  return path.join(location, sub);
}

/** One state store per location: its users (settings, keys, revocations…) share its caches and locks. */
const stateStores = new Map<string, Backend>();

/**
 * The server's state store for the data location (`backendFor(dataDir)`):
 * settings, signing keys, the token secret, revocations live in it, below
 * the keys `settings/`, `keys/`, `secrets/`, `state/`, beside the
 * repositories (`repos/NAME/`), so that with an S3 location replicas share
 * them. A folder's files are written 0600 (secrets among them; settings and
 * public keys 0644) in folders made 0700, and a
 * dangling symlink or a file where a folder should be is an error, never
 * absence (absent settings mean a public repository: fail closed).
 */
export function stateStore(location: string, opts: Pick<BackendForOptions, 'env' | 's3Client'> = {}): Backend {
  const id = locationKind(location) === 's3' ? location : path.resolve(location.startsWith('file://') ? decodeURIComponent(location.slice('file://'.length)) : location);
  let b = stateStores.get(id);
  if (!b) {
    b = full(backendFor(location, { ...opts, fs: { keepFolders: STATE_FOLDERS, fileMode: stateFileMode, dirMode: 0o700, failClosed: true } }));
    if (stateStores.size >= 64) stateStores.clear();
    stateStores.set(id, b);
  }
  return b;
}

/** Public state (settings, public keys) 0644; everything else (secrets, key temporaries) 0600. */
function stateFileMode(key: string): number {
  return key.startsWith('settings/') || /^keys\/[^/]+\/(gpg\.asc|ed25519\.pub)$/.test(key) ? 0o644 : 0o600;
}

/** Folders of a data folder that stay when their last file goes. */
const STATE_FOLDERS = ['repos', 'tmp'];

/**
 * The names of the "folders" directly below `sub` of a location (the
 * repositories below `repos`): a folder's subfolders, an S3 prefix's common
 * prefixes. Sorted; none when `sub` is absent.
 */
export async function childNames(location: string, sub: string, opts: Pick<BackendForOptions, 'env' | 's3Client'> = {}): Promise<string[]> {
  validateKey(sub);
  if (locationKind(location) === 's3') {
    const b = backendFor(location, opts) as S3Backend;
    return (await b.children(sub)).sort();
  }
  const dir = path.join(location.startsWith('file://') ? decodeURIComponent(location.slice('file://'.length)) : location, sub);
  try {
    return (await fsp.readdir(dir)).sort();
  } catch (e) {
    if (isNotFoundErrno(e)) return [];
    throw new CairnError('IO', `storage error on ${sub}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { path: sub });
  }
}
