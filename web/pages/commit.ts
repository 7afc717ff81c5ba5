/**
 * One commit: its fields, signatures (and whether each verifies with the
 * repository's keys), sizes, deltas to and from it, metadata; and the
 * operator's two writes from here: roll the ref it was reached from back to
 * it, or promote it to another ref. Both are compare-and-swap: they send the
 * ref's value as this page saw it, and a ref moved meanwhile is refused (409)
 * and shown.
 */
import { ApiError, api, getJson, sendJson, urls } from '../api.js';
import { code, describe, errorBox, facts, fmtBytes, fmtTime, h, link, note, replace, row, shortSum, table, type Child } from '../dom.js';
import { heading, outcome, tokenField, type PageContext } from '../page.js';

interface Signature {
  kind?: string;
  keyId?: string | null;
  valid?: boolean | null;
  [k: string]: unknown;
}

interface DeltaInfo {
  name?: string;
  from?: string | null;
  to?: string;
  size?: number;
}

interface CommitDetail {
  checksum?: string;
  commit?: string;
  parent: string | null;
  subject: string;
  body?: string;
  version?: string | null;
  timestamp: number;
  signatures?: Signature[] | { entries?: Signature[]; [k: string]: unknown };
  objects?: number | null;
  archivedBytes?: number | null;
  unpackedBytes?: number | null;
  sizesPending?: boolean;
  deltas?: { to?: DeltaInfo[]; from?: DeltaInfo[] };
  metadata?: Array<{ key: string; type?: string; value: unknown }> | Record<string, unknown>;
  rootTree?: string;
  contentChecksum?: string;
  [k: string]: unknown;
}

interface OperatorAnswer {
  ref: string;
  old: string | null;
  new: string | null;
  downgrade?: boolean;
  note?: string;
}

export async function commitPage(ctx: PageContext, repo: string, commit: string): Promise<void> {
  const ref = ctx.query.get('ref');
  ctx.title(`${shortSum(commit)} · ${repo}`);
  const d = await getJson<CommitDetail>(api.commit(repo, commit), ctx.signal);
  ctx.main.append(
    heading(['Commit ', h('span', { class: 'name' }, d.subject || shortSum(commit))], [link(urls.repo(repo), repo), ref ? [' · ', link(urls.history(repo, ref), `history of ${ref}`)] : null]),
    h(
      'nav',
      { class: 'subnav', 'aria-label': 'Commit' },
      h(
        'ul',
        null,
        h('li', null, link(urls.tree(repo, commit, '/', ref), 'Browse files')),
        d.parent ? h('li', null, link(urls.diff(repo, d.parent, commit), 'Changes from the parent')) : null,
        h('li', null, link(urls.diff(repo, null, commit), 'Compare with…')),
      ),
    ),
  );
  const sizes = h('dd', null);
  const showSizes = (x: CommitDetail) => {
    sizes.textContent = x.sizesPending || x.archivedBytes === null || x.archivedBytes === undefined
      ? 'being computed…'
      : `${x.objects ?? '?'} objects, ${fmtBytes(x.archivedBytes)} archived, ${fmtBytes(x.unpackedBytes)} unpacked`;
  };
  showSizes(d);
  const info = facts([
    ['Checksum', code(commit)],
    ['Parent', d.parent ? link(urls.commit(repo, d.parent, ref), code(d.parent)) : 'none (the first commit)'],
    ['Version', d.version ?? null],
    ['Date', fmtTime(d.timestamp)],
    ['Content checksum', d.contentChecksum ? code(d.contentChecksum) : null],
    ['Root tree', d.rootTree ? code(d.rootTree) : null],
  ]);
  info.append(h('dt', null, 'Size'), sizes);
  ctx.main.append(info);
  if (d.body) ctx.main.append(h('section', { 'aria-labelledby': 'body-h' }, h('h2', { id: 'body-h' }, 'Message'), h('pre', { class: 'body' }, d.body)));
  ctx.main.append(signaturesView(d), deltasView(repo, commit, d), metadataView(d));
  ctx.main.append(await operatorView(ctx, repo, commit, ref));

  // Sizes of a large commit are computed in the background: look again a few times.
  if (d.sizesPending) {
    void (async () => {
      for (let i = 0; i < 10 && !ctx.signal.aborted; i++) {
        await new Promise((r) => setTimeout(r, 1500 * (i + 1)));
        if (ctx.signal.aborted) return;
        const x = await getJson<CommitDetail>(api.commit(repo, commit), ctx.signal).catch(() => null);
        if (x && !x.sizesPending) return showSizes(x);
      }
    })();
  }
}

