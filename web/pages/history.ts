/** A ref's history (following parents, a page at a time) with a compare form, and the ref log. */
import { api, getJson, urls, type HistoryItem, type HistoryPage, type Page, type RefChange } from '../api.js';
import { code, fmtTime, h, link, note, shortSum, table } from '../dom.js';
import { heading, pagedList, type PageContext } from '../page.js';

export async function historyPage(ctx: PageContext, repo: string): Promise<void> {
  const ref = ctx.query.get('ref') ?? '';
  ctx.title(`${ref} · history · ${repo}`);
  ctx.main.append(
    heading(['History of ', h('span', { class: 'name' }, ref)], ['in ', link(urls.repo(repo), repo)]),
    h(
      'nav',
      { class: 'subnav', 'aria-label': 'Ref' },
      h('ul', null, h('li', null, link(urls.traffic(repo, ref), 'Traffic & deltas')), h('li', null, link(urls.reflog(repo, ref), 'Ref log of this ref'))),
    ),
  );
  if (!ref) {
    ctx.main.append(note('No ref named (?ref=…).', 'error'));
    return;
  }
  const form = h('form', { class: 'compare', action: urls.diff(repo), method: 'get' });
  const t = table(['From', 'To', 'Commit', 'Subject', 'Version', 'Date', 'Signed', ''], 'history');
  const submit = h('button', { type: 'submit' }, 'Compare selected');
  form.append(h('p', null, 'Pick two commits (From, To) and compare them: ', submit), t.table);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const fd = new FormData(form);
    ctx.navigate(urls.diff(repo, String(fd.get('from') ?? ''), String(fd.get('to') ?? '')));
  });
  const end = h('div', { class: 'history-end' });
  const radio = (name: 'from' | 'to', c: string, checked: boolean) =>
    h('input', { type: 'radio', name, value: c, checked, 'aria-label': `${name === 'from' ? 'compare from' : 'compare to'} ${shortSum(c)}` });
  const list = pagedList<HistoryItem>({
    noun: 'commits',
    into: t.body,
    signal: ctx.signal,
    load: (cursor, signal) => getJson<HistoryPage>(api.history(repo, ref, cursor, 100), signal),
    render: (c, i) =>
      h(
        'tr',
        null,
        h('td', null, radio('from', c.commit, i === 1)),
        h('td', null, radio('to', c.commit, i === 0)),
        h('td', null, link(urls.commit(repo, c.commit, ref), code(shortSum(c.commit), c.commit))),
        h('td', { class: 'subject' }, c.subject),
        h('td', null, c.version ?? ''),
        h('td', null, fmtTime(c.timestamp)),
        h('td', null, c.signed ? 'signed' : 'unsigned'),
        h('td', null, c.parent ? link(urls.diff(repo, c.parent, c.commit), 'Changes') : ''),
      ),
    onPage: (page) => {
      const p = page as HistoryPage;
      if (p.end === 'root') end.replaceChildren(note('The first commit of this history.'));
      else if (p.end === 'missing') end.replaceChildren(note(['The history goes on with ', code(p.missing ?? '?'), ', which is not in this repository (a shallow copy, or pruned).']));
    },
  });
  ctx.main.append(form, list.footer, end);
  await list.first;
}

export async function reflogPage(ctx: PageContext, repo: string): Promise<void> {
  const ref = ctx.query.get('ref');
  ctx.title(`ref log · ${repo}`);
  ctx.main.append(heading(['Ref log', ref ? [' of ', h('span', { class: 'name' }, ref)] : null], ['in ', link(urls.repo(repo), repo), '; what moved when, newest first']));
  const input = h('input', { type: 'text', id: 'reflog-ref', name: 'ref', size: 40, spellcheck: 'false' });
  input.value = ref ?? '';
  const form = h('form', { class: 'inline', method: 'get', action: urls.reflog(repo) }, h('label', { for: 'reflog-ref' }, 'Ref '), input, ' ', h('button', { type: 'submit' }, 'Show'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    ctx.navigate(urls.reflog(repo, input.value.trim() || null));
  });
  const t = table(['Time', 'Ref', 'From', 'To', 'By'], 'reflog');
  const commitCell = (c: string | null, r: string) => (c ? link(urls.commit(repo, c, r), code(shortSum(c), c)) : h('em', null, 'none'));
  const list = pagedList<RefChange>({
    noun: 'moves',
    into: t.body,
    signal: ctx.signal,
    load: async (cursor, signal) => {
      const p = await getJson<{ entries: RefChange[]; next: string | null }>(api.reflog(repo, ref, cursor, 100), signal);
      return { items: p.entries, next: p.next } satisfies Page<RefChange>;
    },
    render: (e) =>
      h(
        'tr',
        null,
        h('td', null, fmtTime(e.time)),
        h('td', null, link(urls.history(repo, e.ref), e.ref)),
        h('td', null, commitCell(e.old, e.ref)),
        h('td', null, commitCell(e.new, e.ref)),
        h('td', null, e.actor ?? ''),
      ),
  });
  ctx.main.append(form, t.table, list.footer);
  await list.first;
}
