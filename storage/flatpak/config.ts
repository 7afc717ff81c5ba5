/**
 * A flatpak repository's remote configuration: what `flatpak remote-add`
 * takes from the summary (`xa.title`, `xa.comment`, …) and the
 * `.flatpakrepo` file shows. It lives where flatpak's own tools keep it, in
 * the `[flatpak]` group of the repository's `config` (`flatpak
 * build-update-repo --title=…` writes the same keys), so the summary, the
 * index and `.flatpakrepo` all read one place, and a repository moved between
 * Cairn and `flatpak build-update-repo` keeps its title. The group's presence
 * is what makes a repository a flatpak one (index.ts isFlatpakRepo).
 */
import { Variant, type VarDict } from '../gvariant';
import { CairnError } from '../errors';
import { keyFileGet, type KeyFile } from '../repo/config';
import type { Repo } from '../repo/repo';
import { isFlatpakRepo } from './index';

/** The remote-configuration keys, by their API name and their config/summary name. */
export const REMOTE_CONFIG_KEYS = {
  title: 'title',
  comment: 'comment',
  description: 'description',
  homepage: 'homepage',
  icon: 'icon',
  defaultBranch: 'default-branch',
  redirectUrl: 'redirect-url',
} as const;

export type RemoteConfigName = keyof typeof REMOTE_CONFIG_KEYS;
export type RemoteConfig = Partial<Record<RemoteConfigName, string>>;
/** A patch: a string sets a key, null removes it. */
export type RemoteConfigPatch = Partial<Record<RemoteConfigName, string | null>>;

const URL_KEYS = new Set<RemoteConfigName>(['homepage', 'icon', 'redirectUrl']);
export const MAX_REMOTE_CONFIG_VALUE = 2048;

/** Checks a patch (INVALID_ARGUMENT naming the key and why). */
export function validateRemoteConfigPatch(patch: RemoteConfigPatch): void {
  for (const [name, value] of Object.entries(patch) as Array<[string, string | null | undefined]>) {
    if (!(name in REMOTE_CONFIG_KEYS)) throw new CairnError('INVALID_ARGUMENT', `flatpak.${name} is not a remote configuration key (${Object.keys(REMOTE_CONFIG_KEYS).join(', ')})`);
    if (value === null || value === undefined) continue;
    if (typeof value !== 'string') throw new CairnError('INVALID_ARGUMENT', `flatpak.${name} must be a string or null`);
    if (value.length === 0 || value.length > MAX_REMOTE_CONFIG_VALUE) throw new CairnError('INVALID_ARGUMENT', `flatpak.${name} must have 1 to ${MAX_REMOTE_CONFIG_VALUE} characters`);
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(value)) throw new CairnError('INVALID_ARGUMENT', `flatpak.${name} must not contain control characters (a new line would end the key file entry)`);
    if (URL_KEYS.has(name as RemoteConfigName)) {
      let u: URL;
      try {
        u = new URL(value);
      } catch {
        throw new CairnError('INVALID_ARGUMENT', `flatpak.${name} must be an absolute http(s) URL`);
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CairnError('INVALID_ARGUMENT', `flatpak.${name} must be an absolute http(s) URL`);
    }
    if (name === 'defaultBranch' && !/^[A-Za-z0-9_.-]{1,255}$/.test(value)) throw new CairnError('INVALID_ARGUMENT', 'flatpak.defaultBranch must be a branch name ([A-Za-z0-9_.-])');
  }
}

/** GKeyFile string escapes: what g_key_file_get_string undoes. */
function escapeValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/^ /, '\\s');
}

function unescapeValue(v: string): string {
  return v.replace(/\\(.)/g, (_m, c: string) => (c === 's' ? ' ' : c === 'n' ? '\n' : c === 't' ? '\t' : c === 'r' ? '\r' : c));
}

/** The remote configuration of a repository's config. */
export function readRemoteConfig(config: KeyFile): RemoteConfig {
  const out: RemoteConfig = {};
  for (const [name, key] of Object.entries(REMOTE_CONFIG_KEYS) as Array<[RemoteConfigName, string]>) {
    const raw = keyFileGet(config, 'flatpak', key);
    if (raw !== undefined) out[name] = unescapeValue(raw);
  }
  return out;
}

/** The summary/index metadata keys for it (`xa.title`, …), in add_summary_metadata's order. */
export function remoteConfigMetadata(config: KeyFile): VarDict {
  const rc = readRemoteConfig(config);
  const md: VarDict = [];
  for (const name of ['title', 'comment', 'description', 'homepage', 'icon', 'redirectUrl', 'defaultBranch'] as RemoteConfigName[]) {
    const v = rc[name];
    if (v !== undefined) md.push([`xa.${REMOTE_CONFIG_KEYS[name]}`, new Variant('s', v)]);
  }
  return md;
}

/**
 * Makes `repo` a flatpak repository (the `[flatpak]` group) and applies a
 * patch of its remote configuration. The caller regenerates the summary.
 */
export async function writeRemoteConfig(repo: Repo, patch: RemoteConfigPatch): Promise<RemoteConfig> {
  validateRemoteConfigPatch(patch);
  const config = await repo.readConfig();
  let group = config.get('flatpak');
  if (!group) config.set('flatpak', (group = new Map()));
  for (const [name, value] of Object.entries(patch) as Array<[RemoteConfigName, string | null | undefined]>) {
    const key = REMOTE_CONFIG_KEYS[name];
    if (value === null) group.delete(key);
    else if (value !== undefined) group.set(key, escapeValue(value));
  }
  await repo.writeConfig(config);
  return readRemoteConfig(config);
}

/** The settings API's view: the repository kind and, for flatpak ones, the remote configuration. */
export async function flatpakSettings(repo: Repo): Promise<{ kind: 'ostree' | 'flatpak'; flatpak?: RemoteConfig }> {
  const config = await repo.readConfig();
  if (!(await isFlatpakRepo(repo, config))) return { kind: 'ostree' };
  return { kind: 'flatpak', flatpak: readRemoteConfig(config) };
}
