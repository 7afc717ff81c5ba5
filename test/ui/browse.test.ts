// The web UI in a real browser (issue 10 item 5): Debian's Chromium, driven by
// playwright-core, against `cairn serve` with a repository whose history was
// published by `cairn commit`: from the repository list to a commit's tree, to a
// file, to a diff, and a rollback with a token typed into the page, all by
// clicking real links and submitting forms with Enter. A commit subject and a
// file name carry markup that would run script if the page ever parsed data as
// HTML: it must show as text and nothing may run. Screenshots go to
// test-output/ui/.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { Page } from 'playwright-core';
import { projectRoot, startCairn, type CairnProcess } from '../helpers/cairn-process';
import { makeTempDir, removeTempDirs } from '../helpers/ostree';
import { launchChromium, outputDir, pageDrawn, watchPage } from './browser';

const run = promisify(execFile);
/** The CLI of the server under test (CAIRN_E2E_SERVER, as startCairn, else bin/cairn.js). */
const cairn = async (args: string[]) => (await run(process.execPath, [process.env.CAIRN_E2E_SERVER ?? path.join(projectRoot(), 'bin', 'cairn.js'), ...args])).stdout.trim();

after(removeTempDirs);

/** Runs `window.__pwned = N` if ever parsed as HTML (an onerror of an image that fails to load). */
const HOSTILE_SUBJECT = 'v3 <img src=x onerror="window.__pwned=1"> "quoted" & more';
const HOSTILE_NAME = '<img src=x onerror=window.__pwned=2>.txt';
const HOSTILE_TEXT = '<script>window.__pwned=3</script><b>not bold</b>\n';

async function writeTree(dir: string, version: number): Promise<void> {
  const w = async (rel: string, text: string, mode = 0o644) => {
    const p = path.join(dir, rel);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, text);
    await fsp.chmod(p, mode);
  };
  await w('etc/os-release', `ID=cairntest\nVERSION_ID=${version}\nPRETTY_NAME="Cairn test ${version}"\n`);
  await w('usr/bin/tool', `#!/bin/sh\necho tool ${version}\n`, 0o755);
  await w('usr/share/doc/README', `Cairn UI test tree\n${'same line\n'.repeat(20)}version ${version}\n`);
  for (let i = 0; i < 30; i++) await w(`usr/share/many/file-${String(i).padStart(2, '0')}`, `file ${i}\n`);
  if (version >= 2) await w(`usr/share/doc/${HOSTILE_NAME}`, HOSTILE_TEXT);
  if (version >= 3) await w('etc/added-in-v3', 'new\n');
}

async function drawn(page: Page, what: string): Promise<void> {
  const state = await pageDrawn(page);
  if (state !== 'ready') throw new Error(`${what}: the page says ${state}: ${await page.textContent('main')}`);
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(outputDir(), `${name}.png`), fullPage: true });
}

