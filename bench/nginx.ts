import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

/**
 * nginx serving a folder as static files: the reference the benchmarks
 * measure Cairn against. A plain production-like config: as many workers as
 * cores, sendfile, keep-alive, no compression.
 */
export interface NginxServer {
  /** http://127.0.0.1:PORT */
  origin: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** Polls until `url` answers 200. */
export async function waitHttp(url: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.status === 200) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > end) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Starts nginx with its prefix (config, logs, temp folders) in `prefix`,
 * serving folder `root` at `/repo/`; `probe` is a path below /repo/ that must
 * answer 200 before this resolves.
 */
export async function startNginx(opts: { prefix: string; root: string; probe: string; accessLog: boolean }): Promise<NginxServer> {
  const { prefix } = opts;
  await fsp.rm(prefix, { recursive: true, force: true });
  await fsp.mkdir(path.join(prefix, 'tmp'), { recursive: true });
  const port = await freePort();
  const conf = path.join(prefix, 'nginx.conf');
  await fsp.writeFile(
    conf,
    `daemon off;
master_process on;
worker_processes auto;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  ${opts.accessLog ? `access_log ${prefix}/access.log;` : 'access_log off;'}
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  default_type application/octet-stream;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  server {
    listen 127.0.0.1:${port};
    location /repo/ { alias ${opts.root.replace(/\/?$/, '/')}; }
  }
}
`,
  );
  const child: ChildProcess = spawn('nginx', ['-c', conf, '-p', prefix], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (c) => (err += c));
  child.on('error', (e) => (err += String(e)));
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  const origin = `http://127.0.0.1:${port}`;
  try {
    await waitHttp(`${origin}/repo/${opts.probe}`);
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`nginx did not start: ${(e as Error).message}\n${err}`);
  }
  return {
    origin,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGQUIT'); // graceful: workers finish, master exits
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
