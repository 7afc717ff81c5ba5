/**
 * `.flatpakrepo` and `.flatpakref` files (flatpak's key-file formats read by
 * `flatpak remote-add --from` and `flatpak install --from`): the remote's
 * title and URL, its remote configuration, and the GPG key as base64 of its
 * binary (not armored) form.
 */
import { CairnError } from '../errors';
import type { RemoteConfig } from './config';

/** The binary OpenPGP key inside an ASCII-armored block (the CRC line dropped). */
export function dearmor(armored: string): Buffer {
  const lines = armored.split(/\r?\n/);
  const start = lines.findIndex((l) => l.startsWith('-----BEGIN PGP'));
  const end = lines.findIndex((l, i) => i > start && l.startsWith('-----END PGP'));
  if (start === -1 || end === -1) throw new CairnError('IO', 'the repository key is not an armored OpenPGP block');
  let i = start + 1;
  while (i < end && lines[i]!.trim() !== '') i++; // armor headers end at a blank line
  const body = lines.slice(i + 1, end).filter((l) => l.trim() !== '' && !l.startsWith('='));
  return Buffer.from(body.join(''), 'base64');
}

/** Key-file values are single lines; our remote configuration forbids control characters already. */
function line(key: string, value: string | undefined): string {
  return value === undefined ? '' : `${key}=${value.replace(/[\r\n]/g, ' ')}\n`;
}

export interface FlatpakRepoFile {
  /** The repository's URL, ending in `/`. */
  url: string;
  name: string;
  config: RemoteConfig;
  /** Armored public key, when the repository has one. */
  gpgArmored?: string;
}

export function flatpakRepoFile(f: FlatpakRepoFile): string {
  return (
    '[Flatpak Repo]\n' +
    line('Title', f.config.title ?? f.name) +
    line('Url', f.url) +
    line('Homepage', f.config.homepage) +
    line('Comment', f.config.comment) +
    line('Description', f.config.description) +
    line('Icon', f.config.icon) +
    line('DefaultBranch', f.config.defaultBranch) +
    line('GPGKey', f.gpgArmored ? dearmor(f.gpgArmored).toString('base64') : undefined)
  );
}

export interface FlatpakRefFile extends FlatpakRepoFile {
  /** App or runtime id. */
  id: string;
  branch: string;
  runtime: boolean;
  /** Where its runtime's repository is described (this repository's .flatpakrepo). */
  runtimeRepo?: string;
}

export function flatpakRefFile(f: FlatpakRefFile): string {
  return (
    '[Flatpak Ref]\n' +
    line('Name', f.id) +
    line('Branch', f.branch) +
    line('Title', f.config.title ?? f.name) +
    line('Url', f.url) +
    line('IsRuntime', f.runtime ? 'true' : 'false') +
    line('SuggestRemoteName', f.name) +
    line('RuntimeRepo', f.runtimeRepo) +
    line('Homepage', f.config.homepage) +
    line('Comment', f.config.comment) +
    line('Icon', f.config.icon) +
    line('GPGKey', f.gpgArmored ? dearmor(f.gpgArmored).toString('base64') : undefined)
  );
}

/**
 * The ref a `.flatpakref` for `id` names: `app/ID/ARCH/BRANCH` (or
 * `runtime/…`) among `refs`, on `branch` if given, else the default branch,
 * else the one branch there is. NOT_FOUND / INVALID_ARGUMENT (several
 * branches, none chosen) otherwise.
 */
export function pickRef(refs: Iterable<string>, id: string, branch: string | undefined, defaultBranch: string | undefined): { ref: string; branch: string; runtime: boolean } {
  const found: Array<{ ref: string; branch: string; runtime: boolean }> = [];
  for (const ref of refs) {
    const p = ref.split('/');
    if (p.length !== 4 || (p[0] !== 'app' && p[0] !== 'runtime') || p[1] !== id) continue;
    found.push({ ref, branch: p[3]!, runtime: p[0] === 'runtime' });
  }
  if (found.length === 0) throw new CairnError('NOT_FOUND', `no app or runtime ${id} in the repository`);
  const want = branch ?? defaultBranch;
  const onBranch = want !== undefined ? found.filter((f) => f.branch === want) : found;
  if (onBranch.length === 0) throw new CairnError('NOT_FOUND', `${id} has no branch ${want}`);
  const branches = new Set(onBranch.map((f) => f.branch));
  if (branches.size > 1) throw new CairnError('INVALID_ARGUMENT', `${id} has several branches (${[...branches].slice(0, 10).join(', ')}): choose one with ?branch=`);
  // Apps only, when an app and a runtime share the id (they do not in practice).
  return onBranch.find((f) => !f.runtime) ?? onBranch[0]!;
}
