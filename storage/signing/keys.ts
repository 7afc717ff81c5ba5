/**
 * Per-repository signing keys on disk.
 *
 * Layout (beside the repositories, never inside a served repo, so no URL can
 * reach a secret):
 *
 *   DATA/keys/                 0700
 *   DATA/keys/NAME/            0700   one folder per repository NAME (DATA/repos/NAME)
 *     gpg-secret.asc           0600   armored unprotected OpenPGP v4 secret key (source of truth)
 *     gpg.asc                  0644   armored public key, served as /repo/NAME/keys/gpg.asc
 *     ed25519.secret           0600   base64(seed ‖ public key), libsodium format (source of truth)
 *     ed25519.pub              0644   base64(public key), served as /repo/NAME/keys/ed25519.pub
 *
 * An operator may place their own keys there before the repository is first
 * used; missing secret keys are generated once. The secret files are the
 * truth: a public file is derived from its secret when missing, and one that
 * does not match its secret is an error (it is what hosts import, so
 * silently replacing either side would break every host).
 *
 * Secrets are created by writing a temporary file (fsync'd), then hard-linking
 * it to the final name. link(2), unlike rename(2), fails when the name exists,
 * so of two processes generating at once exactly one wins, and both then use
 * whatever the final file holds; and the final name only ever points at a
 * complete file, so a crash never leaves half a key.
 */

import * as crypto from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { CairnError, isNotFoundErrno } from '../errors';
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

/** Temporary files older than this are leftovers of a crashed writer. */
const STALE_TEMP_MS = 10 * 60 * 1000;

export function repoKeysDir(dataDir: string, name: string): string {
  return path.join(dataDir, 'keys', validateRepoName(name));
}

/** The keys of repository `name`, generating whichever secret key is missing. */
export async function ensureRepoKeys(dataDir: string, name: string): Promise<RepoKeys> {
  const dir = repoKeysDir(dataDir, name);
  await fsp.mkdir(path.dirname(dir), { recursive: true, mode: 0o700 });
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  await removeStaleTemps(dir);

  const gpgSecret = await readOrCreate(dir, KEY_FILES.gpgSecret, async () => {
    return (await generateGpgKey(`Cairn repo ${name}`, 'cairn@localhost')).armoredPrivateKey;
  });
  const edSecret = await readOrCreate(dir, KEY_FILES.ed25519Secret, async () => formatEd25519SecretKey(generateEd25519KeyPair()));
  return finishLoading(name, dir, gpgSecret, edSecret, true);
}

/** The keys of repository `name` as they are; NOT_FOUND if a secret key is missing. */
export async function loadRepoKeys(dataDir: string, name: string): Promise<RepoKeys> {
  const dir = repoKeysDir(dataDir, name);
  const gpgSecret = await readRequired(dir, KEY_FILES.gpgSecret);
  const edSecret = await readRequired(dir, KEY_FILES.ed25519Secret);
  return finishLoading(name, dir, gpgSecret, edSecret, false);
}

