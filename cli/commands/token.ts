import { issueToken, loadTokenSecret, parseTtl, SCOPES, type Scope } from '../../server/auth/tokens';
import { type Command, parseCommandLine, UsageError, dataDirOption } from '../command';

const usage = `Usage: cairn token --scope SCOPE --repo NAME [options]

Prints a bearer token (JWT, HS256) signed with the server's secret; no running
server is needed. The secret is CAIRN_TOKEN_SECRET, else DATA/secrets/token-secret
(generated on first use).

Options:
  --scope SCOPE    read, push or admin (repeatable; admin includes push, push includes read)
  --repo NAME      repository the token is for, or '*' (repeatable)
  --prefix P       ref prefix a push token may move, e.g. os/ (repeatable; default any)
  --ttl T          lifetime: seconds, or 90m, 24h, 30d (default 24h)
  --sub NAME       subject recorded in the ref log (default: $USER or 'cli')
  --data DIR       data folder (env CAIRN_DATA, default ./data)
  --json           print the claims too, as JSON`;

export const token: Command = {
  name: 'token',
  summary: 'issue an access token for publishing or reading',
  usage,
  async run(args) {
    const { values } = parseCommandLine('token', args, {
      scope: { type: 'string', multiple: true },
      repo: { type: 'string', multiple: true },
      prefix: { type: 'string', multiple: true },
      ttl: { type: 'string' },
      sub: { type: 'string' },
      data: { type: 'string' },
      json: { type: 'boolean' },
    }, false);
    const scope = (values.scope ?? []).flatMap((s) => s.split(','));
    if (scope.length === 0) throw new UsageError('missing --scope', 'token');
    const bad = scope.find((s) => !SCOPES.includes(s as Scope));
    if (bad) throw new UsageError(`unknown scope "${bad}"; use ${SCOPES.join(', ')}`, 'token');
    if (!values.repo?.length) throw new UsageError("missing --repo (a name or '*')", 'token');
    const dataDir = process.env.CAIRN_TOKEN_SECRET && !values.data ? undefined : dataDirOption(values.data);
    const secret = await loadTokenSecret(dataDir);
    const { token: jwt, claims } = await issueToken(secret, {
      sub: values.sub ?? process.env.USER ?? 'cli',
      scope: scope as Scope[],
      repos: values.repo,
      prefixes: values.prefix,
      ttlSeconds: parseTtl(values.ttl ?? '24h'),
    });
    process.stdout.write(values.json ? JSON.stringify({ token: jwt, claims }, null, 2) + '\n' : jwt + '\n');
    return 0;
  },
};
