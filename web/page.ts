/**
 * What a page gets (its place in the document, the URL's parts, a signal that
 * aborts when the operator goes elsewhere) and the pieces pages share: the
 * paged list that renders one API page at a time, the token field of the
 * operator forms.
 */
import { getToken, setToken, type Page } from './api.js';
import { errorBox, h, type Child } from './dom.js';

export interface PageContext {
  main: HTMLElement;
  /** Aborted when another page is shown: fetches stop, lists stop loading. */
  signal: AbortSignal;
  query: URLSearchParams;
  /** Sets the document title (and the page's h1 when `heading` is given). */
  title(text: string): void;
  /** Shows another page of the UI (History API). */
  navigate(url: string, opts?: { replace?: boolean }): void;
}

/** The page's heading: focused after a navigation, so keyboard and screen-reader users start there. */
export function heading(text: Child, sub?: Child): HTMLElement {
  return h('header', { class: 'page-head' }, h('h1', { tabindex: -1 }, text), sub ? h('p', { class: 'sub' }, sub) : null);
}

export interface ListOptions<T> {
  /** One page from the API (`cursor` null for the first). */
  load(cursor: string | null, signal: AbortSignal): Promise<Page<T>>;
  /** One row (appended to `into`). */
  render(item: T, index: number): Node;
  /** Where rows go: a tbody, a ul. */
  into: HTMLElement;
  signal: AbortSignal;
  /** What the list is of, for the status line ("commits", "entries"). */
  noun: string;
  /** Told of each page after it is rendered (history ends, counts). */
  onPage?(page: Page<T>, shown: number): void;
  /** Shown instead of an empty list. */
  empty?: string;
}

export interface List {
  /** The status line and the "Load more" button, to put after the list. */
  footer: HTMLElement;
  /** Resolves once the first page is rendered (rejects with its error). */
  first: Promise<void>;
}

/**
 * A list read page by page through the API's cursors: the first page at once,
 * the next when the operator presses "Load more" or scrolls near the end
 * (never everything: a 100,000-entry directory is read as the operator goes).
 * Each page's rows are built off-document and added in one go.
 */
export function pagedList<T>(o: ListOptions<T>): List {
  const status = h('span', { class: 'status', role: 'status' });
  const more = h('button', { type: 'button', class: 'more', hidden: true }, 'Load more');
  const footer = h('div', { class: 'list-foot' }, status, ' ', more);
  let next: string | null = null;
  let shown = 0;
  let loading: Promise<void> | null = null;
  o.into.dataset.rows = '0';
  o.into.dataset.state = 'loading';

  const loadPage = (cursor: string | null): Promise<void> => {
    more.disabled = true;
    status.textContent = shown === 0 ? `Loading ${o.noun}…` : `${shown} ${o.noun} shown; loading more…`;
    return o.load(cursor, o.signal).then(
      (page) => {
        if (o.signal.aborted) return;
        const frag = document.createDocumentFragment();
        for (const item of page.items) frag.appendChild(o.render(item, shown++));
        o.into.appendChild(frag);
        next = page.next;
        o.into.dataset.rows = String(shown);
        o.into.dataset.state = next ? 'partial' : 'complete';
        status.textContent = shown === 0 && !next ? (o.empty ?? `No ${o.noun}.`) : next ? `${shown} ${o.noun} shown.` : `All ${shown} ${o.noun} shown.`;
        more.hidden = !next;
        more.disabled = false;
        o.onPage?.(page, shown);
        // The moment the operator first sees the list (bench:ui reads it).
        if (cursor === null) performance.mark('cairn:list-rendered');
      },
      (e: unknown) => {
        if (o.signal.aborted) return;
        o.into.dataset.state = 'error';
        status.textContent = '';
        footer.insertBefore(errorBox(e), status);
        more.hidden = !next;
        more.disabled = false;
        throw e;
      },
    );
  };
  const loadMore = () => {
    if (loading || !next || o.signal.aborted) return;
    loading = loadPage(next)
      .catch(() => undefined)
      .finally(() => {
        loading = null;
      });
  };
  more.addEventListener('click', loadMore);
  const first = loadPage(null);
  // Scrolling near the end loads the next page (the button stays for the keyboard).
  if ('IntersectionObserver' in window) {
    const io = new IntersectionObserver((es) => {
      if (es.some((e) => e.isIntersecting)) loadMore();
    }, { rootMargin: '800px 0px' });
    first.then(
      () => {
        if (!o.signal.aborted) io.observe(footer);
      },
      () => undefined,
    );
    o.signal.addEventListener('abort', () => io.disconnect());
  }
  return { footer, first };
}

/**
 * The token input of an operator form: a password field holding this tab's
 * token (sessionStorage), which the form saves when submitted.
 */
export function tokenField(id: string): { field: HTMLElement; input: HTMLInputElement; save(): void } {
  const input = h('input', { type: 'password', id, name: 'token', autocomplete: 'off', spellcheck: 'false', size: 40, placeholder: 'push or admin token' });
  input.value = getToken() ?? '';
  const field = h('p', { class: 'field' }, h('label', { for: id }, 'Token '), input);
  return {
    field,
    input,
    save() {
      const v = input.value.trim();
      if (v && v !== getToken()) setToken(v);
    },
  };
}

/** A status line for a form's outcome (polite live region). */
export function outcome(): HTMLElement {
  return h('div', { class: 'outcome', role: 'status', 'aria-live': 'polite' });
}
