import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CairnError, isNotFoundErrno } from '../../storage/errors';

/**
 * Revoked token IDs, one file per jti under DATA/state/revoked-tokens/: a
 * revocation is one atomic create, and checking is one stat, so it takes effect
 * on the next request in every process sharing the data folder.
 */
export class RevocationList {
  private readonly dir: string;

  constructor(dataDir: string) {
    this.dir = path.join(dataDir, 'state', 'revoked-tokens');
  }

  private file(jti: string): string {
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(jti)) throw new CairnError('INVALID_ARGUMENT', 'invalid token id');
    return path.join(this.dir, jti);
  }

  async revoke(jti: string, info: { by: string; reason?: string }): Promise<void> {
    const file = this.file(jti); // refused before anything is created
    await fsp.mkdir(this.dir, { recursive: true });
    const body = JSON.stringify({ jti, time: new Date().toISOString(), ...info }) + '\n';
    await fsp.writeFile(file, body, { flag: 'w', mode: 0o644 });
  }

  async isRevoked(jti: string): Promise<boolean> {
    try {
      await fsp.stat(this.file(jti));
      return true;
    } catch (e) {
      if (isNotFoundErrno(e) || isCairnInvalid(e)) return false;
      throw e;
    }
  }

  async list(): Promise<Array<{ jti: string; time: string; by: string; reason?: string }>> {
    let names: string[] = [];
    try {
      names = await fsp.readdir(this.dir);
    } catch (e) {
      if (!isNotFoundErrno(e)) throw e;
    }
    const out = [];
    for (const n of names.sort()) {
      try {
        out.push(JSON.parse(await fsp.readFile(path.join(this.dir, n), 'utf8')));
      } catch {
        /* a half-written entry from a crash: the file name alone still revokes */
      }
    }
    return out;
  }
}

function isCairnInvalid(e: unknown): boolean {
  return e instanceof CairnError && e.code === 'INVALID_ARGUMENT';
}
