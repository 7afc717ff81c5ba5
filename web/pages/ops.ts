/** Update traffic and delta coverage of a ref (with "build delta"), background jobs, and the token. */
import { api, getJson, getToken, isChecksum, sendJson, setToken, urls, type Job } from '../api.js';
import { code, describe, errorBox, facts, fmtBytes, fmtTime, h, link, note, replace, row, shortSum, table } from '../dom.js';
import { heading, outcome, tokenField, type PageContext } from '../page.js';

interface Traffic {
  window?: unknown;
  updates?: Array<{ from?: string | null; fromVersion?: string | null; to?: string | null; toVersion?: string | null; via?: string; count?: number; bytes?: number; missed?: number }>;
  objects?: { count?: number; bytes?: number };
  coverage?: Array<{ commit: string; version?: string | null; delta?: { exists?: boolean; size?: number | null } | null }>;
  scratch?: { exists?: boolean; size?: number | null };
  head?: string;
  headVersion?: string | null;
  [k: string]: unknown;
}

function windowText(w: unknown): string {
  if (typeof w === 'number') return `the last ${Math.round(w / 60)} minutes`;
  if (typeof w === 'string') return w;
  if (w && typeof w === 'object') {
    const o = w as Record<string, unknown>;
    if (typeof o.minutes === 'number') return `the last ${o.minutes} minutes`;
    if (typeof o.seconds === 'number') return `the last ${Math.round(o.seconds / 60)} minutes`;
    if (typeof o.ms === 'number') return `the last ${Math.round(o.ms / 60000)} minutes`;
    if (o.from || o.since) return `since ${fmtTime(String(o.from ?? o.since))}`;
  }
  return 'the recent window';
}

export async function trafficPage(ctx: PageContext, repo: string): Promise<void> {
  const ref = ctx.query.get('ref') ?? '';
  ctx.title(`${ref} · traffic · ${repo}`);
  ctx.main.append(heading(['Updates to ', h('span', { class: 'name' }, ref)], ['in ', link(urls.repo(repo), repo), ' · ', link(urls.history(repo, ref), 'history')]));
  const [t, refs] = await Promise.all([getJson<Traffic>(api.traffic(repo, ref), ctx.signal), getJson<{ refs: Record<string, string> }>(api.refs(repo), ctx.signal)]);
  const head = refs.refs[ref] ?? t.head;

  const served = h('section', { 'aria-labelledby': 'served-h' }, h('h2', { id: 'served-h' }, `Updates served over ${windowText(t.window)}`));
  const updates = t.updates ?? [];
  const commitCell = (c: string | null | undefined, version: string | null | undefined, none: string) =>
    c && isChecksum(c) ? [link(urls.commit(repo, c, ref), code(shortSum(c), c)), version ? ` (${version})` : ''] : c ? c : none;
  if (updates.length === 0) served.append(note('No update was served in this window.'));
  else {
    const tb = table(['Through', 'From', 'To', 'Updates', 'Bytes', 'Delta asked for but missing'], 'updates');
    for (const u of updates)
      tb.body.append(
        row(
          u.via === 'delta' ? 'static delta' : 'plain objects',
          u.via === 'delta' ? commitCell(u.from, u.fromVersion, 'scratch') : '—',
          commitCell(u.to, u.toVersion, '—'),
          String(u.count ?? 0),
          fmtBytes(u.bytes),
          u.missed ? String(u.missed) : '',
        ),
      );
    served.append(tb.table);
  }
  if (t.objects) served.append(facts([['Loose objects served for these updates', `${t.objects.count ?? 0} (${fmtBytes(t.objects.bytes)})`]]));

  const cov = h('section', { 'aria-labelledby': 'cov-h' }, h('h2', { id: 'cov-h' }, 'Delta coverage of the head'), head ? h('p', null, 'Head: ', link(urls.commit(repo, head, ref), code(shortSum(head), head)), t.headVersion ? ` (${t.headVersion})` : '') : null);
  const coverage = t.coverage ?? [];
  if (coverage.length === 0) cov.append(note('No earlier version to cover.'));
  else {
    const tb = table(['Version', 'Commit', 'Delta to the head', ''], 'coverage');
    for (const c of coverage) {
      const exists = !!c.delta?.exists;
      const cell = h('td', null);
      if (!exists && head && c.commit !== head) cell.append(buildButton(ctx, repo, c.commit, head));
      tb.body.append(
        h(
          'tr',
          null,
          h('td', null, c.version ?? ''),
          h('td', null, link(urls.commit(repo, c.commit, ref), code(shortSum(c.commit), c.commit))),
          h('td', null, c.commit === head ? 'the head itself' : exists ? `yes, ${fmtBytes(c.delta?.size)}` : h('strong', null, 'none')),
          cell,
        ),
      );
    }
    cov.append(tb.table);
  }
  if (t.scratch) cov.append(facts([['From scratch', t.scratch.exists ? `a delta of ${fmtBytes(t.scratch.size)}` : 'no delta']]));
  ctx.main.append(served, cov);
}

