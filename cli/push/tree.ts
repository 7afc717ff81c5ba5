import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { Variant, type VarDict } from '../../storage/gvariant';
import { commitFolder } from '../../storage/import/folder';
import { Repo } from '../../storage/repo/repo';

export interface TreeCommitOptions {
  subject?: string;
  body?: string;
  version?: string;
  /** The server's current commit of the ref: the new commit's parent, so history reads on. */
  parent: string | null;
}

/** A temporary archive repository holding a folder committed as `branch`; `dispose()` removes it. */
export interface TreeRepo {
  dir: string;
  commit: string;
  dispose(): Promise<void>;
}

/**
 * `cairn push --tree DIR`: publishing a plain folder. We commit it into a
 * scratch archive repository with Cairn's own writer (same objects as
 * `ostree commit`) and push that like any other local repository. The
 * scratch repo lives in the system temp folder and is removed afterwards.
 */
export async function commitTreeToTempRepo(dir: string, branch: string, opts: TreeCommitOptions): Promise<TreeRepo> {
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cairn-push-'));
  const dispose = () => fsp.rm(tmp, { recursive: true, force: true });
  try {
    const repo = await Repo.init('push-tree', new FsBackend(tmp));
    const metadata: VarDict = opts.version ? [['version', new Variant('s', opts.version)]] : [];
    const result = await commitFolder(repo, dir, branch, {
      subject: opts.subject,
      body: opts.body,
      metadata,
      parent: opts.parent,
      bindRef: true,
    });
    await repo.setRef(branch, result.commit);
    return { dir: tmp, commit: result.commit, dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}
