// A flatpak repository served by Cairn, driven by Debian's flatpak 1.14 as a publisher and as a user:
// a tiny runtime (static busybox) and an app built with plain `flatpak build-*` commands, pushed with
// `cairn push --all` to a running `cairn serve`; then `flatpak remote-add --from` the .flatpakrepo
// (GPG verification on), `remote-ls -d` (sizes, title), install, run, an update through a Cairn
// delta, end of life; and Cairn's summary keys against what `flatpak build-update-repo` writes.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { parse, Variant, type VarDict } from '../../storage/gvariant';
import { OBJECT_GVARIANT_TYPE } from '../../storage/objects/types';
import { SUMMARY_INDEX_TYPE, parseIndex } from '../../storage/flatpak/index';
import { startCairn, type CairnProcess } from '../helpers/cairn-process';
import { cli } from '../e2e/publish-helpers';
import { APP, ARCH, Builder, flatpak, PNG, RUNTIME, summaryMeta } from './helpers';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-flatpak-'));
const build = new Builder(work);
const buildRepo = build.repo;
const builder = build.home;
const data = path.join(work, 'data');
let cairn: CairnProcess;
let token: string;

function buildApp(version: string): void {
  build.app(version);
}

async function push(): Promise<void> {
  const r = await cli(['push', '--url', `${cairn.url}/repo/apps`, '--token', token, '--repo', buildRepo, '--all']);
  assert.equal(r.code, 0, r.stderr);
}

before(async () => {
  build.runtime();
  buildApp('v1');

  const init = await cli(['init-repo', 'apps', '--data', data, '--flatpak', '--title', 'Cairn Apps']);
  assert.equal(init.code, 0, init.stderr);
  const t = await cli(['token', '--data', data, '--scope', 'push', '--repo', 'apps', '--ttl', '1h', '--sub', 'flatpak-e2e']);
  assert.equal(t.code, 0, t.stderr);
  token = t.stdout.trim();
  cairn = await startCairn({ dataDir: data, env: { CAIRN_LOG: 'info' } });
});

