import { CairnError } from '../errors';
import type { Backend } from '../backends/backend';
import { stateStore } from '../backends/factory';
import { validateRepoName } from '../repo/names';

/**
 * The webhooks of a repository: server state (like its settings), the key
 * `webhooks/NAME.json` of the data location's state store
 * (DATA/webhooks/NAME.json, mode 0600 since it holds the secrets). Set as a
 * whole (PUT /api/repos/NAME/webhooks, admin); the API never answers a secret.
 */

/** What a webhook is told about (storage/webhooks/dispatcher.ts makes the bodies). */
export const WEBHOOK_EVENTS = ['ref.updated', 'delta.finished', 'scrub.corrupt', 'fsck.damage'] as const;
export type WebhookEventName = (typeof WEBHOOK_EVENTS)[number];

export interface WebhookConfig {
  /** Stable within the repository: the delivery log names it. */
  id: string;
  url: string;
  /** Key of the HMAC-SHA256 in X-Cairn-Signature. */
  secret: string;
  /** The events sent; absent: all. */
  events?: WebhookEventName[];
}

export const MAX_WEBHOOKS = 10;

export class WebhookStore {
  private readonly store: Backend;

  constructor(readonly dataDir: string) {
    this.store = stateStore(dataDir);
  }

  private key(repo: string): string {
    return `webhooks/${validateRepoName(repo)}.json`;
  }

  async get(repo: string): Promise<WebhookConfig[]> {
    const key = this.key(repo);
    let raw: string;
    try {
      const got = await this.store.read(key);
      if (!got) return [];
      raw = got.data.toString('utf8');
    } catch (e) {
      throw new CairnError('IO', `webhooks of ${repo} cannot be read: ${(e as Error).message}`);
    }
    try {
      const hooks = (JSON.parse(raw) as { hooks?: unknown }).hooks;
      return validateWebhooks(Array.isArray(hooks) ? hooks : []);
    } catch (e) {
      throw new CairnError('IO', `webhooks of ${repo} are not valid: ${(e as Error).message}`);
    }
  }

  /** Replaces the repository's webhooks (Backend.write: crash-safe, atomic). */
  async set(repo: string, hooks: WebhookConfig[]): Promise<WebhookConfig[]> {
    const valid = validateWebhooks(hooks);
    await this.store.write(this.key(repo), Buffer.from(JSON.stringify({ hooks: valid }, null, 2) + '\n'));
    return valid;
  }
}

/** Checks a list of webhooks (the API's schema says the same; files edited by hand go through here too). */
export function validateWebhooks(list: unknown[]): WebhookConfig[] {
  const bad = (msg: string): never => {
    throw new CairnError('INVALID_ARGUMENT', msg);
  };
  if (list.length > MAX_WEBHOOKS) bad(`at most ${MAX_WEBHOOKS} webhooks per repository`);
  const ids = new Set<string>();
  return list.map((h, i) => {
    const o = h as Partial<WebhookConfig>;
    if (typeof o !== 'object' || o === null) bad(`webhook ${i} is not an object`);
    if (typeof o.id !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(o.id)) bad(`webhook ${i}: id must be 1-64 of A-Z a-z 0-9 . _ -`);
    if (ids.has(o.id!)) bad(`webhook ${i}: id ${o.id} is used twice`);
    ids.add(o.id!);
    let url: URL | undefined;
    try {
      url = typeof o.url === 'string' && o.url.length <= 2048 ? new URL(o.url) : undefined;
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password) bad(`webhook ${o.id}: url must be an http or https URL without credentials`);
    if (typeof o.secret !== 'string' || o.secret.length < 16 || o.secret.length > 256) bad(`webhook ${o.id}: secret must be 16 to 256 characters`);
    if (o.events !== undefined && (!Array.isArray(o.events) || o.events.length === 0 || o.events.some((e) => !(WEBHOOK_EVENTS as readonly string[]).includes(e)))) {
      bad(`webhook ${o.id}: events must be a non-empty list of ${WEBHOOK_EVENTS.join(', ')}`);
    }
    return { id: o.id!, url: url!.toString(), secret: o.secret!, ...(o.events ? { events: [...new Set(o.events)] } : {}) };
  });
}
