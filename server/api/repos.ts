import { CairnError } from '../../storage/errors';
import { adoptRepo, requireOwned } from '../context';
import { flatpakSettings, validateRemoteConfigPatch, writeRemoteConfig } from '../../storage/flatpak/config';
import { updateSummary } from '../../storage/repo/summary';
import type { SettingsPatch } from '../../storage/repo/settings';
import { reply, route, type AnyRoute } from './route';
import { ref, repoName, type CreateRepoBody, type SettingsPatchBody } from './schema';

const duration = { type: 'string', minLength: 1, maxLength: 20, pattern: '^[0-9]{1,12}[smhdw]?$' };
/** Scheduled maintenance (README "Maintenance"); each task replaces the stored one, null removes it. storage/repo/settings.ts validates the values. */
const MAINTENANCE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  description: 'scheduled maintenance: prune and gc as jobs every `every`, the background scrub at a rate; null removes a task',
  properties: {
    prune: {
      oneOf: [
        { type: 'null' },
        { type: 'object', additionalProperties: false, required: ['every'], properties: { keep: { type: 'integer', minimum: 1, maximum: 1_000_000 }, keepYoungerThan: duration, every: duration } },
      ],
    },
    gc: { oneOf: [{ type: 'null' }, { type: 'object', additionalProperties: false, required: ['every'], properties: { grace: duration, every: duration } }] },
    scrub: {
      oneOf: [
        { type: 'null' },
        { type: 'object', additionalProperties: false, required: ['objectsPerSecond'], properties: { objectsPerSecond: { type: 'number', exclusiveMinimum: 0, maximum: 100_000 }, bytesPerSecond: { type: 'integer', minimum: 1024, maximum: 1e12 } } },
      ],
    },
  },
};

/**
 * Repositories: list, create (admin; owned by Cairn from birth), settings
 * (admin). `owned` can be set to true through PATCH settings (adoption: Cairn
 * publishes into the repository from then on, and regenerates and signs its
 * summary once), never back to false: giving a repository back is an
 * operator's edit of DATA/settings/NAME.json, with the server's summary,
 * signatures and deltas to deal with by hand.
 */
