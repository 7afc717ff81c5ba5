// A private repository is, to anyone who may not read it, a repository that does not exist
// (GitHub's rule: private names cannot be probed). For a private repository and an absent one
// (names of one length, so that the answers may differ only where they echo the name asked
// for), every route that names a repository answers byte for byte alike — status, headers in
// order (but Date and X-Request-Id), body — with no credentials, garbage ones (Bearer and HTTP
// Basic), an unsupported scheme, an expired token, a revoked one, and a push token for another
// repository: GET and HEAD of config, summary, an object, a delta superblock, the GPG key and
// the .flatpakrepo; GET /api/repos/N (no route), /api/repos/N/settings and /api/repos/N/refs; POST /api/repos/N/refs. Through the
// HTTP/1.1 front and through node's server alone (in process), and through `cairn serve` (with
// --workers 1 and 2, see e2eWorkers). Each path is one a reader of the repository gets (200),
// and a public repository's write route still says 401/403; the stock ostree client pulls the
// private repository with the token in its URL (libcurl sends it as Basic without being asked,
// so no WWW-Authenticate is needed) and fails without it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, cpSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { SignJWT } from 'jose';
import { createApp } from '../../server/app';
import { issueToken, loadTokenSecret } from '../../server/auth/tokens';
import { RevocationList } from '../../server/auth/revocations';
import { createServerContext } from '../../server/bootstrap';
import type { ServerContext } from '../../server/context';
import type { Answerer } from '../../server/http1/front';
import { listen, type ListeningServer } from '../../server/listen';
import { createLogger } from '../../server/logging';
import { RepoRegistry } from '../../storage/repo/registry';
import { SettingsStore } from '../../storage/repo/settings';
import { startCairn } from '../helpers/cairn-process';
import { FIXTURE_REPO } from '../helpers/fixtures';
import { addRemote, initRepo, makeTempDir, ostree, ostreeResult, removeTempDirs } from '../helpers/ostree';
import { exchange, requestText, type ParsedResponse } from '../helpers/raw-http';

const PRIV = 'secret';
const ABSENT = 'absent';
const COMMIT = 'objects/3f/d0406929e83910fc100bb8ea1da75799549be4e5d2cf3ffbd292054da936a3.commit';
const SUPERBLOCK = 'deltas/LW/823s3wgjLN27gsBJOtHPmeXIyPPOh9KIZFcBJ0EZ8/superblock';
const REF = 'sample/main';
const REF_BODY = JSON.stringify({ updates: [{ ref: REF, commit: null }] });

interface Ask {
  method: 'GET' | 'HEAD' | 'POST';
  target(name: string): string;
  body?: string;
  /** What a reader of the private repository gets. */
  reader: number;
  /** A file answered by the front when it runs (the others are the app's). */
  file?: boolean;
}

const FILES: Array<[(n: string) => string, boolean]> = [
  [(n) => `/repo/${n}/config`, true],
  [(n) => `/repo/${n}/summary`, true],
  [(n) => `/repo/${n}/${COMMIT}`, true],
  [(n) => `/repo/${n}/${SUPERBLOCK}`, true],
  [(n) => `/repo/${n}/keys/gpg.asc`, false],
  [(n) => `/repo/${n}.flatpakrepo`, false],
];
const ASKS: Ask[] = [
  ...FILES.flatMap(([target, file]) => (['GET', 'HEAD'] as const).map((method) => ({ method, target, reader: 200, file }))),
  // (No route: the 404 of the API's catch-all, for readers too.)
  { method: 'GET', target: (n) => `/api/repos/${n}`, reader: 404 },
  { method: 'GET', target: (n) => `/api/repos/${n}/settings`, reader: 200 },
  { method: 'GET', target: (n) => `/api/repos/${n}/refs`, reader: 200 },
  // A reader may not push: it learns that, as one who knows the repository.
  { method: 'POST', target: (n) => `/api/repos/${n}/refs`, body: REF_BODY, reader: 403 },
];

let work: string;
let dataDir: string;
const tokens: Record<'reader' | 'revoked' | 'expired' | 'other', string> = { reader: '', revoked: '', expired: '', other: '' };