function signaturesView(d: CommitDetail): HTMLElement {
  const s = h('section', { 'aria-labelledby': 'sig-h' }, h('h2', { id: 'sig-h' }, 'Signatures'));
  const list = Array.isArray(d.signatures) ? d.signatures : Array.isArray(d.signatures?.entries) ? d.signatures.entries : [];
  if (list.length === 0) {
    s.append(note('Not signed.'));
    return s;
  }
  const t = table(['Kind', 'Key', 'Verifies with the repository’s keys']);
  for (const sig of list) {
    const valid = sig.valid === true ? 'yes' : sig.valid === false ? 'no' : 'unknown';
    const why = sig.valid === null || sig.valid === undefined ? ' (the repository has no key of this kind)' : typeof sig.error === 'string' && sig.error ? ` (${sig.error})` : '';
    t.body.append(row(String(sig.kind ?? '?'), sig.keyId ? code(String(sig.keyId)) : '—', [h('span', { class: `sig-${valid}` }, valid), why]));
  }
  s.append(t.table);
  return s;
}

function deltasView(repo: string, commit: string, d: CommitDetail): HTMLElement {
  const s = h('section', { 'aria-labelledby': 'deltas-h' }, h('h2', { id: 'deltas-h' }, 'Static deltas'));
  const to = d.deltas?.to ?? [];
  const from = d.deltas?.from ?? [];
  if (to.length + from.length === 0) {
    s.append(note('No static delta leads to or from this commit.'));
    return s;
  }
  const t = table(['Delta', 'From', 'To', 'Size']);
  const c = (x: string | null | undefined) => (x ? (x === commit ? 'this commit' : link(urls.commit(repo, x), code(shortSum(x), x))) : 'scratch');
  for (const x of [...to, ...from]) t.body.append(row(x.from ? 'update' : 'from scratch', c(x.from), c(x.to), fmtBytes(x.size)));
  s.append(t.table);
  return s;
}

function metadataView(d: CommitDetail): HTMLElement {
  const s = h('section', { 'aria-labelledby': 'md-h' }, h('h2', { id: 'md-h' }, 'Metadata'));
  const entries: Array<{ key: string; type?: string; value: unknown }> = Array.isArray(d.metadata)
    ? d.metadata
    : d.metadata && typeof d.metadata === 'object'
      ? Object.entries(d.metadata).map(([key, value]) => ({ key, value }))
      : [];
  if (entries.length === 0) {
    s.append(note('None.'));
    return s;
  }
  const t = table(['Key', 'Type', 'Value'], 'metadata');
  for (const e of entries) t.body.append(row(code(e.key), e.type ?? '', h('span', { class: 'json' }, typeof e.value === 'string' ? e.value : JSON.stringify(e.value))));
  s.append(t.table);
  return s;
}

/** The rollback and promote forms, with what the ref looked like when the page was drawn. */
async function operatorView(ctx: PageContext, repo: string, commit: string, ref: string | null): Promise<HTMLElement> {
  const s = h('section', { 'aria-labelledby': 'op-h', class: 'operator' }, h('h2', { id: 'op-h' }, 'Publish'));
  let refs: Record<string, string>;
  try {
    refs = (await getJson<{ refs: Record<string, string> }>(api.refs(repo), ctx.signal)).refs;
  } catch (e) {
    s.append(errorBox(e));
    return s;
  }
  if (ref) s.append(rollbackForm(ctx, repo, commit, ref, refs));
  s.append(promoteForm(ctx, repo, commit, ref, refs));
  return s;
}

