import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { PROJECT_ROOT } from '../helpers/fixtures';
import { rawRequest } from './helpers';

const BIN = path.join(PROJECT_ROOT, 'bin', 'cairn.js');

interface Listening {
  msg: string;
  port: number;
  url: string;
}

/** Starts `cairn serve` and resolves with the parsed "listening" line. */
function startServe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; line: Listening; output: () => string }> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line in 10s; stdout=${out} stderr=${err}`)), 10_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      for (const l of out.split('\n')) {
        if (!l.includes('"msg":"listening"')) continue;
        clearTimeout(timer);
        resolve({ child, line: JSON.parse(l) as Listening, output: () => out });
        return;
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${code}; stdout=${out} stderr=${err}`));
    });
  });
}

function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.kill(signal);
  });
}

describe('cairn CLI', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'cairn-cli-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  test('serve --port 0: listening line, /healthz, /repo/main/config, SIGTERM', async () => {
    const data = path.join(tmp, 'data');
    const { child, line, output } = await startServe(['--data', data, '--port', '0'], { CAIRN_LOG: 'info' });
    try {
      assert.equal(line.msg, 'listening');
      assert.equal(typeof line.port, 'number');
      assert.ok(line.port > 0);
      assert.equal(line.url, `http://127.0.0.1:${line.port}`);
      const health = await rawRequest(line.port, '/healthz');
      assert.equal(health.status, 200);
      assert.deepEqual(JSON.parse(health.body.toString()), { status: 'ok', repos: 1 });
      const config = await rawRequest(line.port, '/repo/main/config');
      assert.equal(config.status, 200);
      assert.ok(config.body.equals(readFileSync(path.join(data, 'repos', 'main', 'config'))));
      assert.match(config.body.toString(), /mode=archive-z2/);
      // one JSON request line per request
      await new Promise((r) => setTimeout(r, 100));
      const reqLine = output().split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((r) => r.msg === 'request' && r.path === '/repo/main/config');
      assert.ok(reqLine, output());
      assert.equal(reqLine.status, 200);
      assert.equal(reqLine.repo, 'main');
      assert.equal(reqLine.method, 'GET');
      assert.equal(typeof reqLine.duration_ms, 'number');
      assert.equal(reqLine.bytes, config.body.length);
    } finally {
      assert.equal(await stop(child), 0);
    }
  });

  test('env defaults, CAIRN_LOG=silent still prints the listening line, --mount, SIGINT', async () => {
    const data = path.join(tmp, 'data-env');
    const { child, line, output } = await startServe(['--mount', `/files=${PROJECT_ROOT}/test/fixtures/ostree`], { CAIRN_DATA: data, CAIRN_PORT: '0', CAIRN_HOST: '127.0.0.1', CAIRN_LOG: 'silent' });
    try {
      assert.ok(existsSync(path.join(data, 'repos', 'main', 'config')));
      const summary = await rawRequest(line.port, '/files/repo/summary');
      assert.equal(summary.status, 200);
      assert.equal(summary.body.length, readFileSync(path.join(PROJECT_ROOT, 'test/fixtures/ostree/repo/summary')).length);
      assert.equal((await rawRequest(line.port, '/files/../package.json')).status, 400);
      assert.equal(output().trim().split('\n').length, 1, 'silent: only the listening line');
    } finally {
      assert.equal(await stop(child, 'SIGINT'), 0);
    }
  });

  test('init-repo creates a repository, refuses a second one, validates names', () => {
    const data = path.join(tmp, 'data-init');
    const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
    const ok = run('init-repo', 'os', '--data', data, '--collection-id', 'org.example.Os');
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(readFileSync(path.join(data, 'repos', 'os', 'config'), 'utf8'), /collection-id=org\.example\.Os/);
    const again = run('init-repo', 'os', '--data', data);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /already exists/);
    const bad = run('init-repo', '../x', '--data', data);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /invalid repository name/);
  });

  test('usage errors exit 2 with a clear message; --help works', () => {
    const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
    const help = run('--help');
    assert.equal(help.status, 0);
    assert.match(help.stdout, /serve/);
    assert.match(help.stdout, /init-repo/);
    assert.equal(run('serve', '--help').status, 0);
    assert.match(run('serve', '--help').stdout, /--mount PREFIX=DIR/);
    for (const args of [['frobnicate'], ['serve', '--bogus'], ['serve', '--port', 'eighty'], ['serve', '--port', '70000'], ['serve', '--mount', 'nodir'], ['init-repo'], []]) {
      const r = run(...args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      if (args.length) assert.match(r.stderr, /^cairn/);
    }
  });
});
