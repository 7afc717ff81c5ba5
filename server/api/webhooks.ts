import { CairnError, type ErrorCode } from '../../storage/errors';
import { MAX_WEBHOOKS, WEBHOOK_EVENTS, type WebhookConfig } from '../../storage/webhooks/config';
import type { Delivery, WebhookDispatcher, WebhookEvent } from '../../storage/webhooks/dispatcher';
import type { ServiceCall } from '../jobs/service';
import { route, type AnyRoute } from './route';

/**
 * Webhooks of a repository (admin of it): GET and PUT the list (secrets are
 * written, never answered), and the delivery log. Events come from ref
 * updates (ServerContext.onPublished), finished delta jobs, the background
 * scrub and fsck (server/bootstrap.ts, server/jobs/maintenance-job.ts); the
 * one dispatcher (storage/webhooks/dispatcher.ts) runs where the job queue
 * runs: a cluster worker sends its events to the primary and asks it for
 * the log (WebhookService, the same calls in both modes).
 */
export interface WebhookService {
  /** Fire and forget: never throws, never waits for a delivery. */
  emit(e: WebhookEvent): void;
  deliveries(repo: string, limit: number): Promise<Delivery[]>;
}

export function localWebhooks(d: WebhookDispatcher): WebhookService {
  return {
    emit: (e) => void d.emit(e),
    deliveries: async (repo, limit) => d.deliveries(repo, limit),
  };
}

/** A worker's service: the primary's dispatcher, through the cluster channel. */
export function remoteWebhooks(call: ServiceCall): WebhookService {
  return {
    emit: (e) => void call('webhooks.emit', [e]).catch(() => undefined),
    deliveries: (repo, limit) =>
      (call('webhooks.deliveries', [repo, limit]) as Promise<Delivery[]>).catch((e: unknown) => {
        const code = (e as { code?: unknown })?.code;
        throw typeof code === 'string' ? new CairnError(code as ErrorCode, e instanceof Error ? e.message : String(e)) : e;
      }),
  };
}

/** The primary's side of remoteWebhooks; other methods go to `next`. */
export function serveWebhookCalls(service: WebhookService, next: ServiceCall): ServiceCall {
  return async (method, args) => {
    if (method === 'webhooks.emit') {
      const e = args[0] as Partial<WebhookEvent> | undefined;
      if (e && typeof e.repo === 'string' && (WEBHOOK_EVENTS as readonly string[]).includes(String(e.event)) && typeof e.data === 'object' && e.data !== null) {
        service.emit({ event: e.event!, repo: e.repo, data: e.data });
      }
      return null;
    }
    if (method === 'webhooks.deliveries') return service.deliveries(String(args[0]), Math.min(MAX_LOG, Math.max(1, Number(args[1]) || 1)));
    return next(method, args);
  };
}

const MAX_LOG = 100;

const hookSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'url', 'secret'],
  properties: {
    id: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
    url: { type: 'string', minLength: 8, maxLength: 2048, pattern: '^https?://' },
    secret: { type: 'string', minLength: 16, maxLength: 256, description: 'key of the HMAC-SHA256 in X-Cairn-Signature; never answered' },
    events: { type: 'array', minItems: 1, maxItems: WEBHOOK_EVENTS.length, items: { enum: [...WEBHOOK_EVENTS] } },
  },
};
const publicHook = {
  type: 'object',
  properties: { id: { type: 'string' }, url: { type: 'string' }, events: { type: 'array', items: { type: 'string' } } },
};

const shown = (h: WebhookConfig) => ({ id: h.id, url: h.url, events: h.events ?? [...WEBHOOK_EVENTS] });

export const webhookRoutes: AnyRoute[] = [
  route({
    method: 'get',
    path: '/api/repos/:repo/webhooks',
    label: 'api_webhooks',
    summary: 'The webhooks of a repository, without their secrets (admin)',
    access: { repo: 'admin' },
    responses: { 200: { description: 'webhooks', schema: { type: 'object', properties: { hooks: { type: 'array', items: publicHook } } } } },
    async handler({ ctx, repo }) {
      return { hooks: (await ctx.webhookStore.get(repo.name)).map(shown) };
    },
  }),
  route<Record<string, never>, Record<string, never>, { hooks: WebhookConfig[] }>({
    method: 'put',
    path: '/api/repos/:repo/webhooks',
    label: 'api_webhooks',
    summary: 'Replace the webhooks of a repository (admin)',
    description: `Each webhook gets a JSON POST per event it wants (${WEBHOOK_EVENTS.join(', ')}; all when \`events\` is absent), signed with X-Cairn-Signature: sha256=HMAC-SHA256(secret, body); retried with exponential backoff on anything but a 2xx. At most ${MAX_WEBHOOKS}.`,
    access: { repo: 'admin' },
    body: { limit: '64kb', json: { type: 'object', additionalProperties: false, required: ['hooks'], properties: { hooks: { type: 'array', maxItems: MAX_WEBHOOKS, items: hookSchema } } } },
    responses: { 200: { description: 'the webhooks now', schema: { type: 'object', properties: { hooks: { type: 'array', items: publicHook } } } } },
    async handler({ ctx, repo, body }) {
      return { hooks: (await ctx.webhookStore.set(repo.name, body.hooks)).map(shown) };
    },
  }),
  route<Record<string, never>, { limit: number }>({
    method: 'get',
    path: '/api/repos/:repo/webhooks/deliveries',
    label: 'api_webhook_deliveries',
    summary: 'The last deliveries of the repository’s webhooks, newest first: state (pending, delivered, failed, dropped), attempts, response code, error (admin)',
    description: 'Kept in memory by the server (the last 100 per repository); a restart forgets them.',
    access: { repo: 'admin' },
    query: { type: 'object', properties: { limit: { type: 'integer', minimum: 1, maximum: MAX_LOG, default: 50 } } },
    responses: { 200: { description: 'deliveries', schema: { type: 'object', properties: { deliveries: { type: 'array', items: { type: 'object' } } } } } },
    errors: [501],
    async handler({ ctx, repo, query }) {
      if (!ctx.webhooks) throw new CairnError('UNSUPPORTED', 'webhooks are not delivered by this server');
      return { deliveries: await ctx.webhooks.deliveries(repo.name, query.limit) };
    },
  }),
];