const basic = (t: string) => `Authorization: Basic ${Buffer.from(`x:${t}`).toString('base64')}`;
const bearer = (t: string) => `Authorization: Bearer ${t}`;

/** Every way of asking without the right to read the private repository. */
function strangers(): Array<[string, string[]]> {
  return [
    ['no credentials', []],
    ['a garbage Bearer token', [bearer('not.a.token')]],
    ['a garbage token as HTTP Basic', [basic('garbage')]],
    ['an unsupported scheme', ['Authorization: Digest username="x"']],
    ['an expired token', [bearer(tokens.expired)]],
    ['a revoked token', [bearer(tokens.revoked)]],
    ['a revoked token as HTTP Basic', [basic(tokens.revoked)]],
    ['a push token for another repository', [bearer(tokens.other)]],
    ['a push token for another repository as HTTP Basic', [basic(tokens.other)]],
  ];
}

before(async () => {
  work = await makeTempDir('cairn-private-hidden-');
  dataDir = path.join(work, 'data');
  // `secret`: the reference repository, a flatpak one (so that its .flatpakrepo exists), owned
  // (so that its keys exist) and private; `sample`: the same, public.
  for (const name of [PRIV, 'sample']) {
    cpSync(FIXTURE_REPO, path.join(dataDir, 'repos', name), { recursive: true, preserveTimestamps: true });
    appendFileSync(path.join(dataDir, 'repos', name, 'config'), '\n[flatpak]\ntitle=Hidden apps\n');
  }
  const settings = new SettingsStore(dataDir);
  await settings.update(PRIV, { private: true, owned: true });
  const secret = await loadTokenSecret(dataDir);
  const issue = async (sub: string, scope: Array<'read' | 'push'>, repos: string[]) => (await issueToken(secret, { sub, scope, repos, ttlSeconds: 3600 })).token;
  tokens.reader = await issue('reader', ['read'], [PRIV]);
  tokens.other = await issue('pusher', ['read', 'push'], ['sample']);
  const revoked = await issueToken(secret, { sub: 'gone', scope: ['read', 'push'], repos: [PRIV], ttlSeconds: 3600 });
  tokens.revoked = revoked.token;
  await new RevocationList(dataDir).revoke(revoked.claims.jti, { by: 'test' });
  tokens.expired = await new SignJWT({ scope: 'read push', repos: [PRIV], prefixes: ['*'] })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer('cairn')
    .setSubject('late')
    .setJti('expired-token-1')
    .setIssuedAt(1_600_000_000)
    .setExpirationTime(1_600_000_600)
    .sign(secret);
});

after(removeTempDirs);

async function send(port: number, ask: Ask, name: string, headers: string[]): Promise<ParsedResponse> {
  const extra = ask.body === undefined ? headers : [...headers, 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(ask.body)}`];
  const x = await exchange(port, [requestText(ask.target(name), extra, ask.method) + (ask.body ?? '')], { expect: 1, heads: [ask.method === 'HEAD'] });
  return x.responses[0]!;
}

/** An answer as the client sees it, but Date and X-Request-Id; `name` written as PRIV where the answer echoes it. */
function comparable(r: ParsedResponse, name: string): { status: number; headers: Array<[string, string]>; body: string } {
  const as = (s: string) => s.split(name).join(PRIV);
  return {
    status: r.status,
    headers: r.names.filter((n) => !/^(date|x-request-id)$/i.test(n)).map((n) => [n, as(r.headers[n.toLowerCase()]!)]),
    body: as(r.body.toString('latin1')),
  };
}

/** The whole comparison against one server (its port), with controls: readers see the repository, a public one still says 401/403. */
async function hiddenOn(port: number, label: string): Promise<void> {
  // Each path is real: a reader of the repository gets it (Bearer and, as ostree sends it, Basic).
  for (const ask of ASKS) {
    for (const h of [bearer(tokens.reader), basic(tokens.reader)]) {
      const r = await send(port, ask, PRIV, [h]);
      assert.equal(r.status, ask.reader, `${label}: ${ask.method} ${ask.target(PRIV)} for a reader: ${r.body.toString().slice(0, 200)}`);
    }
  }
  for (const [who, headers] of strangers()) {
    for (const ask of ASKS) {
      const what = `${label}: ${ask.method} ${ask.target(PRIV)} with ${who}`;
      const hidden = await send(port, ask, PRIV, headers);
      const absent = await send(port, ask, ABSENT, headers);
      assert.equal(hidden.status, 404, what);
      assert.equal(hidden.headers['www-authenticate'], undefined, what);
      assert.deepEqual(comparable(hidden, PRIV), comparable(absent, ABSENT), what);
    }
  }
  // A public repository's write route still tells a stranger what is missing: 401, then 403.
  const push: Ask = { method: 'POST', target: (n) => `/api/repos/${n}/refs`, body: REF_BODY, reader: 0 };
  const anonymous = await send(port, push, 'sample', []);
  assert.equal(anonymous.status, 401, `${label}: a public repository's write route without a token`);
  assert.equal(JSON.parse(anonymous.body.toString()).error.code, 'UNAUTHORIZED');
  const reader = await send(port, push, 'sample', [bearer(tokens.reader)]);
  assert.equal(reader.status, 403, `${label}: a public repository's write route with a token of another repository`);
  assert.equal(JSON.parse(reader.body.toString()).error.code, 'FORBIDDEN');
}

