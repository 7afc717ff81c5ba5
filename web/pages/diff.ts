/**
 * The difference between any two commits of a repository: a form (commit
 * checksums or ref names) and, when both are given, what `ostree diff` would
 * say — added, removed, modified with old and new sizes, mode, owner and
 * xattr changes — with unified text diffs of small text files.
 */
import { api, getJson, isChecksum, urls } from '../api.js';
import { code, fmtBytes, fmtMode, h, link, note, row, shortSum, table, type Child } from '../dom.js';
import { heading, type PageContext } from '../page.js';

interface Side {
  kind?: string;
  size?: number;
  checksum?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  symlinkTarget?: string | null;
  target?: string | null;
}

interface Entry {
  path: string;
  kind?: string;
  size?: number;
  checksum?: string;
}

interface Modified {
  path: string;
  old?: Side;
  new?: Side;
  xattrChanges?: Array<{ name: string }>;
  textDiff?: string | { status?: string; unified?: string | null } | null;
  text?: { status?: string; unified?: string | null } | null;
}

interface Diff {
  from: string;
  to: string;
  added: Array<Entry | string>;
  removed: Array<Entry | string>;
  modified: Modified[];
  truncated?: boolean;
}

/** Entries drawn per list before a "show all" button (a diff may hold 100,000 paths). */
const SHOWN = 500;

export async function diffPage(ctx: PageContext, repo: string): Promise<void> {
  const fromQ = ctx.query.get('from') ?? '';
  const toQ = ctx.query.get('to') ?? '';
  ctx.title(`compare · ${repo}`);
  ctx.main.append(heading('Compare two commits', ['in ', link(urls.repo(repo), repo)]));
  const from = h('input', { type: 'text', id: 'diff-from', name: 'from', size: 66, spellcheck: 'false', autocomplete: 'off', placeholder: 'commit checksum or ref' });
  const to = h('input', { type: 'text', id: 'diff-to', name: 'to', size: 66, spellcheck: 'false', autocomplete: 'off', placeholder: 'commit checksum or ref' });
  from.value = fromQ;
  to.value = toQ;
  const form = h(
    'form',
    { class: 'diff-form', method: 'get', action: urls.diff(repo) },
    h('p', { class: 'field' }, h('label', { for: 'diff-from' }, 'From '), from),
    h('p', { class: 'field' }, h('label', { for: 'diff-to' }, 'To '), to),
    h('p', null, h('button', { type: 'submit' }, 'Compare')),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    ctx.navigate(urls.diff(repo, from.value.trim(), to.value.trim()));
  });
  ctx.main.append(form);
  if (!fromQ || !toQ) return;

  // Ref names are resolved here, so the page's URL may name either.
  let refs: Record<string, string> | undefined;
  const resolve = async (v: string): Promise<string> => {
    if (isChecksum(v)) return v;
    refs ??= (await getJson<{ refs: Record<string, string> }>(api.refs(repo), ctx.signal)).refs;
    const c = refs[v];
    if (!c) throw new Error(`${v} is neither a commit checksum nor a ref of ${repo}`);
    return c;
  };
  const a = await resolve(fromQ);
  const b = await resolve(toQ);
  const d = await getJson<Diff>(api.diff(repo, a, b), ctx.signal);
  const result = h('section', { class: 'diff', 'aria-labelledby': 'diff-h' });
  result.append(
    h('h2', { id: 'diff-h' }, 'From ', link(urls.commit(repo, d.from), code(shortSum(d.from), d.from)), ' to ', link(urls.commit(repo, d.to), code(shortSum(d.to), d.to))),
    h('p', { class: 'counts' }, `${d.added.length} added, ${d.removed.length} removed, ${d.modified.length} modified`, d.truncated ? ' (the comparison stopped early: lists incomplete)' : ''),
  );
  const pathOf = (e: Entry | string) => (typeof e === 'string' ? e : e.path);
  const entryList = (title: string, cls: string, items: Array<Entry | string>, commit: string): HTMLElement => {
    const s = h('section', { class: `changes ${cls}` }, h('h3', null, `${title} (${items.length})`));
    if (items.length === 0) return s;
    const t = table(['Path', 'Kind', 'Size'], cls);
    const draw = (from: number, n: number) => {
      const frag = document.createDocumentFragment();
      for (const e of items.slice(from, from + n)) {
        const p = pathOf(e);
        const kind = typeof e === 'string' ? '' : (e.kind ?? '');
        frag.append(row(kind === 'dir' ? link(urls.tree(repo, commit, p), `${p}/`) : kind === 'symlink' ? p : link(urls.file(repo, commit, p), p), kind, typeof e === 'string' || e.kind !== 'file' ? '' : fmtBytes(e.size)));
      }
      t.body.append(frag);
    };
    draw(0, SHOWN);
    s.append(t.table);
    if (items.length > SHOWN) s.append(showRest(items.length - SHOWN, () => draw(SHOWN, items.length)));
    return s;
  };
  result.append(entryList('Added', 'added', d.added, d.to), entryList('Removed', 'removed', d.removed, d.from));

  const mod = h('section', { class: 'changes modified' }, h('h3', null, `Modified (${d.modified.length})`));
  const drawMods = (list: Modified[]) => {
    const frag = document.createDocumentFragment();
    for (const m of list) frag.append(modifiedView(repo, d, m));
    mod.append(frag);
  };
  drawMods(d.modified.slice(0, SHOWN));
  if (d.modified.length > SHOWN) mod.append(showRest(d.modified.length - SHOWN, () => drawMods(d.modified.slice(SHOWN))));
  result.append(mod);
  ctx.main.append(result);
}

