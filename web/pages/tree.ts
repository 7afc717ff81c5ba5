/**
 * A commit's tree, one directory at a time (read a page at a time: a
 * 100,000-file directory costs what the operator scrolls through), and one
 * file: shown as text when the server says it is small UTF-8 text, else
 * offered for download.
 */
import { ApiError, api, getJson, getRaw, urls, type TreeItem, type TreePage } from '../api.js';
import { code, errorBox, fmtBytes, fmtMode, h, link, note, shortSum, table, type Child } from '../dom.js';
import { heading, pagedList, type PageContext } from '../page.js';

/** `/a/b` → `/`, `/a`, `/a/b` as links. */
function crumbs(repo: string, commit: string, path: string, ref: string | null, last: 'dir' | 'file'): HTMLElement {
  const segs = path.split('/').filter(Boolean);
  const nav = h('nav', { class: 'crumbs', 'aria-label': 'Path' });
  const ol = h('ol');
  ol.append(h('li', null, segs.length === 0 && last === 'dir' ? h('span', { 'aria-current': 'page' }, '/') : link(urls.tree(repo, commit, '/', ref), '/')));
  segs.forEach((s, i) => {
    const p = `/${segs.slice(0, i + 1).join('/')}`;
    const isLast = i === segs.length - 1;
    ol.append(h('li', null, isLast ? h('span', { 'aria-current': 'page' }, s) : link(urls.tree(repo, commit, p, ref), s)));
  });
  nav.append(ol);
  return nav;
}

function join(dir: string, name: string): string {
  return dir === '/' || dir === '' ? `/${name}` : `${dir}/${name}`;
}

function normalise(path: string | null): string {
  const segs = (path ?? '/').split('/').filter(Boolean);
  return `/${segs.join('/')}`;
}

export async function treePage(ctx: PageContext, repo: string, commit: string): Promise<void> {
  const ref = ctx.query.get('ref');
  const path = normalise(ctx.query.get('path'));
  ctx.title(`${path} · ${shortSum(commit)} · ${repo}`);
  ctx.main.append(
    heading(['Files of ', link(urls.commit(repo, commit, ref), code(shortSum(commit), commit))], [link(urls.repo(repo), repo), ref ? [' · ', link(urls.history(repo, ref), ref)] : null]),
    crumbs(repo, commit, path, ref, 'dir'),
  );
  const t = table(['Name', 'Kind', 'Mode', 'Owner', 'Size', 'Extended attributes', 'Checksum'], 'tree');
  const list = pagedList<TreeItem>({
    noun: 'entries',
    into: t.body,
    signal: ctx.signal,
    empty: 'An empty directory.',
    // A first page soon on screen, then bigger ones.
    load: (cursor, signal) => getJson<TreePage>(api.tree(repo, commit, path, cursor, cursor ? 1000 : 200), signal),
    render: (e) => {
      const p = join(path, e.name);
      let name: Child;
      if (e.kind === 'dir') name = link(urls.tree(repo, commit, p, ref), `${e.name}/`);
      else if (e.kind === 'file') name = link(urls.file(repo, commit, p, ref), e.name);
      else name = [h('span', null, e.name), ' → ', code(e.target ?? '?')];
      const xattrs = e.xattrs ?? [];
      return h(
        'tr',
        { class: `kind-${e.kind}` },
        h('td', { class: 'name' }, name),
        h('td', null, e.kind),
        h('td', null, code(fmtMode(e.mode))),
        h('td', null, `${e.uid}:${e.gid}`),
        h('td', { class: 'num' }, e.kind === 'file' ? fmtBytes(e.size) : ''),
        h('td', null, xattrs.length ? xattrs.map((x) => h('span', { class: 'xattr', title: x.text ?? '' }, x.name)) : ''),
        h('td', null, code(shortSum(e.checksum), e.checksum)),
      );
    },
  });
  ctx.main.append(t.table, list.footer);
  await list.first;
}

/** Bytes shown as text at most (the server answers `inline` only for small text anyway). */
const MAX_SHOWN = 1024 * 1024;

export async function filePage(ctx: PageContext, repo: string, commit: string): Promise<void> {
  const ref = ctx.query.get('ref');
  const path = normalise(ctx.query.get('path'));
  const name = path.slice(path.lastIndexOf('/') + 1);
  ctx.title(`${path} · ${shortSum(commit)} · ${repo}`);
  ctx.main.append(
    heading(['File ', h('span', { class: 'name' }, name)], ['in ', link(urls.commit(repo, commit, ref), code(shortSum(commit), commit)), ' · ', link(urls.repo(repo), repo)]),
    crumbs(repo, commit, path, ref, 'file'),
  );
  const download = h('button', { type: 'button' }, 'Download');
  const status = h('span', { role: 'status' });
  download.addEventListener('click', () => {
    // Fetched with the token (private repositories), then saved from memory.
    status.textContent = 'Downloading…';
    getRaw(api.file(repo, commit, path), ctx.signal)
      .then((res) => res.blob())
      .then((blob) => {
        const a = h('a', { href: '/', download: name || 'file' });
        a.href = URL.createObjectURL(blob);
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
        status.textContent = `Downloaded ${fmtBytes(blob.size)}.`;
      })
      .catch((e: unknown) => {
        status.replaceChildren(errorBox(e));
      });
  });
  ctx.main.append(h('p', { class: 'actions' }, download, ' ', status));
  try {
    const res = await getRaw(api.file(repo, commit, path, true), ctx.signal);
    const type = res.headers.get('Content-Type') ?? '';
    if (!type.startsWith('text/plain')) {
      ctx.main.append(note('Not shown: not small UTF-8 text. Download it instead.'));
      return;
    }
    const text = await res.text();
    const pre = h('pre', { class: 'file', tabindex: 0, 'aria-label': `contents of ${name}` }, text.length > MAX_SHOWN ? text.slice(0, MAX_SHOWN) : text);
    ctx.main.append(pre);
    if (text.length > MAX_SHOWN) ctx.main.append(note('Cut short here; download the file for the rest.'));
  } catch (e) {
    // Binary or large files are refused inline (4xx): offer the download.
    if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 404 && e.status !== 401 && e.status !== 403) {
      ctx.main.append(note(['Not shown: ', e.message, '. Download it instead.']));
      return;
    }
    throw e;
  }
}

