import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../backends/fs';
import { CairnError, isNotFoundErrno } from '../errors';
import { validateRepoName } from './names';
import { Repo, type InitOptions } from './repo';

/**
 * The repositories of a data folder: every archive repo at DATA/repos/NAME
 * (a real folder or a symlink), including ones that appear while we run.
 * Nothing is cached that could go stale: each lookup checks the disk.
 */
export class RepoRegistry {
  readonly reposDir: string;

  constructor(readonly dataDir: string) {
    this.reposDir = path.join(dataDir, 'repos');
  }

  /** The repository called `name`, or null when there is none (or the name is illegal). */
  async open(name: string): Promise<Repo | null> {
    try {
      validateRepoName(name);
    } catch {
      return null;
    }
    const dir = path.join(this.reposDir, name);
    try {
      const st = await fsp.stat(path.join(dir, 'config'));
      if (!st.isFile()) return null;
    } catch (e) {
      if (isNotFoundErrno(e)) return null;
      throw e;
    }
    return new Repo(name, new FsBackend(dir));
  }

  async list(): Promise<string[]> {
    let entries: string[];
    try {
      entries = await fsp.readdir(this.reposDir);
    } catch (e) {
      if (isNotFoundErrno(e)) return [];
      throw e;
    }
    const names: string[] = [];
    for (const n of entries.sort()) if (await this.open(n)) names.push(n);
    return names;
  }

  async create(name: string, opts: InitOptions = {}): Promise<Repo> {
    validateRepoName(name);
    const dir = path.join(this.reposDir, name);
    if (await this.open(name)) throw new CairnError('ALREADY_EXISTS', `repository ${name} already exists`);
    await fsp.mkdir(dir, { recursive: true });
    return Repo.init(name, new FsBackend(dir), opts);
  }

  /** On first start with no repository at all, Cairn creates `main`. */
  async ensureDefault(): Promise<void> {
    await fsp.mkdir(this.reposDir, { recursive: true });
    if ((await this.list()).length === 0) await this.create('main');
  }
}
