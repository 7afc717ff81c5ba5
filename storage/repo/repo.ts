import type { Backend } from '../backends/backend';
import { CairnError } from '../errors';
import { isChecksum, validateChecksum } from '../objects/checksum';
import { keyFileGet, parseKeyFile, serializeKeyFile, type KeyFile } from './config';
import { validateCollectionId, validateRefName } from './names';

export const ARCHIVE_MODES = new Set(['archive-z2', 'archive']);

export interface InitOptions {
  collectionId?: string;
}

/**
 * One OSTree repository in the archive layout, over one backend. This is the
 * only place that knows the layout; the HTTP layer serves the backend's keys.
 */
export class Repo {
  constructor(
    readonly name: string,
    readonly backend: Backend,
  ) {}

  /** Writes `config` (archive-z2, as `ostree init --mode=archive` does) if there is none. */
  static async init(name: string, backend: Backend, opts: InitOptions = {}): Promise<Repo> {
    if (await backend.stat('config')) throw new CairnError('ALREADY_EXISTS', `repository ${name} already exists`);
    let config = '[core]\nrepo_version=1\nmode=archive-z2\n';
    if (opts.collectionId) config += `collection-id=${validateCollectionId(opts.collectionId)}\n`;
    await backend.write('config', Buffer.from(config));
    return new Repo(name, backend);
  }

  async readConfig(): Promise<KeyFile> {
    const got = await this.backend.read('config');
    if (!got) throw new CairnError('NOT_FOUND', `repository ${this.name} has no config`);
    return parseKeyFile(got.data.toString('utf8'));
  }

  async writeConfig(kf: KeyFile): Promise<void> {
    await this.backend.write('config', Buffer.from(serializeKeyFile(kf)));
  }

  /** Checks that this is an archive repository Cairn can serve. */
  async checkMode(): Promise<void> {
    const mode = keyFileGet(await this.readConfig(), 'core', 'mode') ?? 'bare';
    if (!ARCHIVE_MODES.has(mode)) throw new CairnError('UNSUPPORTED', `repository ${this.name} has mode ${mode}; only archive repositories can be served`);
  }

  async readRef(ref: string): Promise<string | null> {
    const got = await this.backend.read(`refs/heads/${validateRefName(ref)}`);
    if (!got) return null;
    const csum = got.data.toString('utf8').trim();
    if (!isChecksum(csum)) throw new CairnError('INVALID_OBJECT', `ref ${ref} does not hold a checksum`);
    return csum;
  }

  /** All refs under refs/heads, sorted by name (strcmp order, as the summary needs). */
  async listRefs(): Promise<Map<string, string>> {
    const names: string[] = [];
    for await (const key of this.backend.list('refs/heads')) names.push(key.slice('refs/heads/'.length));
    names.sort(compareBytes);
    const out = new Map<string, string>();
    for (const n of names) {
      const c = await this.readRef(n).catch(() => null);
      if (c) out.set(n, c);
    }
    return out;
  }

  /** Points `ref` at `checksum` (or deletes it with null). Callers regenerate the summary. */
  async setRef(ref: string, checksum: string | null): Promise<void> {
    const key = `refs/heads/${validateRefName(ref)}`;
    if (checksum === null) await this.backend.remove(key);
    else await this.backend.write(key, Buffer.from(validateChecksum(checksum) + '\n'));
  }
}

/** strcmp order on UTF-8 bytes (what OSTree's binary searches assume). */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
