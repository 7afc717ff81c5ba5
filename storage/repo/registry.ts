import { promises as fsp, statSync } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../backends/fs';
import { CairnError, isNotFoundErrno } from '../errors';
import { validateRepoName } from './names';
import { Repo, type InitOptions } from './repo';

/**
 * The repositories of a data folder: every archive repo at DATA/repos/NAME
 * (a real folder or a symlink), including ones that appear while we run.
 * Nothing is cached that could go stale: each lookup checks the disk.
 *
 * That check runs on every request to a repository's files, so it is one
 * synchronous stat of NAME/config (a dentry-cache lookup of a microsecond or
 * two, cheaper than a thread-pool round trip; an absent repository costs no
 * exception), and the Repo of a name is reused while its config is a file.
 */
export class RepoRegistry {
  readonly reposDir: string;
  private readonly opened = new Map<string, Repo>();

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
      const st = statSync(path.join(dir, 'config'), { throwIfNoEntry: false });
      if (!st?.isFile()) {
        this.opened.delete(name);
        return null;
      }
    } catch (e) {
      this.opened.delete(name);
      if (isNotFoundErrno(e)) return null;
      throw e;
    }
    // A Repo holds no state of its own (name + backend), so sharing one is safe.
    let repo = this.opened.get(name);
    if (!repo) {
      repo = new Repo(name, new FsBackend(dir));
      if (this.opened.size >= 1024) this.opened.clear();
      this.opened.set(name, repo);
    }
    return repo;
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
