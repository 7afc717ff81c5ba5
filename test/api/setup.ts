// The operator API's test bed: a data folder with repository `main` created (so owned) by Cairn,
// holding a history of `os/main` made two ways: commits made by `ostree commit` in a separate
// archive repository and pushed to Cairn over the publishing API (objects, then ref updates:
// Cairn signs them with the repository's keys), then a commit made by the `ostree` CLI straight
// into Cairn's repository folder (unsigned), and a second ref whose commit a foreign GPG key signs
// with `ostree gpg-sign`. The reference repository is there too, as `sample`, which Cairn does not
// own. The app is supertest's, on a server context without background delta jobs.

import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import request from 'supertest';
import { FsBackend } from '../../storage/backends/fs';
import { ARCHIVE_EXTENSION } from '../../storage/objects/types';
import { objectName, walkCommitTree } from '../../storage/repo/closure';
import { Repo } from '../../storage/repo/repo';
import { loadRepoKeys } from '../../storage/signing/keys';
import type { CairnApp } from '../../server/app';
import { issueToken } from '../../server/auth/tokens';
import { createServerContext } from '../../server/bootstrap';
import type { ServerContext } from '../../server/context';
import type { Scope } from '../../server/auth/tokens';
import { makeGpgKey, type GpgKey } from '../helpers/gpg';
import { commitTree, initRepo, makeTempDir, ostree, pseudoRandomBytes } from '../helpers/ostree';
import { makeApp, makeDataDir, type TestData } from '../http/helpers';

export interface ApiBed {
  work: string;
  data: TestData;
  ctx: ServerContext;
  app: CairnApp;
  main: Repo;
  mainDir: string;
  /** os/main's commits, oldest first: v1 and v2 pushed through Cairn (signed), v3 by the ostree CLI (unsigned). */
  line: [string, string, string];
  /** os/other's commit, signed by a foreign GPG key. */
  foreign: string;
  foreignKey: GpgKey;
  /** A folder holding only the repository's public GPG key, for `ostree show --gpg-homedir`. */
  keyring: string;
  /** A token for repository `main` (or `repos`), valid ten minutes. */
  token(scope: Scope, opts?: { prefixes?: string[]; repos?: string[]; sub?: string }): Promise<string>;
  dispose(): Promise<void>;
}

async function write(root: string, rel: string, data: string | Buffer, mode?: number): Promise<void> {
  const p = path.join(root, rel);
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, data);
  if (mode !== undefined) await fsp.chmod(p, mode);
}

/** Uploads the closure of `commit` from the archive repository `dir` to `repo` on `app`, 64 objects a request. */
export async function uploadCommit(app: CairnApp, token: string, repoName: string, dir: string, commit: string): Promise<void> {
  const walk = await walkCommitTree(new Repo('src', new FsBackend(dir)), commit);
  for (let i = 0; i < walk.objects.length; i += 64) {
    let r = request(app).post(`/api/repos/${repoName}/objects`).set('Authorization', `Bearer ${token}`);
    for (const o of walk.objects.slice(i, i + 64)) {
      const file = path.join(dir, 'objects', o.checksum.slice(0, 2), `${o.checksum.slice(2)}.${ARCHIVE_EXTENSION[o.type]}`);
      r = r.attach(objectName(o), readFileSync(file), objectName(o));
    }
    const res = await r;
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }
}

/** `ostree commit` without ref bindings (so that a commit may be promoted to another ref) → its checksum. */
async function commitUnbound(repo: string, branch: string, tree: string, subject: string, timestamp: number, version: string): Promise<string> {
  const ts = new Date(timestamp * 1000).toISOString();
  const out = (await ostree(['commit', '--no-bindings', `--branch=${branch}`, `--tree=dir=${tree}`, `--subject=${subject}`, `--timestamp=${ts}`, `--add-metadata-string=version=${version}`], { repo })).trim();
  assert.match(out, /^[0-9a-f]{64}$/);
  return out;
}

