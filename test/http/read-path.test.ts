// The read path's regression tests (issue: one exact, hardened read path), through both
// transports that write server/files/answer.ts's answers: the HTTP/1.1 front (listen with
// `front`) and node's server (the same app without it).
//   - exactly what is on disk: an object deleted, replaced or repaired in a data-folder
//     repository is never served from memory after the change;
//   - a private repository whose settings cannot be read fails closed (500), never public;
//   - a symlink inside a repository that leads out of it is not followed (404), one that
//     stays inside is, and `followSymlinks` follows both.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { listen, type ListeningServer } from '../../server/listen';
import { createServerContext } from '../../server/bootstrap';
import type { ServerContext } from '../../server/context';
import { RepoRegistry } from '../../storage/repo/registry';
import { exchange, requestText, type ParsedResponse } from '../helpers/raw-http';
import { makeApp, makeDataDir, type TestData } from './helpers';

const COMMIT = 'objects/3f/d0406929e83910fc100bb8ea1da75799549be4e5d2cf3ffbd292054da936a3.commit';

let data: TestData;
let ctx: ServerContext;
const servers: { name: string; server: ListeningServer }[] = [];

before(async () => {
  data = makeDataDir();
  ctx = await createServerContext(data.dataDir, data.registry, { signing: false, deltas: false });
  const withFront = makeApp(data, { context: ctx });
  servers.push({ name: 'front', server: await listen(withFront, { port: 0, host: '127.0.0.1', front: withFront.locals.cairn.front }) });
  servers.push({ name: 'node', server: await listen(makeApp(data, { context: ctx }), { port: 0, host: '127.0.0.1' }) });
});

after(async () => {
  for (const s of servers) await s.server.close(100);
  data.cleanup();
});

async function get(port: number, target: string, headers: string[] = []): Promise<ParsedResponse> {
  return (await exchange(port, [requestText(target, headers)], { expect: 1 })).responses[0]!;
}

/** The same request through both transports: the same status and body. */
async function both(target: string): Promise<ParsedResponse> {
  const [a, b] = [await get(servers[0]!.server.port, target), await get(servers[1]!.server.port, target)];
  assert.equal(a.status, b.status, `${target}: front ${a.status}, node ${b.status}`);
  assert.ok(a.body.equals(b.body), `${target}: bodies differ`);
  return a;
}

test('exactly what is on disk: a deleted, replaced or repaired object is never served from memory', async () => {
  const file = path.join(data.repoDir, COMMIT);
  const original = readFileSync(file);
  for (let i = 0; i < 3; i++) assert.equal((await both(`/repo/sample/${COMMIT}`)).status, 200); // cached now
  unlinkSync(file);
  assert.equal((await both(`/repo/sample/${COMMIT}`)).status, 404, 'deleted: gone at once');
  const corrupt = Buffer.from(original);
  corrupt[10] ^= 0xff;
  writeFileSync(file, corrupt);
  assert.ok((await both(`/repo/sample/${COMMIT}`)).body.equals(corrupt), 'replaced: the new bytes');
  // Repaired in place, same size (as a repair tool might): the next request sees it.
  writeFileSync(file, original);
  assert.ok((await both(`/repo/sample/${COMMIT}`)).body.equals(original), 'repaired: the good bytes');
  // Replaced by rename, as ostree and Cairn write.
  writeFileSync(`${file}.tmp`, corrupt);
  renameSync(`${file}.tmp`, file);
  assert.ok((await both(`/repo/sample/${COMMIT}`)).body.equals(corrupt));
  writeFileSync(file, original);
});

