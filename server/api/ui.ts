import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Request, Response } from 'express';
import { CairnError } from '../../storage/errors';
import { route, type AnyRoute } from './route';

/**
 * The web UI (issue #10): one route answers `/` and every path under `/ui/`.
 *
 * Pages (`/`, `/ui/repos/NAME/…`, `/ui/jobs`, …) all answer the same small
 * HTML document; the script (web/, compiled by web/tsconfig.json into
 * `dist/web/`) reads the URL and draws the page from the JSON API. Assets are
 * served from memory at `/ui/assets/BUILD/FILE`, BUILD being a digest of every
 * asset, so they are cached for a year (`immutable`) and a new build has new
 * URLs; the HTML is revalidated (`no-cache` with an ETag, 304). The HTML
 * carries `Content-Security-Policy: default-src 'self'` (no inline script or
 * style, nothing from another origin); the script writes data into the page
 * as text only. Paths outside `/` and `/ui/…` are not the UI's: unknown
 * `/api/*` paths still answer 404 JSON.
 */

const ASSETS = '/ui/assets/';
/** Longest page path taken (a page path is a URL someone shared; more is nobody's). */
const MAX_PAGE_PATH = 4096;

export const CSP = "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; form-action 'self'";

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

interface Bundle {
  /** Digest of every asset (names and bytes): the BUILD of the asset URLs. */
  build: string;
  assets: Map<string, Asset>;
  html: Buffer;
  htmlEtag: string;
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml; charset=utf-8',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** Where the compiled script is (`dist/web/`, beside `dist/server/`) and the static files (`web/static/`). */
export function uiFolders(): { script: string; statics: string } {
  const dist = path.resolve(__dirname, '..', '..');
  return { script: path.join(dist, 'web'), statics: path.resolve(dist, '..', 'web', 'static') };
}

let bundle: Bundle | Error | undefined;
let warned = false;

/** Reads the assets once per process (a few small files). */
export function loadBundle(folders = uiFolders()): Bundle | Error {
  if (bundle) return bundle;
  try {
    const files = new Map<string, Buffer>();
    collect(folders.script, '', files, (n) => n.endsWith('.js'));
    if (!files.has('app.js')) throw new Error(`${path.join(folders.script, 'app.js')} is missing`);
    collect(folders.statics, '', files, (n) => path.extname(n) in TYPES);
    const names = [...files.keys()].sort();
    const h = createHash('sha256');
    for (const n of names) h.update(n).update('\0').update(files.get(n)!).update('\0');
    const build = h.digest('hex').slice(0, 20);
    const assets = new Map<string, Asset>();
    for (const n of names) {
      const body = files.get(n)!;
      assets.set(n, { body, type: TYPES[path.extname(n)]!, etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"` });
    }
    const url = (n: string) => `${ASSETS}${build}/${n}`;
    const modules = names.filter((n) => n.endsWith('.js') && n !== 'app.js');
    const css = names.filter((n) => n.endsWith('.css'));
    const icon = names.find((n) => n.endsWith('.svg'));
    const html = Buffer.from(
      [
        '<!doctype html>',
        '<html lang="en">',
        '<head>',
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        '<title>Cairn</title>',
        ...css.map((n) => `<link rel="stylesheet" href="${url(n)}">`),
        ...(icon ? [`<link rel="icon" href="${url(icon)}">`] : []),
        ...modules.map((n) => `<link rel="modulepreload" href="${url(n)}">`),
        `<script type="module" src="${url('app.js')}"></script>`,
        '</head>',
        '<body>',
        '<noscript><p>The Cairn web UI needs JavaScript. The API is described at <a href="/api/openapi.json">/api/openapi.json</a>.</p></noscript>',
        '<div id="app"></div>',
        '</body>',
        '</html>',
        '',
      ].join('\n'),
    );
    bundle = { build, assets, html, htmlEtag: `"${build}"` };
  } catch (e) {
    bundle = new Error(e instanceof Error ? e.message : String(e));
  }
  return bundle;
}

/** Forgets the assets read (tests that build them anew). */
export function resetBundle(): void {
  bundle = undefined;
}

function collect(dir: string, rel: string, out: Map<string, Buffer>, keep: (name: string) => boolean): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  for (const e of entries) {
    const name = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) collect(path.join(dir, e.name), name, out, keep);
    else if (e.isFile() && keep(e.name)) out.set(name, fs.readFileSync(path.join(dir, e.name)));
  }
}

/** Whether the request's If-None-Match names `etag`. */
function fresh(req: Request, etag: string): boolean {
  const inm = req.headers['if-none-match'];
  if (typeof inm !== 'string' || inm.length > 4096) return false;
  return inm.split(',').some((t) => {
    const v = t.trim();
    return v === etag || v === `W/${etag}` || v === '*';
  });
}

function send(req: Request, res: Response, body: Buffer, type: string, etag: string, headers: Record<string, string>): void {
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader('ETag', etag);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  if (fresh(req, etag)) {
    res.status(304).end();
    return;
  }
  res.setHeader('Content-Type', type);
  res.setHeader('Content-Length', body.length);
  res.status(200).end(req.method === 'HEAD' ? undefined : body);
}

export const uiRoutes: AnyRoute[] = [
  route({
    method: 'get',
    path: '/{ui{/*page}}',
    label: 'ui',
    summary: 'The web UI: `/` and every page under `/ui/` (HTML), and its assets at `/ui/assets/{build}/{file}`',
    description:
      'Every page answers the same HTML document (no-cache, ETag; `Content-Security-Policy: default-src \'self\'`); its script draws the page from this API. Assets are immutable: their URLs carry a digest of the build. Not a JSON route.',
    access: { public: true },
    needs: 'none',
    responses: { 200: { description: 'the web UI', contentType: 'text/html; charset=utf-8', schema: { type: 'string' } } },
    errors: [404, 503],
    handler({ req, res, env }) {
      const p = req.path;
      const b = loadBundle();
      if (b instanceof Error && !warned) {
        warned = true;
        env.logger.warn('the web UI is not built (npm run build)', { err: b.message });
      }
      if (p.startsWith(ASSETS)) {
        const rest = p.slice(ASSETS.length);
        const slash = rest.indexOf('/');
        const asset = b instanceof Error || slash === -1 || rest.slice(0, slash) !== b.build ? undefined : b.assets.get(rest.slice(slash + 1));
        if (!asset) throw new CairnError('NOT_FOUND', 'no such asset of the web UI (an older build?)');
        send(req, res, asset.body, asset.type, asset.etag, { 'Cache-Control': 'public, max-age=31536000, immutable' });
        return undefined;
      }
      if (p.length > MAX_PAGE_PATH) throw new CairnError('NOT_FOUND', 'no such page');
      if (b instanceof Error) {
        res.setHeader('Cache-Control', 'no-store');
        res.status(503).type('text/plain').send('The web UI is not built on this server (npm run build).\n');
        return undefined;
      }
      send(req, res, b.html, 'text/html; charset=utf-8', b.htmlEtag, {
        'Cache-Control': 'no-cache',
        'Content-Security-Policy': CSP,
        'Referrer-Policy': 'no-referrer',
        'X-Frame-Options': 'DENY',
      });
      return undefined;
    },
  }),
];