export async function makeApiBed(): Promise<ApiBed> {
  const work = await makeTempDir('cairn-api-');
  const data = makeDataDir();
  const main = await data.registry.create('main');
  const mainDir = main.backend.location;
  const ctx = await createServerContext(data.dataDir, data.registry, { deltas: false });
  const app = makeApp(data, { context: ctx });
  const token = async (scope: Scope, opts: { prefixes?: string[]; repos?: string[]; sub?: string } = {}) =>
    (await issueToken(ctx.auth.secret, { sub: opts.sub ?? `${scope}-tester`, scope: [scope], repos: opts.repos ?? ['main'], prefixes: opts.prefixes, ttlSeconds: 600 })).token;

  // v1 and v2, made by `ostree commit` elsewhere and pushed through the API.
  const tree = path.join(work, 'tree');
  await write(tree, 'README', 'hello\nworld\n');
  await write(tree, 'etc/os-release', 'ID=cairntest\nVERSION_ID=1\n');
  await write(tree, 'bin/tool', Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2, 3, 0, 0]), 0o755);
  await write(tree, 'bin/script', '#!/bin/sh\necho hi\n', 0o644);
  await write(tree, 'www/page.html', '<!doctype html><script>document.title = "pwned"</script>\n');
  await write(tree, 'names/héllo wörld "quoted".txt', 'unicode\n');
  await write(tree, 'big/blob.bin', pseudoRandomBytes(11, 1_300_000));
  await write(tree, 'gone/a', 'a\n');
  await write(tree, 'gone/deeper/b', 'b\n');
  await write(tree, 'becomes-link', 'was a file\n');
  await fsp.mkdir(path.join(tree, 'empty'), { recursive: true });
  await fsp.symlink('README', path.join(tree, 'link'));
  const srcDir = await initRepo(path.join(work, 'src-repo'), 'archive');
  const v1 = await commitUnbound(srcDir, 'os/main', tree, 'v1', 1700000000, '1');

  await write(tree, 'README', 'hello\nthere\nworld\n');
  await fsp.chmod(path.join(tree, 'bin/script'), 0o755);
  await fsp.chmod(path.join(tree, 'bin'), 0o700);
  await fsp.rm(path.join(tree, 'gone'), { recursive: true });
  await fsp.rm(path.join(tree, 'becomes-link'));
  await fsp.symlink('README', path.join(tree, 'becomes-link'));
  await write(tree, 'new/nested/deep/file', 'new\n');
  await write(tree, 'added.txt', 'added\n');
  const v2 = await commitUnbound(srcDir, 'os/main', tree, 'v2', 1700000100, '2');

  const push = await token('push', { prefixes: ['os/'] });
  await uploadCommit(app, push, 'main', srcDir, v1);
  await uploadCommit(app, push, 'main', srcDir, v2);
  for (const [commit, expected] of [[v1, null], [v2, v1]] as const) {
    const res = await request(app).post('/api/repos/main/refs').set('Authorization', `Bearer ${push}`).send({ updates: [{ ref: 'os/main', commit, expected }] });
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }

  // v3: the ostree CLI, straight into Cairn's repository (its parent is the ref's value, v2).
  await write(tree, 'etc/os-release', 'ID=cairntest\nVERSION_ID=3\n');
  for (let i = 0; i < 25; i++) await write(tree, `many/f-${String(i).padStart(2, '0')}`, `file ${i}\n`);
  const v3 = await commitUnbound(mainDir, 'os/main', tree, 'v3', 1700000200, '3');

  // os/other: a commit bound to its ref (ostree commit's default) and signed by a key the repository does not know.
  const other = path.join(work, 'other');
  await write(other, 'only', 'other\n');
  const foreign = await commitTree(mainDir, { branch: 'os/other', tree: other, subject: 'other', timestamp: 1700000300 });
  const foreignKey = await makeGpgKey(path.join(work, 'foreign-gpg'));
  await ostree(['gpg-sign', `--gpg-homedir=${foreignKey.homedir}`, foreign, foreignKey.keyId], { repo: mainDir });

  const keyring = path.join(work, 'keyring');
  await fsp.mkdir(keyring);
  // libostree reads the `.gpg` files of a --gpg-homedir folder as binary keyrings.
  const keys = await loadRepoKeys(data.dataDir, 'main');
  await fsp.writeFile(path.join(keyring, 'repo.gpg'), Buffer.from(keys.gpg.privateKey.toPublic().write()));
  return {
    work,
    data,
    ctx,
    app,
    main,
    mainDir,
    line: [v1, v2, v3],
    foreign,
    foreignKey,
    keyring,
    token,
    async dispose() {
      await foreignKey.dispose();
      data.cleanup();
    },
  };
}

/** Validates `body` against a response schema of /api/openapi.json (its components resolved). */
export async function responseValidator(app: CairnApp): Promise<(schema: unknown, body: unknown) => string | null> {
  const doc = (await request(app).get('/api/openapi.json').expect(200)).body as { components: { schemas: Record<string, unknown> } };
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema({ $id: 'doc', components: doc.components });
  const fix = (s: unknown): unknown => JSON.parse(JSON.stringify(s).replace(/"#\/components\//g, '"doc#/components/'));
  return (schema, body) => {
    const validate = ajv.compile(fix(schema) as object);
    return validate(body) ? null : ajv.errorsText(validate.errors);
  };
}

/** The response schema (200) of `method path` in the OpenAPI document. */
export async function responseSchema(app: CairnApp, method: string, openapiPath: string): Promise<unknown> {
  const doc = (await request(app).get('/api/openapi.json').expect(200)).body as { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>> };
  const op = doc.paths[openapiPath]?.[method];
  assert.ok(op, `${method} ${openapiPath} is in the OpenAPI document`);
  return op.responses['200']!.content!['application/json']!.schema;
}
