// Request smuggling: a request with a body on any method (here GET/HEAD/DELETE/OPTIONS with
// `Transfer-Encoding: chunked`, the body holding a second request) is framed by the server
// that reads it, never replayed to another process as a new request. Run against a real
// `cairn serve` with one process and with `--workers 2`, whatever the machine's cores: the
// old workers proxied such a body unframed to the primary, where it became a request of its
// own and answers crossed between clients (a private ref reached an anonymous client).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { startCairn, projectRoot } from '../helpers/cairn-process';
import { initRepo, makeTempDir, removeTempDirs } from '../helpers/ostree';
import { exchange } from '../helpers/raw-http';

const run = promisify(execFile);
after(removeTempDirs);

const SECRET = 'c0ffee'.repeat(10) + 'c0ff';

for (const workers of [1, 2]) {
  test(`--workers ${workers}: a smuggled request inside a body is never answered, nor another client's answer mixed in`, async () => {
    const work = await makeTempDir('cairn-smuggle-');
    const data = path.join(work, 'data');
    const repo = await initRepo(path.join(data, 'repos', 'priv'), 'archive');
    mkdirSync(path.join(repo, 'refs', 'heads'), { recursive: true });
    writeFileSync(path.join(repo, 'refs', 'heads', 'secret'), `${SECRET}\n`);
    mkdirSync(path.join(data, 'settings'), { recursive: true });
    writeFileSync(path.join(data, 'settings', 'priv.json'), JSON.stringify({ private: true }));
    const server = await startCairn({ dataDir: data, env: { CAIRN_LOG: 'info' }, extraArgs: ['--workers', String(workers)] });
    try {
      const token = (await run(process.execPath, [path.join(projectRoot(), 'bin', 'cairn.js'), 'token', '--data', data, '--scope', 'read', '--repo', 'priv'])).stdout.trim();
      const inner = `GET /repo/priv/refs/heads/secret HTTP/1.1\r\nHost: x\r\n\r\n`;
      const chunked = `${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`;
      let legit = 0;
      let attacks = 0;
      const stop = Date.now() + 4000;
      const reader = (async () => {
        // A client with a token reads the private ref over kept-alive connections meanwhile.
        while (Date.now() < stop && legit < 400) {
          const res = await fetch(`${server.url}/repo/priv/refs/heads/secret`, { headers: { authorization: `Bearer ${token}` } });
          assert.equal(res.status, 200);
          assert.equal(await res.text(), `${SECRET}\n`);
          legit++;
        }
      })();
      const attacker = (async () => {
        for (const method of ['GET', 'HEAD', 'DELETE', 'OPTIONS']) {
          for (let i = 0; i < 25; i++) {
            const smuggle = `${method} /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}`;
            const follow = `GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`;
            const x = await exchange(server.port, [smuggle + follow], { expect: 2, heads: [method === 'HEAD', false], lingerMs: 30 });
            // Exactly the two requests framed on the wire are answered, in order; never the ref.
            assert.equal(x.responses.length, 2);
            for (const r of x.responses) {
              assert.ok(!r.body.toString('latin1').includes(SECRET), `${method}: the private ref leaked to an anonymous client`);
              // An answer about a repository file (a private repository's, to an anonymous client: the
              // empty 404 with X-Cairn-Error) is the smuggled request's; /healthz never answers one.
              assert.equal(r.headers['x-cairn-error'], undefined, `${method}: the smuggled request was answered`);
            }
            assert.equal(x.responses[1]!.status, 200);
            assert.equal(JSON.parse(x.responses[1]!.body.toString()).status, 'ok');
            attacks++;
          }
        }
      })();
      await Promise.all([reader, attacker]);
      assert.ok(legit > 0 && attacks === 100, `legit ${legit}, attacks ${attacks}`);
      // Nothing but the framed requests reached the application: no anonymous (404) request for the smuggled ref.
      const smuggledSeen = server.requests().filter((r) => r.path === '/repo/priv/refs/heads/secret' && r.status !== 200);
      assert.deepEqual(smuggledSeen, []);
    } finally {
      await server.stop();
    }
  });
}
