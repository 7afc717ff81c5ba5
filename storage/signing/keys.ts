/**
 * Per-repository signing keys in the server's state store.
 *
 * Layout (beside the repositories, never inside a served repo, so no URL can
 * reach a secret):
 *
 *   DATA/keys/NAME/                   one folder per repository NAME (DATA/repos/NAME)
 *     gpg-secret.asc           0600   armored unprotected OpenPGP v4 secret key (source of truth)
 *     gpg.asc                  0600   armored public key, served as /repo/NAME/keys/gpg.asc
 *     ed25519.secret           0600   base64(seed ‖ public key), libsodium format (source of truth)
 *     ed25519.pub              0600   base64(public key), served as /repo/NAME/keys/ed25519.pub
 *
 * An operator may place their own keys there before the repository is first
 * used; missing secret keys are generated once. The secret files are the
 * truth: a public file is derived from its secret when missing, and one that
 * does not match its secret is an error (it is what hosts import, so
 * silently replacing either side would break every host).
 *
 * The files are keys `keys/NAME/FILE` of the data location's state store
 * (storage/backends/factory.ts stateStore: a folder's files are written 0600,
 * an S3 location's are shared by replicas). Secrets are created write-once
 * (Backend.create: a hard link of a complete temporary file on a folder,
 * If-None-Match on S3), so of two processes generating at once exactly one
 * wins and both then use whatever the store holds; a crash never leaves half
 * a key.
 */

import { CairnError } from '../errors';
import type { Backend } from '../backends/backend';
import { childLocation, stateStore } from '../backends/factory';
import { validateRepoName } from '../repo/names';
import {
  type Ed25519KeyPair,
  formatEd25519PublicKey,
  formatEd25519SecretKey,
  generateEd25519KeyPair,
  parseEd25519PublicKey,
  parseEd25519SecretKey,
} from './ed25519';
import { type GpgSigningKey, generateGpgKey, loadGpgSigningKey, readGpgPublicKeys } from './gpg';

export const KEY_FILES = {
  gpgSecret: 'gpg-secret.asc',
  gpgPublic: 'gpg.asc',
  ed25519Secret: 'ed25519.secret',
  ed25519Public: 'ed25519.pub',
} as const;

export interface RepoKeys {
  readonly name: string;
  readonly dir: string;
  readonly gpg: GpgSigningKey;
  readonly ed25519: Ed25519KeyPair;
  /** Exact contents of gpg.asc and ed25519.pub, for serving. */
  readonly gpgPublicFile: string;
  readonly ed25519PublicFile: string;
}

/** Where repository `name`'s keys are (a folder, or an S3 location): for messages and operators. */
export function repoKeysDir(dataDir: string, name: string): string {
  return childLocation(dataDir, `keys/${validateRepoName(name)}`);
}

/** The store and key prefix of repository `name`'s keys. */
function keysOf(dataDir: string, name: string): { store: Backend; prefix: string; dir: string } {
  return { store: stateStore(dataDir), prefix: `keys/${validateRepoName(name)}/`, dir: repoKeysDir(dataDir, name) };
}

type Keys = ReturnType<typeof keysOf>;

/** Whether repository `name` has a key folder at all (any of its files). */
export async function hasRepoKeys(dataDir: string, name: string): Promise<boolean> {
  const k = keysOf(dataDir, name);
  for (const f of Object.values(KEY_FILES)) if (await k.store.stat(k.prefix + f)) return true;
  return false;
}

/** The keys of repository `name`, generating whichever secret key is missing. */
export async function ensureRepoKeys(dataDir: string, name: string): Promise<RepoKeys> {
  const k = keysOf(dataDir, name);
  const gpgSecret = await readOrCreate(k, KEY_FILES.gpgSecret, async () => {
    return (await generateGpgKey(`Cairn repo ${name}`, 'cairn@localhost')).armoredPrivateKey;
  });
  const edSecret = await readOrCreate(k, KEY_FILES.ed25519Secret, async () => formatEd25519SecretKey(generateEd25519KeyPair()));
  return finishLoading(name, k, gpgSecret, edSecret, true);
}