function showRest(n: number, draw: () => void): HTMLElement {
  const b = h('button', { type: 'button' }, `Show ${n} more`);
  b.addEventListener('click', () => {
    b.remove();
    draw();
  });
  return h('p', null, b);
}

function modifiedView(repo: string, d: Diff, m: Modified): HTMLElement {
  const o = m.old ?? {};
  const n = m.new ?? {};
  const changes: Child[] = [];
  const add = (c: Child) => changes.push(h('li', null, c));
  if (o.kind !== n.kind) add(`kind: ${o.kind ?? '?'} → ${n.kind ?? '?'}`);
  if (o.size !== n.size && (o.kind === 'file' || n.kind === 'file')) add(`size: ${fmtBytes(o.size)} → ${fmtBytes(n.size)}`);
  if (o.mode !== n.mode) add(['mode: ', code(fmtMode(o.mode)), ' → ', code(fmtMode(n.mode))]);
  if (o.uid !== n.uid || o.gid !== n.gid) add(`owner: ${o.uid}:${o.gid} → ${n.uid}:${n.gid}`);
  const ot = o.symlinkTarget ?? o.target;
  const nt = n.symlinkTarget ?? n.target;
  if (ot !== nt) add(['symlink target: ', code(String(ot ?? '—')), ' → ', code(String(nt ?? '—'))]);
  for (const x of m.xattrChanges ?? []) add(['xattr changed: ', code(x.name)]);
  if (o.checksum !== n.checksum && o.kind === 'file' && n.kind === 'file' && o.size === n.size) add('content changed');
  const isFile = n.kind === 'file' || (n.kind === undefined && o.kind === undefined);
  const head = h(
    'h4',
    null,
    isFile ? link(urls.file(repo, d.to, m.path), m.path) : n.kind === 'dir' ? link(urls.tree(repo, d.to, m.path), `${m.path}/`) : m.path,
    o.kind === 'file' ? [' ', h('span', { class: 'sub' }, '(', link(urls.file(repo, d.from, m.path), 'before'), ')')] : null,
  );
  const box = h('article', { class: 'modified-entry' }, head, changes.length ? h('ul', { class: 'what' }, changes) : null);
  const td = m.textDiff ?? m.text;
  const unified = typeof td === 'string' ? td : (td?.unified ?? null);
  if (unified) box.append(unifiedView(unified));
  else if (td && typeof td === 'object' && td.status && td.status !== 'ok') box.append(note(`No text diff (${td.status}).`));
  return box;
}

/** A unified diff, one line per element, added and removed lines marked (by class and by their + and − signs). */
function unifiedView(text: string): HTMLElement {
  const pre = h('pre', { class: 'udiff', tabindex: 0 });
  const frag = document.createDocumentFragment();
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (const line of lines) {
    // jsdiff's header (`Index:`, `====`) says nothing the heading does not.
    if (line.startsWith('Index: ') || /^=+$/.test(line)) continue;
    const cls = line.startsWith('+++') || line.startsWith('---') ? 'file' : line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : line.startsWith('@@') ? 'hunk' : line.startsWith('=') || line.startsWith('Index:') ? 'file' : 'ctx';
    frag.append(h('span', { class: cls }, line), '\n');
  }
  pre.append(frag);
  return pre;
}
