import { CairnError } from '../../storage/errors';
import { route, type AnyRoute, type Call } from './route';

/**
 * Public keys of a repository, for `ostree remote add --gpg-import=gpg.asc`
 * and `verification-ed25519-key=`. Served beside the repository files (so
 * their errors, like the files', have an empty body and the reason in
 * X-Cairn-Error); a private repository's keys need a read token, and are
 * never put in a shared cache.
 */
export const keyRoutes: AnyRoute[] = [
  route({
    method: 'get',
    path: '/repo/:repo/keys/gpg.asc',
    label: 'repo_keys',
    summary: 'Armored OpenPGP public key, for `ostree remote add --gpg-import`',
    access: { repo: 'read' },
    responses: { 200: { description: 'key', contentType: 'application/pgp-keys', schema: { type: 'string' } } },
    handler: (c) => sendKey(c, 'gpg.asc'),
  }),
  route({
    method: 'get',
    path: '/repo/:repo/keys/ed25519.pub',
    label: 'repo_keys',
    summary: 'Base64 ed25519 public key, for `verification-ed25519-key`',
    access: { repo: 'read' },
    responses: { 200: { description: 'key', contentType: 'text/plain', schema: { type: 'string' } } },
    handler: (c) => sendKey(c, 'ed25519.pub'),
  }),
];

async function sendKey({ ctx, res, repo }: Call<unknown, unknown, unknown>, file: 'gpg.asc' | 'ed25519.pub'): Promise<undefined> {
  const keys = (await ctx.publicKeysFor?.(repo)) ?? {};
  const body = file === 'gpg.asc' ? keys.gpgArmored : keys.ed25519Base64 ? keys.ed25519Base64 + '\n' : undefined;
  if (body === undefined) throw new CairnError('NOT_FOUND', `no key ${file} for ${repo.name}`);
  res.setHeader('Content-Type', file === 'gpg.asc' ? 'application/pgp-keys' : 'text/plain; charset=utf-8');
  res.setHeader('Cache-Control', res.locals.privateRepo === true ? 'private, max-age=300' : 'public, max-age=300');
  res.send(body);
  return undefined;
}
