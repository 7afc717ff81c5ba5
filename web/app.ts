/**
 * The web UI's entry point: the page frame (header, navigation, main), the
 * router that maps each shareable URL (`/`, `/ui/…`) to a page, and link
 * handling through the History API. Links are real links (open in a new tab,
 * copy, middle-click all work); a plain click is handled here without
 * reloading the document.
 */
import { getToken, urls } from './api.js';
import { clear, errorBox, h, link } from './dom.js';
import type { PageContext } from './page.js';
import { heading } from './page.js';
import { commitPage } from './pages/commit.js';
import { diffPage } from './pages/diff.js';
import { historyPage, reflogPage } from './pages/history.js';
import { jobsPage, tokenPage, trafficPage } from './pages/ops.js';
import { repoPage, reposPage } from './pages/repos.js';
import { filePage, treePage } from './pages/tree.js';

type PageFn = (ctx: PageContext, ...params: string[]) => Promise<void>;

const SUM = '([0-9a-f]{64})';
const NAME = '([^/]+)';
const ROUTES: Array<[RegExp, PageFn]> = [
  [/^\/$/, reposPage],
  [/^\/ui$/, reposPage],
  [new RegExp(`^/ui/repos/${NAME}$`), repoPage],
  [new RegExp(`^/ui/repos/${NAME}/history$`), historyPage],
  [new RegExp(`^/ui/repos/${NAME}/reflog$`), reflogPage],
  [new RegExp(`^/ui/repos/${NAME}/commits/${SUM}$`), commitPage],
  [new RegExp(`^/ui/repos/${NAME}/commits/${SUM}/tree$`), treePage],
  [new RegExp(`^/ui/repos/${NAME}/commits/${SUM}/file$`), filePage],
  [new RegExp(`^/ui/repos/${NAME}/diff$`), diffPage],
  [new RegExp(`^/ui/repos/${NAME}/traffic$`), trafficPage],
  [/^\/ui\/jobs$/, jobsPage],
  [/^\/ui\/token$/, tokenPage],
];

/** Whether a path is one of the UI's pages (others — /api/, /repo/ — are left to the browser). */
function isUiPath(path: string): boolean {
  return path === '/' || path === '/ui' || path.startsWith('/ui/');
}

let main: HTMLElement;
let tokenLink: HTMLAnchorElement;
let current: AbortController | null = null;
let rendered = 0;

function frame(): void {
  const root = document.getElementById('app')!;
  main = h('main', { id: 'main', tabindex: -1 });
  tokenLink = link(urls.token(), 'Token');
  root.append(
    h('a', { class: 'skip', href: '/#main' }, 'Skip to content'),
    h(
      'header',
      { class: 'top' },
      h('nav', { 'aria-label': 'Site' }, h('ul', null, h('li', { class: 'brand' }, link(urls.home(), 'Cairn')), h('li', null, link(urls.home(), 'Repositories')), h('li', null, link(urls.jobs(), 'Jobs')), h('li', { class: 'token' }, tokenLink))),
    ),
    main,
  );
  // The skip link moves focus without changing the URL.
  root.querySelector('.skip')!.addEventListener('click', (ev) => {
    ev.preventDefault();
    main.focus();
  });
  showToken();
  document.addEventListener('cairn-token', showToken);
}

function showToken(): void {
  const set = !!getToken();
  tokenLink.textContent = set ? 'Token: set' : 'Token';
  tokenLink.title = set ? 'a token is kept for this tab; change or forget it' : 'type a token to see private repositories and to promote or roll back';
}

function navigate(url: string, opts: { replace?: boolean } = {}): void {
  if (opts.replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  void render(true);
}

async function render(moved: boolean): Promise<void> {
  current?.abort();
  const ac = new AbortController();
  current = ac;
  const n = ++rendered;
  const path = location.pathname;
  clear(main);
  delete main.dataset.ready;
  main.dataset.state = 'loading';
  const ctx: PageContext = {
    main,
    signal: ac.signal,
    query: new URLSearchParams(location.search),
    title: (t) => {
      document.title = `${t} · Cairn`;
    },
    navigate,
  };
  let fn: PageFn | undefined;
  let params: string[] = [];
  for (const [re, page] of ROUTES) {
    const m = re.exec(path);
    if (!m) continue;
    try {
      params = m.slice(1).map((p) => decodeURIComponent(p));
    } catch {
      break; // a malformed escape: no such page
    }
    fn = page;
    break;
  }
  try {
    if (!fn) {
      ctx.title('Not found');
      main.append(heading('No such page'), h('p', null, 'Nothing of the web UI is at this address. ', link(urls.home(), 'See the repositories.')));
    } else {
      await fn(ctx, ...params);
    }
    if (n !== rendered) return;
    main.dataset.state = 'ready';
  } catch (e) {
    if (n !== rendered || ac.signal.aborted) return;
    main.dataset.state = 'error';
    if (!main.querySelector('h1')) main.append(heading('Something went wrong'));
    main.append(errorBox(e));
  }
  main.dataset.ready = 'true';
  if (moved) {
    window.scrollTo(0, 0);
    (main.querySelector('h1') as HTMLElement | null)?.focus();
  }
}

function onClick(ev: MouseEvent): void {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = (ev.target as Element | null)?.closest?.('a');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !isUiPath(url.pathname)) return;
  if (url.hash && url.pathname === location.pathname && url.search === location.search) return;
  ev.preventDefault();
  navigate(url.pathname + url.search);
}

frame();
document.addEventListener('click', onClick);
window.addEventListener('popstate', () => void render(true));
void render(false);