async function finishLoading(
  name: string,
  dir: string,
  gpgSecret: string,
  edSecret: string,
  writePublic: boolean,
): Promise<RepoKeys> {
  const gpg = await withFile(KEY_FILES.gpgSecret, name, () => loadGpgSigningKey(gpgSecret));
  const ed25519 = await withFile(KEY_FILES.ed25519Secret, name, async () => parseEd25519SecretKey(edSecret));

  const gpgPublicFile = await ensurePublic(dir, KEY_FILES.gpgPublic, gpg.armoredPublicKey, writePublic, async (text) => {
    const keys = await readGpgPublicKeys(text);
    return keys.length === 1 && keys[0]!.getFingerprint().toUpperCase() === gpg.fingerprint;
  });
  const ed25519PublicFile = await ensurePublic(dir, KEY_FILES.ed25519Public, formatEd25519PublicKey(ed25519.publicKey), writePublic, async (text) =>
    parseEd25519PublicKey(text).equals(ed25519.publicKey),
  );
  return { name, dir, gpg, ed25519, gpgPublicFile, ed25519PublicFile };
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

async function readRequired(dir: string, file: string): Promise<string> {
  try {
    return await fsp.readFile(path.join(dir, file), 'utf8');
  } catch (e) {
    if (isNotFoundErrno(e)) throw new CairnError('NOT_FOUND', `no signing key ${path.join(dir, file)}`);
    throw ioError(e, dir);
  }
}

async function readOptional(p: string): Promise<string | null> {
  try {
    return await fsp.readFile(p, 'utf8');
  } catch (e) {
    if (isNotFoundErrno(e)) return null;
    throw ioError(e, p);
  }
}

/** The secret in `dir/file`; if absent, `make()` one and publish it exclusively (see the header). */
async function readOrCreate(dir: string, file: string, make: () => Promise<string>): Promise<string> {
  const final = path.join(dir, file);
  const existing = await readOptional(final);
  if (existing !== null) return existing;

  const tmp = await writeTemp(dir, file, await make(), 0o600);
  try {
    await fsp.link(tmp, final);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // EEXIST: another process (or an operator) got there first; theirs is the key.
    if (code !== 'EEXIST') {
      throw new CairnError('IO', `cannot create ${final} (the key store needs hard links for exclusive creation): ${(e as Error).message}`);
    }
  } finally {
    await fsp.rm(tmp, { force: true });
  }
  await fsyncDir(dir);
  const winner = await readOptional(final);
  if (winner === null) throw new CairnError('IO', `${final} vanished right after it was created`);
  return winner;
}

/**
 * Makes sure the public file matches `expected`'s key: written (atomically,
 * replacing nothing but a missing file) when absent, checked when present.
 */
async function ensurePublic(
  dir: string,
  file: string,
  expected: string,
  write: boolean,
  matches: (text: string) => Promise<boolean>,
): Promise<string> {
  const final = path.join(dir, file);
  const present = await readOptional(final);
  if (present !== null) {
    let ok = false;
    try {
      ok = await matches(present);
    } catch {
      ok = false;
    }
    if (!ok) {
      throw new CairnError('INVALID_ARGUMENT', `${final} is not the public half of the secret key beside it; fix or remove it`);
    }
    return present;
  }
  if (!write) return expected;
  // Concurrent writers derive identical bytes from the same secret, so a plain rename race is harmless.
  const tmp = await writeTemp(dir, file, expected, 0o644);
  try {
    await fsp.rename(tmp, final);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw ioError(e, final);
  }
  await fsyncDir(dir);
  return expected;
}

const TEMP_SUFFIX = '.tmp';

async function writeTemp(dir: string, file: string, contents: string, mode: number): Promise<string> {
  const tmp = path.join(dir, `.${file}.${process.pid}.${crypto.randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(tmp, 'wx', mode);
    await fh.chmod(mode); // open()'s mode is filtered by the umask; the key modes are not negotiable
    await fh.writeFile(contents, 'utf8');
    await fh.sync();
  } catch (e) {
    await fh?.close().catch(() => undefined);
    fh = undefined;
    await fsp.rm(tmp, { force: true });
    throw ioError(e, tmp);
  } finally {
    await fh?.close();
  }
  return tmp;
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Temporary files are only ever seconds old unless their writer died: remove old ones (they may hold secrets). */
async function removeStaleTemps(dir: string): Promise<void> {
  const now = Date.now();
  for (const entry of await fsp.readdir(dir)) {
    if (!entry.startsWith('.') || !entry.endsWith(TEMP_SUFFIX)) continue;
    const p = path.join(dir, entry);
    try {
      const st = await fsp.stat(p);
      if (now - st.mtimeMs > STALE_TEMP_MS) await fsp.rm(p, { force: true });
    } catch {
      // raced with its owner or another cleaner: nothing to do
    }
  }
}

function ioError(e: unknown, p: string): CairnError {
  return new CairnError('IO', `${p}: ${(e as Error).message}`);
}
