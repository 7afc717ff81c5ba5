import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CairnError, isNotFoundErrno } from '../errors';
import { fsyncDir } from '../backends/fs';
import { validateRepoName } from './names';

/**
 * Cairn's own per-repository settings: server state, not OSTree data, so it
 * lives beside the repositories in DATA/settings/NAME.json, never in a served folder.
 */
export interface RepoSettings {
  /** Reads need a token with `read` scope. */
  private: boolean;
  /** Static deltas generated when a ref moves. */
  deltas: {
    /** Also build a from-scratch delta to each new head. */
    scratch: boolean;
    /** Deltas from this many previous commits of the ref. */
    previousCommits: number;
  };
}

export const DEFAULT_SETTINGS: RepoSettings = { private: false, deltas: { scratch: true, previousCommits: 3 } };

export class SettingsStore {
  constructor(readonly dataDir: string) {}

  private file(name: string): string {
    return path.join(this.dataDir, 'settings', `${validateRepoName(name)}.json`);
  }

  async get(name: string): Promise<RepoSettings> {
    try {
      const raw = JSON.parse(await fsp.readFile(this.file(name), 'utf8')) as Partial<RepoSettings>;
      return merge(DEFAULT_SETTINGS, raw);
    } catch (e) {
      if (isNotFoundErrno(e)) return structuredClone(DEFAULT_SETTINGS);
      if (e instanceof SyntaxError) throw new CairnError('INVALID_ARGUMENT', `settings of ${name} are not valid JSON`);
      throw e;
    }
  }

  async update(name: string, patch: Partial<{ private: boolean; deltas: Partial<RepoSettings['deltas']> }>): Promise<RepoSettings> {
    const next = merge(await this.get(name), patch);
    validate(next);
    const file = this.file(name);
    await fsp.mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    const fh = await fsp.open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(JSON.stringify(next, null, 2) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
    await fsyncDir(path.dirname(file));
    return next;
  }
}

function merge(base: RepoSettings, patch: Partial<{ private: boolean; deltas: Partial<RepoSettings['deltas']> }>): RepoSettings {
  return {
    private: patch.private ?? base.private,
    deltas: { ...base.deltas, ...(patch.deltas ?? {}) },
  };
}

function validate(s: RepoSettings): void {
  if (typeof s.private !== 'boolean') throw new CairnError('INVALID_ARGUMENT', 'private must be true or false');
  if (typeof s.deltas.scratch !== 'boolean') throw new CairnError('INVALID_ARGUMENT', 'deltas.scratch must be true or false');
  const n = s.deltas.previousCommits;
  if (!Number.isInteger(n) || n < 0 || n > 50) throw new CairnError('INVALID_ARGUMENT', 'deltas.previousCommits must be an integer from 0 to 50');
}
