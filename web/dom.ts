/**
 * Small DOM helpers. Every piece of data reaches the page as a text node or
 * an attribute value set through the DOM (never markup): commit subjects,
 * file names and ref names are whatever a publisher put there.
 */

export type Child = Node | string | number | null | undefined | false | Child[];
export type Attrs = Record<string, string | number | boolean | null | undefined | ((ev: Event) => void)>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'href') el.setAttribute('href', safeHref(String(v)));
      else if (k.startsWith('on')) throw new Error(`attribute ${k} must be a function`);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Links go to this origin's paths only (a path we built: `/ui/…`, `/api/…`). */
export function safeHref(href: string): string {
  if (!href.startsWith('/') || href.startsWith('//') || href.startsWith('/\\')) throw new Error(`refusing a link that is not a local path: ${href.slice(0, 100)}`);
  return href;
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/** Replaces `el`'s content with `children` (text as text nodes). */
export function replace(el: Element, ...children: Child[]): void {
  clear(el);
  append(el, children);
}

/** `text` inside `<code>` (checksums, paths). */
export function code(text: string, title?: string): HTMLElement {
  return h('code', title ? { title } : null, text);
}

export function link(href: string, ...children: Child[]): HTMLAnchorElement {
  return h('a', { href }, ...children);
}

/** A table with a header row; rows go into the returned tbody. */
export function table(headers: string[], cls?: string): { table: HTMLTableElement; body: HTMLTableSectionElement } {
  const body = h('tbody');
  const t = h('table', cls ? { class: cls } : null, h('thead', null, h('tr', null, headers.map((x) => h('th', { scope: 'col' }, x)))), body);
  return { table: t, body };
}

export function row(...cells: Child[]): HTMLTableRowElement {
  return h('tr', null, cells.map((c) => h('td', null, c)));
}

/** A definition list of label → value pairs (values may be nodes); null values are left out. */
export function facts(pairs: Array<[string, Child]>): HTMLDListElement {
  const dl = h('dl', { class: 'facts' });
  for (const [k, v] of pairs) {
    if (v === null || v === undefined) continue;
    dl.append(h('dt', null, k), h('dd', null, v));
  }
  return dl;
}

export function shortSum(c: string | null | undefined): string {
  return c ? c.slice(0, 12) : '—';
}

export function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** A time: seconds since the epoch (commits) or an ISO 8601 string (ref log, jobs). */
export function fmtTime(t: number | string | null | undefined): string {
  if (t === null || t === undefined || t === '') return '—';
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function fmtMode(mode: number | null | undefined): string {
  if (typeof mode !== 'number') return '—';
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/** A paragraph saying what went wrong, announced to screen readers. */
export function errorBox(e: unknown): HTMLElement {
  return h('p', { class: 'error', role: 'alert' }, describe(e));
}

export function describe(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

export function note(text: Child, cls = 'note'): HTMLElement {
  return h('p', { class: cls }, text);
}
