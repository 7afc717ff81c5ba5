// A throwaway, passwordless GnuPG key in a temporary GNUPGHOME, for `ostree gpg-sign` and
// `ostree summary -u --gpg-sign`. Call dispose() to stop the gpg-agent it started.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { run, runCommand } from './ostree';

export interface GpgKey {
  homedir: string;
  /** Long key id (16 hex) of the primary key. */
  keyId: string;
  fingerprint: string;
  /** Armored public key, ready for `ostree remote add --gpg-import=`. */
  publicKeyPath: string;
  dispose(): Promise<void>;
}

export async function makeGpgKey(dir: string, uid = 'Cairn Test <cairn-test@example.invalid>'): Promise<GpgKey> {
  // The agent's socket lives in the homedir: keep the path short (sun_path limit).
  const homedir = path.join(dir, 'gnupg');
  await fsp.mkdir(homedir, { recursive: true, mode: 0o700 });
  const env = { ...process.env, GNUPGHOME: homedir };
  await run(
    'gpg',
    ['--batch', '--pinentry-mode', 'loopback', '--passphrase', '', '--quick-gen-key', uid, 'ed25519', 'sign', 'never'],
    { env },
  );
  const colons = await run('gpg', ['--batch', '--with-colons', '--list-secret-keys'], { env });
  const sec = colons.split('\n').find((l) => l.startsWith('sec:'));
  const fpr = colons.split('\n').find((l) => l.startsWith('fpr:'));
  const keyId = sec?.split(':')[4];
  const fingerprint = fpr?.split(':')[9];
  if (!keyId || !fingerprint) throw new Error(`could not read the generated key:\n${colons}`);
  const publicKeyPath = path.join(dir, 'pubkey.asc');
  await fsp.writeFile(publicKeyPath, await run('gpg', ['--batch', '--armor', '--export', fingerprint], { env }));
  return {
    homedir,
    keyId,
    fingerprint,
    publicKeyPath,
    dispose: async () => {
      await runCommand('gpgconf', ['--homedir', homedir, '--kill', 'all'], { env });
    },
  };
}
