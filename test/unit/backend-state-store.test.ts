import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, symlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { CairnError } from '../../storage/errors';
import { childNames, stateStore } from '../../storage/backends/factory';
import { SettingsStore } from '../../storage/repo/settings';
import { RevocationList } from '../../server/auth/revocations';
import { loadTokenSecret } from '../../server/auth/tokens';

/**
 * The data folder's state store (storage/backends/factory.ts stateStore):
 * what settings, keys, the token secret, revocations and webhooks go through.
 */
async function withData(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'cairn-state-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const mode = async (p: string) => (await stat(p)).mode & 0o777;
const io = (e: unknown) => e instanceof CairnError && e.code === 'IO';

test('one state store per data location; secrets 0600 in 0700 folders, settings 0644, repos/ as mkdir makes it', () =>
  withData(async (dir) => {
    const s = stateStore(dir);
    assert.equal(stateStore(dir), s);
    assert.equal(stateStore(`file://${dir}`), s);
    assert.equal(s.blocking, true);
    await s.ensurePrefixes(['repos']);
    await loadTokenSecret(dir, {});
    await new SettingsStore(dir).update('main', { private: true });
    assert.equal(await mode(path.join(dir, 'secrets', 'token-secret')), 0o600);
    assert.equal(await mode(path.join(dir, 'secrets')), 0o700);
    assert.equal(await mode(path.join(dir, 'settings', 'main.json')), 0o644);
    assert.notEqual(await mode(path.join(dir, 'repos')), 0o700, 'repos/ keeps the umask default');
    const again = await loadTokenSecret(dir, {});
    assert.deepEqual(again, await loadTokenSecret(dir, {}), 'the secret is created once');
  }));

test('fails closed: a dangling symlink or a file where a folder should be is an error, not absence (not "public")', () =>
  withData(async (dir) => {
    const s = stateStore(dir);
    await mkdir(path.join(dir, 'settings'));
    await symlink(path.join(dir, 'nowhere.json'), path.join(dir, 'settings', 'priv.json'));
    assert.throws(() => s.statFast('settings/priv.json'), io);
    await assert.rejects(s.stat('settings/priv.json'), io);
    assert.throws(() => new SettingsStore(dir).current('priv'), io);
    await writeFile(path.join(dir, 'state'), 'a file');
    assert.throws(() => s.statFast('state/revoked-tokens/abc'), io);
    await assert.rejects(new RevocationList(dir).isRevoked('abc'), io);
    assert.equal(s.statFast('settings/absent.json'), null, 'truly absent is absent');
  }));

test('settings updates are compare-and-swap: concurrent updates from separate stores all land', () =>
  withData(async (dir) => {
    const a = new SettingsStore(dir);
    const b = new SettingsStore(dir);
    await Promise.all([
      a.update('main', { private: true }),
      b.update('main', { deltas: { previousCommits: 7 } }),
      a.update('main', { owned: true }),
      b.update('main', { deltas: { scratch: false } }),
    ]);
    const got = await new SettingsStore(dir).get('main');
    assert.equal(got.private, true);
    assert.equal(got.owned, true);
    assert.equal(got.deltas.previousCommits, 7);
    assert.equal(got.deltas.scratch, false);
  }));

test('childNames: the folders below a key, sorted; none when absent', () =>
  withData(async (dir) => {
    assert.deepEqual(await childNames(dir, 'repos'), []);
    for (const n of ['b', 'a', 'c']) await mkdir(path.join(dir, 'repos', n), { recursive: true });
    assert.deepEqual(await childNames(dir, 'repos'), ['a', 'b', 'c']);
    await assert.rejects(childNames(dir, '../x'), (e: unknown) => e instanceof CairnError && e.code === 'INVALID_PATH');
  }));