test('web UI: repositories → refs → history → commit → tree → file, a diff, and a rollback with a token', { timeout: 240_000 }, async () => {
  const work = await makeTempDir('cairn-ui-');
  const data = path.join(work, 'data');
  await cairn(['init-repo', 'os', '--data', data]);
  // Deltas only from a ref's previous head (no older commits, no scratch), so v1 → v3 is missing and asked for from the UI.
  const settingsFile = path.join(data, 'settings', 'os.json');
  const settings = JSON.parse(await fsp.readFile(settingsFile, 'utf8')) as { deltas: { scratch: boolean; previousCommits: number } };
  settings.deltas = { scratch: false, previousCommits: 0 };
  await fsp.writeFile(settingsFile, JSON.stringify(settings));
  const commits: string[] = [];
  for (const v of [1, 2, 3]) {
    const src = path.join(work, `v${v}`);
    await writeTree(src, v);
    commits.push(await cairn(['commit', '--data', data, '--repo', 'os', '-b', 'os/stable', '--tree', src, '-s', v === 3 ? HOSTILE_SUBJECT : `v${v}`, '--version', String(v)]));
  }
  const [c1, c2, c3] = commits as [string, string, string];
  for (const c of commits) assert.match(c, /^[0-9a-f]{64}$/);
  const token = await cairn(['token', '--data', data, '--scope', 'push', '--repo', 'os', '--prefix', 'os/', '--ttl', '1h', '--sub', 'ui-test']);

  let server: CairnProcess | undefined;
  const browser = await launchChromium();
  try {
    server = await startCairn({ dataDir: data });
    const base = server.url;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const watch = watchPage(page);

    // The repository list at /.
    const home = await page.goto(`${base}/`);
    assert.equal(home?.status(), 200);
    assert.match((await home!.allHeaders())['content-security-policy'] ?? '', /default-src 'self'/);
    await drawn(page, 'repositories');
    assert.equal(await page.title(), 'Repositories · Cairn');
    await shot(page, '1-repositories');

    // → the repository: its refs with the head's (hostile) subject, as text.
    await page.click('table.repos a:text-is("os")');
    await drawn(page, 'repository');
    assert.equal(new URL(page.url()).pathname, '/ui/repos/os');
    const refRow = page.locator('table.refs tbody tr', { hasText: 'os/stable' });
    await refRow.waitFor();
    const refText = (await refRow.textContent()) ?? '';
    assert.ok(refText.includes(HOSTILE_SUBJECT), refText);
    assert.equal(await page.locator('main img').count(), 0, 'no markup from the data');
    // The focus moved to the new page's heading (keyboard users start there).
    assert.equal(await page.evaluate(() => document.activeElement?.tagName), 'H1');
    await shot(page, '2-repository');

    // → the ref's history: three commits, newest first.
    await refRow.locator('a', { hasText: 'os/stable' }).click();
    await drawn(page, 'history');
    assert.equal(await page.getAttribute('table.history tbody', 'data-rows'), '3');
    assert.equal(await page.getAttribute('table.history tbody', 'data-state'), 'complete');
    const subjects = await page.locator('table.history tbody td.subject').allTextContents();
    assert.deepEqual(subjects, [HOSTILE_SUBJECT, 'v2', 'v1']);
    assert.match((await page.textContent('main')) ?? '', /The first commit of this history/);
    await shot(page, '3-history');

    // → the head commit: its subject as the heading, signatures, no markup.
    await page.click(`table.history a[href*="/commits/${c3}"]`);
    await drawn(page, 'commit');
    assert.equal(new URL(page.url()).pathname, `/ui/repos/os/commits/${c3}`);
    assert.equal((await page.textContent('main h1'))!.trim(), `Commit ${HOSTILE_SUBJECT}`);
    assert.match((await page.textContent('main'))!, new RegExp(c2), 'the parent is shown');
    assert.equal(await page.locator('main img').count(), 0);
    await shot(page, '4-commit');

    // → its tree, down to usr/share/doc, by links.
    await page.click('a:text-is("Browse files")');
    await drawn(page, 'tree /');
    for (const dir of ['usr/', 'share/', 'doc/']) {
      await page.click(`table.tree a:text-is("${dir}")`);
      await drawn(page, `tree ${dir}`);
    }
    assert.equal(new URL(page.url()).searchParams.get('path'), '/usr/share/doc');
    const names = await page.locator('table.tree tbody td.name').allTextContents();
    assert.deepEqual(names.sort(), ['README', HOSTILE_NAME].sort());
    assert.equal(await page.locator('main img').count(), 0, 'the file name is text');
    await shot(page, '5-tree');

    // → the file with the hostile name: its content shown as text.
    await page.click(`table.tree a:text-is("${HOSTILE_NAME}")`);
    await drawn(page, 'file');
    assert.equal(await page.textContent('pre.file'), HOSTILE_TEXT);
    assert.equal(await page.locator('main script, main b').count(), 0);
    await shot(page, '6-file');

    // The same page at its URL, loaded afresh (a shared link), shows the same.
    await page.goto(page.url());
    await drawn(page, 'file, reloaded');
    assert.equal(await page.textContent('pre.file'), HOSTILE_TEXT);
    // An ordinary file.
    await page.goto(`${base}/ui/repos/os/commits/${c1}/file?path=/etc/os-release`);
    await drawn(page, 'os-release');
    assert.match((await page.textContent('pre.file'))!, /VERSION_ID=1/);

    // → a diff of v1 and v3, picked in the history's compare form.
    await page.goto(`${base}/ui/repos/os/history?ref=os%2Fstable`);
    await drawn(page, 'history again');
    await page.check(`input[name="from"][value="${c1}"]`);
    await page.check(`input[name="to"][value="${c3}"]`);
    await page.click('button:text-is("Compare selected")');
    await drawn(page, 'diff');
    const u = new URL(page.url());
    assert.equal(u.pathname, '/ui/repos/os/diff');
    assert.deepEqual([u.searchParams.get('from'), u.searchParams.get('to')], [c1, c3]);
    assert.equal((await page.textContent('p.counts'))!.trim(), '2 added, 0 removed, 3 modified');
    const added = await page.locator('table.added tbody td:first-child').allTextContents();
    assert.deepEqual(added.sort(), ['/etc/added-in-v3', `/usr/share/doc/${HOSTILE_NAME}`].sort());
    const osRelease = page.locator('article.modified-entry', { hasText: '/etc/os-release' });
    assert.deepEqual(await osRelease.locator('pre.udiff span.del').allTextContents(), ['-VERSION_ID=1', '-PRETTY_NAME="Cairn test 1"']);
    assert.deepEqual(await osRelease.locator('pre.udiff span.add').allTextContents(), ['+VERSION_ID=3', '+PRETTY_NAME="Cairn test 3"']);
    assert.equal(await page.locator('main img, main script').count(), 0);
    await shot(page, '7-diff');

    // A diff named by refs and checksums in the URL (typed into the form, submitted with Enter).
    await page.fill('#diff-from', c2);
    await page.fill('#diff-to', 'os/stable');
    await page.press('#diff-to', 'Enter');
    await drawn(page, 'diff by ref');
    assert.equal((await page.textContent('p.counts'))!.trim(), '1 added, 0 removed, 3 modified');

    // → roll os/stable back to v2: from the history, the commit page's form, the token typed in, Enter.
    await page.goto(`${base}/ui/repos/os/history?ref=os%2Fstable`);
    await drawn(page, 'history before rollback');
    await page.click(`table.history a[href*="/commits/${c2}"]`);
    await drawn(page, 'commit v2');
    assert.equal(new URL(page.url()).searchParams.get('ref'), 'os/stable');
    await page.locator('#rollback').waitFor();
    assert.match((await page.textContent('#rollback'))!, /--allow-downgrade/);
    await page.fill('#rollback-token', token);
    await page.press('#rollback-token', 'Enter');
    const ok = page.locator('#rollback .ok');
    await ok.waitFor({ timeout: 30_000 });
    const okText = (await ok.textContent())!;
    assert.ok(okText.includes(c2.slice(0, 12)) && okText.includes(c3.slice(0, 12)), okText);
    assert.match(okText, /allow-downgrade/);
    await shot(page, '8-rollback');
    // The token is kept for the tab (sessionStorage), and the header says so.
    assert.equal(await page.evaluate(() => sessionStorage.getItem('cairn.token')), token);
    assert.equal((await page.textContent('header.top .token'))!.trim(), 'Token: set');

    // The ref moved, as the API says; the history now starts at v2.
    const refs = (await (await fetch(`${base}/api/repos/os/refs`)).json()) as { refs: Record<string, string> };
    assert.equal(refs.refs['os/stable'], c2);
    await page.click('#rollback a:text-is("History of os/stable")');
    await drawn(page, 'history after rollback');
    assert.deepEqual(await page.locator('table.history tbody td.subject').allTextContents(), ['v2', 'v1']);

    // A second rollback from a page drawn before the first (stale expected) is refused, and said so.
    await page.goto(`${base}/ui/repos/os/commits/${c1}?ref=os%2Fstable`);
    await drawn(page, 'commit v1');
    await fetch(`${base}/api/repos/os/refs`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify({ updates: [{ ref: 'os/stable', commit: c3, expected: c2 }] }),
    }).then(async (r) => assert.equal(r.status, 200, await r.text()));
    await page.press('#rollback-token', 'Enter');
    const refused = page.locator('#rollback .error');
    await refused.waitFor();
    assert.match((await refused.textContent())!, /moved since this page was drawn/);
    const after = (await (await fetch(`${base}/api/repos/os/refs`)).json()) as { refs: Record<string, string> };
    assert.equal(after.refs['os/stable'], c3, 'the refused rollback changed nothing');

    // The ref log shows the moves, who made them (the tab's push token may see it), newest first.
    await page.goto(`${base}/ui/repos/os/reflog?ref=os%2Fstable`);
    await drawn(page, 'ref log');
    const moves = page.locator('table.reflog tbody tr');
    assert.ok((await moves.count()) >= 5, `moves: ${await moves.count()}`);
    const newest = (await moves.first().textContent())!;
    assert.ok(newest.includes(c2.slice(0, 12)) && newest.includes(c3.slice(0, 12)) && newest.includes('ui-test'), newest);
    assert.ok((await moves.nth(1).textContent())!.includes('ui-test'), 'the rollback, by the token typed in');

    // Traffic and delta coverage of the ref: a delta from v1 to the head is asked for with the button.
    await page.goto(`${base}/ui/repos/os/traffic?ref=os%2Fstable`);
    await drawn(page, 'traffic');
    const v1Row = page.locator('table.coverage tbody tr', { hasText: c1.slice(0, 12) });
    await v1Row.waitFor();
    assert.match((await v1Row.textContent())!, /none/, 'no delta from v1 to the head yet');
    const build = v1Row.locator('button', { hasText: 'Build delta' });
    await build.focus();
    await page.keyboard.press('Enter');
    await v1Row.locator('[role=status]', { hasText: /queued|duplicate|exists/ }).waitFor({ timeout: 30_000 });
    await shot(page, '9-traffic');
    // The jobs page lists the job asked for.
    await page.goto(`${base}/ui/jobs?repo=os`);
    await drawn(page, 'jobs');
    const job = page.locator('table.jobs tbody tr', { hasText: c1.slice(0, 12) });
    assert.equal(await job.count(), 1, 'the job asked for is listed');
    assert.ok((await job.textContent())!.includes(c3.slice(0, 12)));
    await shot(page, '10-jobs');

    // Nothing ran: no injected script, no dialog, no policy violation.
    assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
    watch.check();
    await context.close();
  } finally {
    await browser.close();
    await server?.stop();
  }
});