after(async () => {
  if (process.env.FLATPAK_TEST_DUMP) fs.writeFileSync(process.env.FLATPAK_TEST_DUMP, cairn.requests().map((r) => `${r.method} ${r.status} ${r.path}`).join('\n'));
  await cairn?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

test('cairn push --all publishes the runtime and the app in one ref update, with flatpak summary, index and subsummaries', async () => {
  await push();
  const repoDir = path.join(data, 'repos', 'apps');
  const refs = execFileSync('ostree', ['refs', `--repo=${repoDir}`], { encoding: 'utf8' }).trim().split('\n').sort();
  // The appstream branches come with the publish.
  assert.deepEqual(refs, [`app/${APP}/${ARCH}/stable`, `appstream/${ARCH}`, `appstream2/${ARCH}`, `runtime/${RUNTIME}/${ARCH}/stable`]);
  const log = fs.readdirSync(path.join(repoDir, 'state', 'cairn', 'reflog'));
  const entries = log.map((f) => JSON.parse(fs.readFileSync(path.join(repoDir, 'state', 'cairn', 'reflog', f), 'utf8')) as { time: string });
  assert.equal(entries.length, 4);
  assert.equal(new Set(entries.map((e) => e.time)).size, 1, 'every ref moved in one update');
  const xml = execFileSync('ostree', ['cat', `--repo=${repoDir}`, `appstream2/${ARCH}`, '/appstream.xml'], { encoding: 'utf8' });
  assert.match(xml, new RegExp(`<bundle type="flatpak" runtime="${RUNTIME}/${ARCH}/stable" sdk="${RUNTIME}/${ARCH}/stable">app/${APP}/${ARCH}/stable</bundle>`));
  assert.deepEqual(execFileSync('ostree', ['cat', `--repo=${repoDir}`, `appstream2/${ARCH}`, `/icons/64x64/${APP}.png`]), PNG);

  const md = summaryMeta(fs.readFileSync(path.join(repoDir, 'summary')));
  assert.equal(md.get('xa.title')?.value, 'Cairn Apps');
  const cache = md.get('xa.cache')!.value as Variant;
  assert.equal(cache.type, 'a{s(tts)}');
  assert.deepEqual((cache.value as Array<[string]>).map(([r]) => r).sort(), refs);
  const idxBytes = fs.readFileSync(path.join(repoDir, 'summary.idx'));
  const idx = parseIndex(idxBytes)!;
  assert.deepEqual([...idx.subsummaries.keys()], [ARCH]);
  const sub = gunzipSync(fs.readFileSync(path.join(repoDir, 'summaries', `${idx.subsummaries.get(ARCH)!.digest}.gz`)));
  const [subRefs] = parse(OBJECT_GVARIANT_TYPE.summary, sub) as [Array<[string, [bigint, Buffer, VarDict]]>];
  assert.deepEqual(subRefs.map(([r]) => r), refs);
  for (const [, [, , m]] of subRefs) assert.ok(new Map(m).has('xa.data'));
  assert.ok(fs.existsSync(path.join(repoDir, 'summary.idx.sig')));
  assert.ok(fs.existsSync(path.join(repoDir, 'summaries', `${idx.digest}.idx.sig`)));
  void SUMMARY_INDEX_TYPE;
});

const user = path.join(work, 'user');

test('a user adds the remote from /repo/apps.flatpakrepo (GPG on), sees sizes and the title, installs and runs the app', async () => {
  const fr = await fetch(`${cairn.url}/repo/apps.flatpakrepo`);
  assert.equal(fr.status, 200);
  const text = await fr.text();
  assert.match(text, /^\[Flatpak Repo\]\nTitle=Cairn Apps\n/);
  assert.match(text, /\nGPGKey=[A-Za-z0-9+/=]{40,}\n/);
  const file = path.join(work, 'apps.flatpakrepo');
  fs.writeFileSync(file, text);
  flatpak(user, ['remote-add', '--user', '--from', 'cairn', `${cairn.url}/repo/apps.flatpakrepo`]);
  const remotes = flatpak(user, ['remotes', '--user', '--columns=name,title,url']).out;
  assert.match(remotes, /cairn\s+Cairn Apps\s+http:\/\/127\.0\.0\.1:\d+\/repo\/apps\//);
  const ls = flatpak(user, ['remote-ls', '--user', '-d', '--columns=ref,download-size,installed-size', 'cairn']).out;
  assert.match(ls, new RegExp(`app/${APP.replace(/\./g, '\\.')}/${ARCH}/stable\\s+\\S+.*[kK]?B`));
  flatpak(user, ['install', '--user', '-y', '--noninteractive', 'cairn', APP]);
  assert.equal(flatpak(user, ['run', APP]).out.trim(), 'hello from v1');
});

test('flatpak install --from the app\'s .flatpakref installs it (and its runtime) for a new user', async () => {
  const res = await fetch(`${cairn.url}/repo/apps/flatpak/${APP}.flatpakref`);
  assert.equal(res.status, 200);
  const text = await res.text();
  assert.match(text, new RegExp(`^\\[Flatpak Ref\\]\nName=${APP.replace(/\./g, '\\.')}\nBranch=stable\n`));
  assert.match(text, /\nGPGKey=[A-Za-z0-9+/=]{40,}\n/);
  assert.equal((await fetch(`${cairn.url}/repo/apps/flatpak/org.cairn.Missing.flatpakref`)).status, 404);
  assert.equal((await fetch(`${cairn.url}/repo/apps/flatpak/${APP}.flatpakref?branch=beta`)).status, 404);
  const other = path.join(work, 'user-ref');
  flatpak(other, ['install', '--user', '-y', '--noninteractive', '--from', `${cairn.url}/repo/apps/flatpak/${APP}.flatpakref`]);
  assert.equal(flatpak(other, ['run', APP]).out.trim(), 'hello from v1');
});

test('flatpak search finds the app by a word of its appstream summary', () => {
  flatpak(user, ['update', '--user', '--appstream', 'cairn']);
  const out = flatpak(user, ['search', '--user', '--columns=application,remotes', 'cheerfully']).out;
  assert.match(out, new RegExp(`${APP.replace(/\./g, '\\.')}\\s+cairn`));
});

test('v2 pushed: flatpak update fetches a Cairn static delta and runs the new version', async () => {
  // v2 carries plain metainfo and a hicolor icon (no composed app-info): the catalogue is built from those.
  build.app('v2', { metainfoOnly: true });
  await push();
  const head = execFileSync('ostree', ['rev-parse', `--repo=${path.join(data, 'repos', 'apps')}`, `app/${APP}/${ARCH}/stable`], { encoding: 'utf8' }).trim();
  // The policy delta from v1 to v2 is built in the background: wait for its superblock.
  const deadline = Date.now() + 60_000;
  let found = false;
  while (Date.now() < deadline && !found) {
    const out = execFileSync('ostree', ['static-delta', 'list', `--repo=${path.join(data, 'repos', 'apps')}`], { encoding: 'utf8' });
    found = out.split('\n').some((l) => l.trim().endsWith(`-${head}`));
    if (!found) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(found, 'a delta to the new head was built');
  flatpak(user, ['update', '--user', '-y', '--noninteractive']);
  assert.equal(flatpak(user, ['run', APP]).out.trim(), 'hello from v2');
  const repoDir = path.join(data, 'repos', 'apps');
  const xml = execFileSync('ostree', ['cat', `--repo=${repoDir}`, `appstream2/${ARCH}`, '/appstream.xml'], { encoding: 'utf8' });
  assert.match(xml, /<release version="v2"/);
  assert.match(xml, new RegExp(`>app/${APP}/${ARCH}/stable</bundle>`));
  assert.deepEqual(execFileSync('ostree', ['cat', `--repo=${repoDir}`, `appstream2/${ARCH}`, `/icons/64x64/${APP}.png`]), PNG);
  const got = await cairn.waitForRequest((r) => r.path.includes('/deltas/') && r.path.endsWith('/superblock') && r.status === 200, 5_000);
  assert.ok(got, `the update fetched a delta superblock; requests: ${cairn.requests().map((r) => r.path).filter((p) => !p.includes('/objects/')).join(' ')}`);
  // The client held v1's subsummary: it took the summary delta to v2's instead of the whole one.
  const sd = await cairn.waitForRequest((r) => /^\/repo\/apps\/summaries\/[0-9a-f]{64}-[0-9a-f]{64}\.delta$/.test(r.path) && r.status === 200, 5_000);
  assert.ok(sd, 'the update fetched a summaries/OLD-NEW.delta');
});

test('the summary keys and index layout are those flatpak build-update-repo writes for the same repository', () => {
  const repoDir = path.join(data, 'repos', 'apps');
  const copy = path.join(work, 'reference-repo');
  execFileSync('cp', ['-a', repoDir, copy]);
  execFileSync('flatpak', ['build-update-repo', '--no-update-appstream', copy], { env: { ...process.env, HOME: builder } });
  const ours = summaryMeta(fs.readFileSync(path.join(repoDir, 'summary')));
  const theirs = summaryMeta(fs.readFileSync(path.join(copy, 'summary')));
  const flatpakKeys = (m: Map<string, Variant>) => [...m.keys()].filter((k) => k.startsWith('xa.')).sort();
  assert.deepEqual(flatpakKeys(ours), flatpakKeys(theirs));
  const cacheOf = (m: Map<string, Variant>) => new Map(((m.get('xa.cache')!.value as Variant).value as Array<[string, [bigint, bigint, string]]>).map(([r, v]) => [r, v]));
  assert.deepEqual(cacheOf(ours), cacheOf(theirs), 'same xa.cache per ref (sizes and metadata)');
  const ourIdx = parseIndex(fs.readFileSync(path.join(repoDir, 'summary.idx')))!;
  const theirIdx = parseIndex(fs.readFileSync(path.join(copy, 'summary.idx')))!;
  assert.deepEqual([...ourIdx.subsummaries.keys()], [...theirIdx.subsummaries.keys()]);
  assert.deepEqual(ourIdx.metadata.map(([k]) => k).sort(), theirIdx.metadata.map(([k]) => k).sort());
  const refsOf = (repo: string, digest: string) => {
    const [refs, md] = parse(OBJECT_GVARIANT_TYPE.summary, gunzipSync(fs.readFileSync(path.join(repo, 'summaries', `${digest}.gz`)))) as [Array<[string, [bigint, Buffer, VarDict]]>, VarDict];
    return { refs: refs.map(([r, [size, csum, m]]) => [r, size, csum.toString('hex'), new Map(m).get('xa.data')?.value]), keys: md.map(([k]) => k) };
  };
  assert.deepEqual(refsOf(repoDir, ourIdx.subsummaries.get(ARCH)!.digest), refsOf(copy, theirIdx.subsummaries.get(ARCH)!.digest));
});

test('end of life from the API: flatpak remote-info and update report it', async () => {
  const ref = `app/${APP}/${ARCH}/stable`;
  const head = execFileSync('ostree', ['rev-parse', `--repo=${path.join(data, 'repos', 'apps')}`, ref], { encoding: 'utf8' }).trim();
  const bad = await fetch(`${cairn.url}/api/repos/apps/end-of-life`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ ref, reason: 'stale', expected: '0'.repeat(64) }),
  });
  assert.equal(bad.status, 409);
  // From the CLI (the same route underneath).
  const r = await cli(['push', '--url', `${cairn.url}/repo/apps`, '--token', token, '--end-of-life', 'Replaced by org.cairn.Hello2', ref]);
  assert.equal(r.code, 0, r.stderr);
  const eolHead = execFileSync('ostree', ['rev-parse', `--repo=${path.join(data, 'repos', 'apps')}`, ref], { encoding: 'utf8' }).trim();
  assert.match(r.stdout, new RegExp(`${head.slice(0, 12)} -> ${eolHead.slice(0, 12)}`));
  // Same tree, the old head as parent (as build-commit-from --end-of-life).
  const show = execFileSync('ostree', ['show', `--repo=${path.join(data, 'repos', 'apps')}`, '--print-metadata-key=ostree.endoflife', ref], { encoding: 'utf8' });
  assert.match(show, /Replaced by org\.cairn\.Hello2/);
  assert.equal(execFileSync('ostree', ['rev-parse', `--repo=${path.join(data, 'repos', 'apps')}`, `${ref}^`], { encoding: 'utf8' }).trim(), head);
  const info = flatpak(user, ['remote-info', '--user', 'cairn', APP]).out;
  assert.match(info, /Replaced by org\.cairn\.Hello2/);
  const up = flatpak(user, ['update', '--user', '-y', '--noninteractive']);
  assert.match(up.out + up.err, /end-of-life|end of life/i);
  // remote-ls hides end-of-life refs unless asked for all of them.
  assert.doesNotMatch(flatpak(user, ['remote-ls', '--user', '--columns=ref', 'cairn']).out, new RegExp(`app/${APP}`));
  const ls = flatpak(user, ['remote-ls', '--user', '--all', '--columns=ref,options', 'cairn']).out;
  assert.match(ls, /eol=Replaced by org\.cairn\.Hello2/);
  // The sparse cache carries it (what remote-ls reads without fetching the commit).
  const md = summaryMeta(fs.readFileSync(path.join(data, 'repos', 'apps', 'summary')));
  const sparse = new Map(md.get('xa.sparse-cache')!.value as Array<[string, VarDict]>);
  assert.equal(new Map(sparse.get(ref)!).get('eol')?.value, 'Replaced by org.cairn.Hello2');
});