/** The keys of repository `name` as they are; NOT_FOUND if a secret key is missing. */
export async function loadRepoKeys(dataDir: string, name: string): Promise<RepoKeys> {
  const k = keysOf(dataDir, name);
  const gpgSecret = await readRequired(k, KEY_FILES.gpgSecret);
  const edSecret = await readRequired(k, KEY_FILES.ed25519Secret);
  return finishLoading(name, k, gpgSecret, edSecret, false);
}

async function finishLoading(
  name: string,
  k: Keys,
  gpgSecret: string,
  edSecret: string,
  writePublic: boolean,
): Promise<RepoKeys> {
  const gpg = await withFile(KEY_FILES.gpgSecret, name, () => loadGpgSigningKey(gpgSecret));
  const ed25519 = await withFile(KEY_FILES.ed25519Secret, name, async () => parseEd25519SecretKey(edSecret));

  const gpgPublicFile = await ensurePublic(k, KEY_FILES.gpgPublic, gpg.armoredPublicKey, writePublic, async (text) => {
    const keys = await readGpgPublicKeys(text);
    return keys.length === 1 && keys[0]!.getFingerprint().toUpperCase() === gpg.fingerprint;
  });
  const ed25519PublicFile = await ensurePublic(k, KEY_FILES.ed25519Public, formatEd25519PublicKey(ed25519.publicKey), writePublic, async (text) =>
    parseEd25519PublicKey(text).equals(ed25519.publicKey),
  );
  return { name, dir: k.dir, gpg, ed25519, gpgPublicFile, ed25519PublicFile };
}

/** Names the file in errors about its contents: the operator has to know which one to fix. */
async function withFile<T>(file: string, name: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    if (e instanceof CairnError) throw new CairnError(e.code, `keys/${name}/${file}: ${e.message}`, e.details);
    throw e;
  }
}

async function readOptional(k: Keys, file: string): Promise<string | null> {
  const got = await k.store.read(k.prefix + file);
  return got ? got.data.toString('utf8') : null;
}

async function readRequired(k: Keys, file: string): Promise<string> {
  const text = await readOptional(k, file);
  if (text === null) throw new CairnError('NOT_FOUND', `no signing key ${k.dir}/${file}`);
  return text;
}

/** The secret `file`; if absent, `make()` one and create it write-once (see the header). */
async function readOrCreate(k: Keys, file: string, make: () => Promise<string>): Promise<string> {
  const existing = await readOptional(k, file);
  if (existing !== null) return existing;
  // false: another process (or an operator) got there first; theirs is the key.
  await k.store.create(k.prefix + file, Buffer.from(await make(), 'utf8'));
  const winner = await readOptional(k, file);
  if (winner === null) throw new CairnError('IO', `${k.dir}/${file} vanished right after it was created`);
  return winner;
}

/**
 * Makes sure the public file matches `expected`'s key: written (atomically,
 * replacing nothing but a missing file) when absent, checked when present.
 */
async function ensurePublic(
  k: Keys,
  file: string,
  expected: string,
  write: boolean,
  matches: (text: string) => Promise<boolean>,
): Promise<string> {
  const present = await readOptional(k, file);
  if (present !== null) {
    let ok = false;
    try {
      ok = await matches(present);
    } catch {
      ok = false;
    }
    if (!ok) {
      throw new CairnError('INVALID_ARGUMENT', `${k.dir}/${file} is not the public half of the secret key beside it; fix or remove it`);
    }
    return present;
  }
  if (!write) return expected;
  // Concurrent writers derive identical bytes from the same secret: whichever lands is the same.
  await k.store.create(k.prefix + file, Buffer.from(expected, 'utf8'));
  return expected;
}