test('in process: through the HTTP/1.1 front and through node\'s server alone, a private repository answers strangers as an absent one', async () => {
  const registry = new RepoRegistry(dataDir);
  const ctx: ServerContext = await createServerContext(dataDir, registry, { deltas: false });
  const app = createApp({ registry, logger: createLogger({ level: 'silent' }), context: ctx });
  const taken: string[] = [];
  const answer = app.locals.cairn.front.answer;
  const recording: Answerer = (head, conn) => {
    const r = answer(head, conn);
    const note = (a: unknown) => a !== null && taken.push(`${head.method} ${head.target}`);
    if (r instanceof Promise) void r.then(note, () => undefined);
    else note(r);
    return r;
  };
  const servers: ListeningServer[] = [];
  try {
    const withFront = await listen(app, { port: 0, host: '127.0.0.1', front: { ...app.locals.cairn.front, answer: recording } });
    servers.push(withFront);
    const nodeOnly = await listen(createApp({ registry, logger: createLogger({ level: 'silent' }), context: ctx }), { port: 0, host: '127.0.0.1' });
    servers.push(nodeOnly);
    await hiddenOn(withFront.port, 'front');
    // The front answered the repository files itself, for the private and the absent repository alike.
    for (const ask of ASKS.filter((a) => a.file)) {
      for (const name of [PRIV, ABSENT]) assert.ok(taken.includes(`${ask.method} ${ask.target(name)}`), `${ask.method} ${ask.target(name)}: answered by the front`);
    }
    const byFront = taken.length;
    await hiddenOn(nodeOnly.port, 'node');
    assert.equal(taken.length, byFront, 'node\'s server alone: no answer of the front');
  } finally {
    for (const s of servers) await s.close(100);
  }
});

test('cairn serve: a private repository answers strangers as an absent one; the stock client pulls it with the token in its URL', async () => {
  const server = await startCairn({ dataDir });
  try {
    await hiddenOn(server.port, `cairn serve`);
    const client = await initRepo(path.join(work, `client-${Date.now()}`), 'archive');
    const url = new URL(`${server.url}/repo/${PRIV}`);
    await addRemote(client, 'anonymous', url.toString());
    url.username = 'x';
    url.password = tokens.reader;
    await addRemote(client, 'cairn', url.toString());
    const refused = await ostreeResult(['pull', 'anonymous', REF], { repo: client });
    assert.notEqual(refused.code, 0, 'without a token the client finds nothing');
    assert.match(refused.stderr, /404|not found/i, refused.stderr);
    await ostree(['pull', 'cairn', REF], { repo: client });
    await ostree(['fsck'], { repo: client });
    const expected = readFileSync(path.join(FIXTURE_REPO, 'refs', 'heads', REF), 'utf8').trim();
    assert.equal((await ostree(['rev-parse', `cairn:${REF}`], { repo: client })).trim(), expected);
  } finally {
    await server.stop();
  }
});