export const repoRoutes: AnyRoute[] = [
  route({
    method: 'get',
    path: '/api/repos',
    label: 'api_repos',
    summary: 'List repositories (private ones only with a read token for them)',
    access: { public: true },
    responses: {
      200: {
        description: 'repositories',
        schema: {
          type: 'object',
          properties: {
            repos: { type: 'array', items: { type: 'object', properties: { name: repoName, private: { type: 'boolean' }, owned: { type: 'boolean' }, url: { type: 'string' } } } },
          },
        },
      },
    },
    async handler({ ctx, claims, may }) {
      await claims(); // bad credentials are a 401 even when nothing is private
      const out = [];
      for (const name of await ctx.registry.list()) {
        const settings = await ctx.settings.get(name);
        // Private repositories are listed only to those who may read them.
        if (settings.private && !(await may({ scope: 'read', repo: name }))) continue;
        out.push({ name, private: settings.private, owned: settings.owned, url: `/repo/${name}/` });
      }
      return { repos: out };
    },
  }),
  route<Record<string, never>, Record<string, never>, CreateRepoBody>({
    method: 'post',
    path: '/api/repos',
    label: 'api_repos_create',
    summary: 'Create a repository (admin); Cairn owns it from birth',
    access: { scope: 'admin' },
    body: {
      limit: '64kb',
      json: {
        type: 'object',
        required: ['name'],
        additionalProperties: false,
        properties: { name: { type: 'string', maxLength: 200 }, collectionId: { type: 'string', maxLength: 255 }, private: { type: 'boolean' } },
      },
    },
    responses: { 201: { description: 'created', schema: { type: 'object', properties: { name: repoName, url: { type: 'string' } } } } },
    errors: [409],
    async handler({ ctx, body }) {
      const repo = await ctx.registry.create(body.name, { collectionId: body.collectionId });
      if (body.private === true) await ctx.settings.update(repo.name, { private: true });
      await ctx.signerFor(repo); // generate the keys now, so they can be fetched before the first publish
      return reply(201, { name: repo.name, url: `/repo/${repo.name}/` });
    },
  }),
  route({
    method: 'get',
    path: '/api/repos/:repo/settings',
    label: 'api_repo_settings',
    summary: 'Repository settings',
    access: { repo: 'read' },
    responses: { 200: { description: 'settings', schema: ref('Settings') } },
    async handler({ ctx, repo }) {
      return { ...(await ctx.settings.get(repo.name)), ...(await flatpakSettings(repo)) };
    },
  }),
  route<Record<string, never>, Record<string, never>, SettingsPatchBody & Pick<SettingsPatch, 'maintenance'>>({
    method: 'patch',
    path: '/api/repos/:repo/settings',
    label: 'api_repo_settings',
    summary: 'Change settings (admin): private, deltas.scratch, deltas.previousCommits, maintenance, owned',
    description:
      '`owned: true` adopts a repository Cairn did not create (its summary is regenerated and signed once); it cannot be set back to false. Writes into a repository that is not owned (uploads, ref updates, deltas) answer 403 NOT_OWNED.',
    access: { repo: 'admin' },
    body: {
      limit: '64kb',
      json: {
        type: 'object',
        additionalProperties: false,
        properties: {
          owned: { type: 'boolean', description: 'true adopts the repository; false is refused once it is owned' },
          private: { type: 'boolean' },
          deltas: { type: 'object', additionalProperties: false, properties: { scratch: { type: 'boolean' }, previousCommits: { type: 'integer', minimum: 0, maximum: 50 } } },
          maintenance: MAINTENANCE_SCHEMA,
          kind: { type: 'string', enum: ['flatpak'], description: 'make the repository a flatpak repository (README "Flatpak"); there is no way back through the API' },
          flatpak: {
            type: 'object',
            additionalProperties: false,
            description: 'remote configuration (xa.title, …; null removes a key); makes the repository a flatpak repository',
            properties: Object.fromEntries(['title', 'comment', 'description', 'homepage', 'icon', 'defaultBranch', 'redirectUrl'].map((k) => [k, { type: ['string', 'null'], maxLength: 2048 }])),
          },
        },
      },
    },
    responses: { 200: { description: 'the new settings', schema: ref('Settings') } },
    async handler({ ctx, repo, body }) {
      const { owned, kind, flatpak, ...patch } = body;
      const wasOwned = ctx.settings.owned(repo.name);
      if (wasOwned && owned === false) {
        throw new CairnError('INVALID_ARGUMENT', `owned cannot be set back to false through the API; edit DATA/settings/${repo.name}.json on the server to give ${repo.name} back`);
      }
      if (kind !== undefined || flatpak !== undefined) {
        // Written into the repository's config ([flatpak]), so Cairn must own it (or be adopting it now).
        if (!wasOwned && owned !== true) requireOwned(ctx, repo);
        validateRemoteConfigPatch(flatpak ?? {});
      }
      // Maintenance writes into the repository (prune, gc, the scrub's quarantine).
      if (patch.maintenance !== undefined && !wasOwned && owned !== true) requireOwned(ctx, repo);
      // Adoption comes after the other settings are valid and stored.
      let next = await ctx.settings.update(repo.name, patch);
      if (kind !== undefined || flatpak !== undefined) await writeRemoteConfig(repo, flatpak ?? {});
      if (owned === true && !wasOwned) {
        await adoptRepo(ctx, repo);
        next = await ctx.settings.get(repo.name);
      } else if (kind !== undefined || flatpak !== undefined) {
        // The summary and index carry the remote configuration: publish it now.
        await updateSummary(repo, (await ctx.signerFor(repo))?.signSummary);
      }
      return { ...next, ...(await flatpakSettings(repo)) };
    },
  }),
];
