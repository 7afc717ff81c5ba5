// The cairn dispatch table loads a command's module only when that command
// runs (or prints its help): `cairn push` must not pay for loading the server
// or the delta compiler. The summaries the table keeps for `cairn --help` are
// the commands' own.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { main } from '../../cli/main';
import { COMMANDS } from '../../cli/commands';

const commandsDir = path.resolve(__dirname, '../../cli/commands');
const loaded = (file: string): boolean => require.cache[path.join(commandsDir, `${file}.js`)] !== undefined;
const serverLoaded = (): boolean => Object.keys(require.cache).some((k) => k.includes(`${path.sep}server${path.sep}`));

async function capture(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = process.stdout.write.bind(process.stdout);
  const e = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string | Uint8Array) => ((out += String(s)), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => ((err += String(s)), true)) as typeof process.stderr.write;
  try {
    return { code: await main(argv), out, err };
  } finally {
    process.stdout.write = o;
    process.stderr.write = e;
  }
}

test('the overview, bad usage and push --help load no command but push', async () => {
  // Runs first in this process: nothing but the table is loaded yet.
  for (const f of ['serve', 'initRepo', 'commit', 'token', 'push', 'delta', 'adopt']) assert.equal(loaded(f), false, f);
  const over = await capture(['--help']);
  assert.equal(over.code, 0);
  for (const c of COMMANDS) assert.match(over.out, new RegExp(`  ${c.name} *  ${c.summary}\n`));
  assert.equal((await capture([])).code, 2);
  const bad = await capture(['nope']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /^cairn: unknown command "nope"\nRun 'cairn --help' for usage\.\n$/);
  assert.equal((await capture(['--bogus'])).code, 2);
  assert.equal((await capture(['help', 'nope'])).code, 2);

  const help = await capture(['push', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.out, /cairn push/);
  assert.equal(loaded('push'), true);
  for (const f of ['serve', 'initRepo', 'commit', 'token', 'delta', 'adopt']) assert.equal(loaded(f), false, f);
  assert.equal(serverLoaded(), false, 'push --help loaded a server module');

  const usage = await capture(['push', '--no-such-option']);
  assert.equal(usage.code, 2);
  assert.match(usage.err, /^cairn push: .*\nRun 'cairn push --help' for usage\.\n$/);
});

test('each table entry is its command: same name and summary; help prints its usage', async () => {
  for (const entry of COMMANDS) {
    const cmd = entry.load();
    assert.equal(cmd.name, entry.name);
    assert.equal(cmd.summary, entry.summary, `${entry.name}: the table's summary differs from the command's`);
    const h = await capture(['help', entry.name]);
    assert.equal(h.code, 0);
    assert.equal(h.out, cmd.usage + '\n');
    const h2 = await capture([entry.name, '-h']);
    assert.equal(h2.code, 0);
    assert.equal(h2.out, cmd.usage + '\n');
  }
});
