import { CairnError } from '../../storage/errors';
import type { Backend } from '../../storage/backends/backend';
import { stateStore } from '../../storage/backends/factory';

/**
 * Revoked token IDs, one key per jti under `state/revoked-tokens/` of the
 * data location's state store (DATA/state/revoked-tokens/JTI on a folder): a
 * revocation is one atomic write, and checking is one stat, so it takes
 * effect on the next request in every process sharing the store.
 */
export class RevocationList {
  private readonly store: Backend;

  constructor(dataDir: string) {
    this.store = stateStore(dataDir);
  }

  private key(jti: string): string {
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(jti)) throw new CairnError('INVALID_ARGUMENT', 'invalid token id');
    return `${PREFIX}/${jti}`;
  }

  async revoke(jti: string, info: { by: string; reason?: string }): Promise<void> {
    const key = this.key(jti); // refused before anything is created
    const body = JSON.stringify({ jti, time: new Date().toISOString(), ...info }) + '\n';
    await this.store.write(key, Buffer.from(body));
  }

  async isRevoked(jti: string): Promise<boolean> {
    let key: string;
    try {
      key = this.key(jti);
    } catch (e) {
      if (isCairnInvalid(e)) return false;
      throw e;
    }
    return (await this.store.statFast(key)) !== null;
  }

  async list(): Promise<Array<{ jti: string; time: string; by: string; reason?: string }>> {
    const keys: string[] = [];
    for await (const k of this.store.list(PREFIX)) keys.push(k);
    const out = [];
    for (const k of keys.sort()) {
      try {
        const got = await this.store.read(k);
        if (got) out.push(JSON.parse(got.data.toString('utf8')));
      } catch {
        /* a half-written entry from a crash: the key alone still revokes */
      }
    }
    return out;
  }
}

const PREFIX = 'state/revoked-tokens';

function isCairnInvalid(e: unknown): boolean {
  return e instanceof CairnError && e.code === 'INVALID_ARGUMENT';
}