test('a private repository whose settings cannot be read fails closed', async () => {
  await data.registry.create('priv');
  mkdirSync(path.join(data.repoDir, '..', 'priv', 'refs', 'heads'), { recursive: true });
  writeFileSync(path.join(data.repoDir, '..', 'priv', 'refs', 'heads', 'secret'), `${'a'.repeat(64)}\n`);
  await ctx.settings.update('priv', { private: true });
  assert.equal((await both('/repo/priv/refs/heads/secret')).status, 404, 'private: without a token, as if it did not exist');
  writeFileSync(path.join(data.dataDir, 'settings', 'priv.json'), '{"private": tru');
  for (const target of ['/repo/priv/refs/heads/secret', '/repo/priv/config', '/repo/priv/summary', '/repo/priv/keys/gpg.asc']) {
    const r = await both(target);
    assert.equal(r.status, 500, `${target} with unreadable settings`);
    assert.equal(r.body.length, 0);
  }
  const api = await get(servers[1]!.server.port, '/api/repos/priv/deltas');
  assert.equal(api.status, 500);
  // A dangling symlink is settings that cannot be read too, not "no settings" (public).
  rmSync(path.join(data.dataDir, 'settings', 'priv.json'));
  symlinkSync(path.join(data.dataDir, 'nowhere.json'), path.join(data.dataDir, 'settings', 'priv.json'));
  assert.equal((await both('/repo/priv/refs/heads/secret')).status, 500, 'dangling settings symlink');
  await ctx.settings.update('priv', { private: false }).catch(() => undefined);
  rmSync(path.join(data.dataDir, 'settings', 'priv.json'), { force: true });
});

test('symlinks inside a repository are not followed out of it (unless the operator allows it)', async () => {
  const secret = path.join(data.dataDir, 'secrets', 'token-secret');
  assert.ok(readFileSync(secret).length > 0);
  symlinkSync(secret, path.join(data.repoDir, 'x'));
  symlinkSync(path.join(data.repoDir, 'config'), path.join(data.repoDir, 'config-link')); // stays inside
  mkdirSync(path.join(data.dataDir, 'elsewhere'));
  writeFileSync(path.join(data.dataDir, 'elsewhere', 'f'), 'outside\n');
  symlinkSync(path.join(data.dataDir, 'elsewhere'), path.join(data.repoDir, 'dirlink'));
  try {
    assert.equal((await both('/repo/sample/x')).status, 404, 'a file symlink out of the repository');
    assert.equal((await both('/repo/sample/dirlink/f')).status, 404, 'a folder symlink out of the repository');
    const inside = await both('/repo/sample/config-link');
    assert.equal(inside.status, 200);
    assert.ok(inside.body.equals(readFileSync(path.join(data.repoDir, 'config'))));
    // The repository folder itself may be a symlink (how operators place repositories).
    symlinkSync(data.repoDir, path.join(data.dataDir, 'repos', 'linked'));
    assert.equal((await both(`/repo/linked/${COMMIT}`)).status, 200);
    assert.equal((await both('/repo/linked/x')).status, 404);

    // A folder swapped for a symlink out of the repository right after a request made Cairn
    // check (and remember) it: what is read is checked on the descriptor actually opened.
    assert.equal((await both('/repo/sample/objects/zz/token-secret')).status, 404); // absent: not remembered
    mkdirSync(path.join(data.repoDir, 'objects', 'zy'));
    writeFileSync(path.join(data.repoDir, 'objects', 'zy', 'token-secret'), 'inside\n');
    assert.equal((await both('/repo/sample/objects/zy/token-secret')).body.toString(), 'inside\n'); // remembered as inside
    rmSync(path.join(data.repoDir, 'objects', 'zy'), { recursive: true });
    symlinkSync('../../../secrets', path.join(data.repoDir, 'objects', 'zy'));
    symlinkSync('../../../secrets', path.join(data.repoDir, 'objects', 'zz'));
    for (const dir of ['zy', 'zz']) {
      const r = await both(`/repo/sample/objects/${dir}/token-secret`);
      assert.equal(r.status, 404, `objects/${dir} swapped for a symlink out of the repository`);
      assert.ok(!r.body.toString().includes(readFileSync(secret, 'utf8').trim()));
    }

    // --follow-symlinks: the operator allows it.
    const lax = makeApp({ ...data, registry: new RepoRegistry(data.dataDir, { followSymlinks: true }) }, { context: ctx });
    const server = await listen(lax, { port: 0, host: '127.0.0.1', front: lax.locals.cairn.front });
    try {
      const r = await get(server.port, '/repo/sample/x');
      assert.equal(r.status, 200);
      assert.ok(r.body.equals(readFileSync(secret)));
      assert.equal((await get(server.port, '/repo/sample/dirlink/f')).status, 200);
    } finally {
      await server.close(100);
    }
  } finally {
    for (const f of ['x', 'config-link', 'dirlink', 'objects/zy', 'objects/zz']) rmSync(path.join(data.repoDir, f), { force: true });
    rmSync(path.join(data.dataDir, 'repos', 'linked'), { force: true });
  }
});
