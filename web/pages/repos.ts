/** The repository list (`/`) and one repository's page: its refs and storage statistics. */
import { api, getJson, urls, type Branch, type Page, type RepoInfo } from '../api.js';
import { code, errorBox, facts, fmtBytes, fmtTime, h, link, row, shortSum, table } from '../dom.js';
import { heading, pagedList, type PageContext } from '../page.js';

export async function reposPage(ctx: PageContext): Promise<void> {
  ctx.title('Repositories');
  ctx.main.append(heading('Repositories'));
  const { repos } = await getJson<{ repos: RepoInfo[] }>(api.repos(), ctx.signal);
  const t = table(['Repository', 'Visibility', 'Owned by Cairn', 'Clients pull from'], 'repos');
  t.body.dataset.rows = String(repos.length);
  t.body.dataset.state = 'complete';
  for (const r of repos) {
    t.body.append(row(link(urls.repo(r.name), r.name), r.private ? 'private' : 'public', r.owned ? 'yes' : 'no (served as it is)', code(new URL(r.url, location.origin).href)));
  }
  ctx.main.append(repos.length ? t.table : h('p', null, 'No repository you may read. Private repositories need a read token (Token, at the top).'));
}

export async function repoPage(ctx: PageContext, repo: string): Promise<void> {
  ctx.title(repo);
  ctx.main.append(
    heading(['Repository ', h('span', { class: 'name' }, repo)]),
    h(
      'nav',
      { class: 'subnav', 'aria-label': 'Repository' },
      h('ul', null, h('li', null, link(urls.reflog(repo), 'Ref log')), h('li', null, link(urls.diff(repo), 'Compare two commits')), h('li', null, link(urls.jobs(repo), 'Jobs'))),
    ),
  );
  const refs = h('section', { 'aria-labelledby': 'refs-h' }, h('h2', { id: 'refs-h' }, 'Refs'));
  const stats = h('section', { 'aria-labelledby': 'stats-h' }, h('h2', { id: 'stats-h' }, 'Storage'));
  ctx.main.append(refs, stats);

  // The statistics come when they come; the refs do not wait for them.
  void getJson<Record<string, unknown>>(api.stats(repo), ctx.signal).then(
    (s) => stats.append(statsView(s)),
    (e: unknown) => {
      if (!ctx.signal.aborted) stats.append(errorBox(e));
    },
  );

  const t = table(['Ref', 'Commit', 'Subject', 'Version', 'Date', 'Signed', 'Size', ''], 'refs');
  const list = pagedList<Branch>({
    noun: 'refs',
    into: t.body,
    signal: ctx.signal,
    load: (cursor, signal) => getJson<Page<Branch>>(api.branches(repo, cursor, 100), signal),
    render: (b) =>
      row(
        link(urls.history(repo, b.ref), b.ref),
        link(urls.commit(repo, b.commit, b.ref), code(shortSum(b.commit), b.commit)),
        b.subject ?? '',
        b.version ?? '',
        fmtTime(b.timestamp),
        b.signed ? 'signed' : 'unsigned',
        b.sizesPending ? 'being computed…' : typeof b.archivedBytes === 'number' ? `${fmtBytes(b.archivedBytes)} (${b.objects ?? '?'} objects)` : '—',
        link(urls.traffic(repo, b.ref), 'Traffic & deltas'),
      ),
  });
  refs.append(t.table, list.footer);
  await list.first;
}

const TYPE_ORDER = ['commit', 'commitmeta', 'dirtree', 'dirmeta', 'file', 'tombstone-commit'];

/** Storage figures: objects by type (count, bytes), refs, deltas. */
function statsView(s: Record<string, unknown>): HTMLElement {
  const out = h('div', { class: 'stats' });
  const cb = (v: unknown): string => {
    const o = v as { count?: unknown; bytes?: unknown } | null;
    return o && typeof o === 'object' ? `${Number(o.count ?? 0)} (${fmtBytes(Number(o.bytes ?? 0))})` : String(v ?? '—');
  };
  const objects = s.objects as Record<string, unknown> | undefined;
  if (objects && typeof objects === 'object') {
    const t = table(['Objects', 'Count (bytes as stored)']);
    const names = Object.keys(objects).sort((a, b) => (TYPE_ORDER.indexOf(a) + 99) % 99 - ((TYPE_ORDER.indexOf(b) + 99) % 99));
    for (const k of names) t.body.append(row(k, cb(objects[k])));
    if (s.objectsTotal) t.body.append(row(h('strong', null, 'all'), h('strong', null, cb(s.objectsTotal))));
    out.append(t.table);
  }
  out.append(
    facts([
      ['Refs', s.refs === undefined ? null : String(s.refs)],
      ['Deltas', s.deltas === undefined ? null : cb(s.deltas)],
      ['Unfinished delta files', s.deltaLeftovers === undefined ? null : cb(s.deltaLeftovers)],
      ['Computed', typeof s.computedAt === 'string' ? `${fmtTime(s.computedAt)}${typeof s.durationMs === 'number' ? ` in ${Math.round(s.durationMs)} ms` : ''}${s.truncated ? ' (lower bounds: too many files)' : ''}` : null],
    ]),
  );
  return out;
}