function rollbackForm(ctx: PageContext, repo: string, commit: string, ref: string, refs: Record<string, string>): HTMLElement {
  const head = refs[ref];
  const box = h('div', { class: 'op' }, h('h3', null, `Roll ${ref} back to this commit`));
  if (!head) {
    box.append(note(['The ref ', code(ref), ' does not exist any more.']));
    return box;
  }
  if (head === commit) {
    box.append(note(['This commit is the head of ', code(ref), '.']));
    return box;
  }
  const tok = tokenField('rollback-token');
  const out = outcome();
  const submit = h('button', { type: 'submit', class: 'danger' }, `Roll back ${ref}`);
  const form = h(
    'form',
    { class: 'op-form', id: 'rollback' },
    h('p', null, code(ref), ' is at ', link(urls.commit(repo, head, ref), code(shortSum(head), head)), '. Rolling back moves it to ', code(shortSum(commit), commit), ', an earlier commit of its history; hosts that already have the newer one need ', code('--allow-downgrade'), ' to follow.'),
    tok.field,
    h('p', null, submit),
    out,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    tok.save();
    submit.disabled = true;
    out.replaceChildren(note('Rolling back…'));
    sendJson<OperatorAnswer>('POST', api.rollback(repo), { ref, commit, expected: head }, ctx.signal).then(
      (r) => {
        out.replaceChildren(
          h(
            'p',
            { class: 'ok' },
            code(r.ref),
            ' now points at ',
            link(urls.commit(repo, r.new ?? commit, r.ref), code(shortSum(r.new))),
            ' (was ',
            code(shortSum(r.old)),
            '). ',
            r.note ?? (r.downgrade ? 'Hosts need --allow-downgrade.' : ''),
          ),
          h('p', null, link(urls.history(repo, r.ref), `History of ${r.ref}`)),
        );
      },
      (e: unknown) => {
        submit.disabled = false;
        out.replaceChildren(failure(e));
      },
    );
  });
  box.append(form);
  return box;
}

function promoteForm(ctx: PageContext, repo: string, commit: string, fromRef: string | null, refs: Record<string, string>): HTMLElement {
  const box = h('div', { class: 'op' }, h('h3', null, 'Promote this commit to a ref'));
  const names = Object.keys(refs).sort();
  const datalist = h('datalist', { id: 'promote-refs' }, names.slice(0, 1000).map((n) => h('option', { value: n })));
  const target = h('input', { type: 'text', id: 'promote-to', name: 'to', list: 'promote-refs', required: true, size: 40, spellcheck: 'false', autocomplete: 'off' });
  const current = h('p', { class: 'sub', id: 'promote-current' });
  const showCurrent = () => {
    const v = target.value.trim();
    const at = v ? refs[v] : undefined;
    replace(current, !v ? '' : at ? [code(v), ' is at ', code(shortSum(at), at), at === commit ? ' (this commit already)' : ''] : [code(v), ' does not exist: promoting creates it.']);
  };
  target.addEventListener('input', showCurrent);
  const tok = tokenField('promote-token');
  const out = outcome();
  const submit = h('button', { type: 'submit' }, 'Promote');
  const form = h('form', { class: 'op-form', id: 'promote' }, h('p', { class: 'field' }, h('label', { for: 'promote-to' }, 'To ref '), target, datalist), current, tok.field, h('p', null, submit), out);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const to = target.value.trim();
    if (!to) return;
    tok.save();
    submit.disabled = true;
    out.replaceChildren(note('Promoting…'));
    const body: Record<string, unknown> = { commit, to, expected: refs[to] ?? null };
    if (fromRef && fromRef !== to) body.fromRef = fromRef;
    sendJson<OperatorAnswer>('POST', api.promote(repo), body, ctx.signal).then(
      (r) => {
        submit.disabled = false;
        refs[r.ref] = r.new ?? commit;
        showCurrent();
        out.replaceChildren(h('p', { class: 'ok' }, code(r.ref), ' now points at ', code(shortSum(r.new)), ' (was ', r.old ? code(shortSum(r.old)) : 'absent', '). ', link(urls.history(repo, r.ref), `History of ${r.ref}`)));
      },
      (e: unknown) => {
        submit.disabled = false;
        out.replaceChildren(failure(e));
      },
    );
  });
  box.append(form);
  return box;
}

/** A refused write, with the current value of a ref that moved meanwhile (409). */
function failure(e: unknown): HTMLElement {
  const parts: Child[] = [describe(e)];
  if (e instanceof ApiError && e.status === 409) parts.push(' The ref moved since this page was drawn: reload the page to see where it is now.');
  if (e instanceof ApiError && e.status === 401) parts.push(' Type a token with push scope for this ref.');
  return h('p', { class: 'error', role: 'alert' }, parts);
}