/** Queues a delta (push token); the answer links to the job. */
function buildButton(ctx: PageContext, repo: string, from: string, to: string): HTMLElement {
  const b = h('button', { type: 'button', 'aria-label': `build delta from ${shortSum(from)} to ${shortSum(to)}` }, 'Build delta');
  const out = h('span', { role: 'status' });
  b.addEventListener('click', () => {
    if (!getToken()) {
      out.replaceChildren(h('span', { class: 'error' }, 'Set a push token first (Token, at the top).'));
      return;
    }
    b.disabled = true;
    out.textContent = ' queuing…';
    sendJson<{ status: string; job?: Job; name?: string }>('POST', api.deltas(repo), { from, to }, ctx.signal).then(
      (r) => {
        replace(out, ' ', r.status === 'exists' ? 'exists already' : r.job ? [`${r.status}: job `, link(urls.jobs(repo), r.job.id)] : r.status);
      },
      (e: unknown) => {
        b.disabled = false;
        out.replaceChildren(' ', h('span', { class: 'error', role: 'alert' }, describe(e)));
      },
    );
  });
  return h('span', null, b, out);
}

const STATES = ['', 'queued', 'running', 'done', 'failed'];

export async function jobsPage(ctx: PageContext): Promise<void> {
  const repo = ctx.query.get('repo');
  const state = ctx.query.get('state');
  ctx.title('Jobs');
  ctx.main.append(heading('Background jobs', repo ? ['of ', link(urls.repo(repo), repo), ' · ', link(urls.jobs(), 'all repositories')] : 'static deltas being built, newest first'));
  const select = h('select', { id: 'jobs-state', name: 'state' }, STATES.map((s) => h('option', { value: s, selected: s === (state ?? '') }, s || 'any')));
  const form = h('form', { class: 'inline', method: 'get', action: urls.jobs(repo) }, h('label', { for: 'jobs-state' }, 'State '), select, ' ', h('button', { type: 'submit' }, 'Show'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    ctx.navigate(urls.jobs(repo, select.value || null));
  });
  ctx.main.append(form);
  const r = await getJson<{ jobs: Job[]; queue: Record<string, number> | null }>(api.jobs(repo, state, 200), ctx.signal);
  if (r.queue) ctx.main.append(facts([['Queue', `${r.queue.queued ?? 0} queued (at most ${r.queue.maxQueued ?? '?'}), ${r.queue.running ?? 0} running (at most ${r.queue.maxConcurrent ?? '?'} at once), ${r.queue.deciding ?? 0} being decided`]]));
  else ctx.main.append(note('This server runs no background jobs.'));
  const t = table(['Job', 'Repository', 'Kind', 'Delta', 'State', 'Queued', 'Finished', 'Outcome'], 'jobs');
  t.body.dataset.rows = String(r.jobs.length);
  t.body.dataset.state = 'complete';
  for (const j of r.jobs) {
    const p = (j.params ?? {}) as { from?: string | null; to?: string };
    const err = j.error ? (typeof j.error === 'string' ? j.error : `${j.error.code ?? ''} ${j.error.message ?? ''}`.trim()) : '';
    const delta = p.to ? [p.from ? code(shortSum(p.from), p.from) : 'scratch', ' → ', code(shortSum(p.to), p.to)] : '';
    const where = j.state === 'queued' && j.position ? `queued (#${j.position})` : j.state;
    t.body.append(
      row(
        code(j.id),
        j.repo ? link(urls.repo(j.repo), j.repo) : '',
        j.kind,
        delta,
        h('span', { class: `state-${j.state}` }, where),
        fmtTime(typeof j.createdAt === 'number' ? j.createdAt / 1000 : j.createdAt),
        fmtTime(typeof j.finishedAt === 'number' ? j.finishedAt / 1000 : j.finishedAt),
        err,
      ),
    );
  }
  ctx.main.append(r.jobs.length ? t.table : note('No job.'));
  const refresh = h('button', { type: 'button' }, 'Refresh');
  refresh.addEventListener('click', () => ctx.navigate(location.pathname + location.search, { replace: true }));
  ctx.main.append(h('p', null, refresh));
}

export async function tokenPage(ctx: PageContext): Promise<void> {
  ctx.title('Token');
  ctx.main.append(
    heading('Token'),
    h(
      'p',
      null,
      'A token (from ',
      code('cairn token'),
      ') is sent with every request of this tab as ',
      code('Authorization: Bearer'),
      ': read tokens show private repositories, push or admin tokens promote, roll back and build deltas. It is kept in this tab’s session storage only and is forgotten when the tab closes.',
    ),
  );
  const tok = tokenField('token-input');
  const out = outcome();
  const forget = h('button', { type: 'button' }, 'Forget the token');
  forget.addEventListener('click', () => {
    setToken(null);
    tok.input.value = '';
    out.replaceChildren(note('Forgotten.'));
  });
  const form = h('form', { id: 'token-form' }, tok.field, h('p', null, h('button', { type: 'submit' }, 'Keep for this tab'), ' ', forget), out);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = tok.input.value.trim();
    setToken(v || null);
    out.replaceChildren(note(v ? 'Kept for this tab.' : 'Forgotten.'));
  });
  ctx.main.append(form);
  try {
    const r = await getJson<{ repos: Array<{ name: string }> }>(api.repos(), ctx.signal);
    ctx.main.append(note(`With ${getToken() ? 'this token' : 'no token'}, ${r.repos.length} repositories are visible.`));
  } catch (e) {
    ctx.main.append(errorBox(e));
  }
}
