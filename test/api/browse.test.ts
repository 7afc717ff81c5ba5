// The operator API's read routes (server/api/browse.ts) over a repository whose history was made
// by `ostree commit` and Cairn pushes and by the ostree CLI in place (test/api/setup.ts), checked
// against the real ostree CLI on the same repository folder: refs and history against `ostree
// refs` / `ostree log`, the tree (every directory, page by page) against `ostree ls -R -C`, the
// diff against `ostree diff` both ways, signature status against `ostree show --gpg-homedir`,
// downloads against `ostree cat`; each answer against its documented response schema; caching
// headers and 304s; query bounds.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import * as path from 'node:path';
import request from 'supertest';
import { walkCommitTree, objectName } from '../../storage/repo/closure';
import { ARCHIVE_EXTENSION } from '../../storage/objects/types';
import { sizesIdle } from '../../server/api/sizes';
import { ostree, ostreeResult, removeTempDirs } from '../helpers/ostree';
import { binary } from '../http/helpers';
import { makeApiBed, responseSchema, responseValidator, type ApiBed } from './setup';

let bed: ApiBed;
let valid: (schema: unknown, body: unknown) => string | null;
const api = (p: string) => request(bed.app).get(`/api/repos/main${p}`);

before(async () => {
  bed = await makeApiBed();
  valid = await responseValidator(bed.app);
});

after(async () => {
  await bed?.dispose();
  await removeTempDirs();
});

const lines = (out: string) => out.split('\n').filter((l) => l.length > 0);
const cli = (args: string[]) => ostree(args, { repo: bed.mainDir });

async function assertSchema(method: string, openapiPath: string, body: unknown): Promise<void> {
  const err = valid(await responseSchema(bed.app, method, openapiPath), body);
  assert.equal(err, null, `${method.toUpperCase()} ${openapiPath}: ${err}`);
}

test("commit sizes are computed in the background once: pending first, then the closure's objects and bytes", async () => {
  const commit = bed.line[2];
  const first = await api(`/commits/${commit}`).expect(200);
  assert.equal(first.body.sizesPending, true);
  assert.equal(first.body.archivedBytes, null);
  assert.equal(first.headers['cache-control'], 'no-store', 'an answer still pending is not cached');
  await sizesIdle();
  const res = await api(`/commits/${commit}`).expect(200);
  assert.equal(res.body.sizesPending, false);
  const walk = await walkCommitTree(bed.main, commit);
  const bytes = walk.objects.reduce((s, o) => s + statSync(path.join(bed.mainDir, 'objects', o.checksum.slice(0, 2), `${o.checksum.slice(2)}.${ARCHIVE_EXTENSION[o.type]}`)).size, 0);
  assert.equal(res.body.objects, walk.objects.length);
  assert.equal(res.body.archivedBytes, bytes);
  // Unpacked: the regular files' sizes as `ostree ls -R` shows them, each content object once.
  const files = new Map<string, number>();
  for (const l of lines(await cli(['ls', '-R', '-C', commit]))) {
    const m = /^-\S+ \d+ \d+ +(\d+) ([0-9a-f]{64}) /.exec(l);
    if (m) files.set(m[2]!, Number(m[1]));
  }
  assert.equal(res.body.unpackedBytes, [...files.values()].reduce((s, n) => s + n, 0));
  assert.ok(walk.objects.some((o) => objectName(o).endsWith('.filez')));
  // Now it is final: revalidated every time (deltas and signatures may change), 304 when unchanged.
  assert.equal(res.headers['cache-control'], 'private, no-cache');
  assert.match(res.headers.etag!, /^"[0-9a-f]{40}"$/);
  await api(`/commits/${commit}`).set('If-None-Match', res.headers.etag!).expect(304);
  // The branches list shows the same figures.
  const b = (await api('/branches').expect(200)).body.items.find((x: { ref: string }) => x.ref === 'os/main');
  assert.equal(b.archivedBytes, bytes);
});

test('branches: every ref with its commit, subject, version, date and signatures, page by page, as ostree sees them', async () => {
  const seen: Array<Record<string, unknown>> = [];
  let cursor: string | null = null;
  do {
    const res: request.Response = await api(`/branches?limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`).expect(200);
    await assertSchema('get', '/api/repos/{repo}/branches', res.body);
    assert.equal(res.body.total, 2);
    assert.ok(res.body.items.length <= 1);
    seen.push(...res.body.items);
    cursor = res.body.next;
  } while (cursor);
  assert.deepEqual(seen.map((b) => b.ref), lines(await cli(['refs'])).sort());
  const main = seen.find((b) => b.ref === 'os/main')!;
  assert.equal(main.commit, (await cli(['rev-parse', 'os/main'])).trim());
  assert.equal(main.subject, 'v3');
  assert.equal(main.version, '3');
  assert.equal(main.timestamp, 1700000200);
  assert.equal(main.signed, false, 'v3 was committed by the ostree CLI, unsigned');
  const other = seen.find((b) => b.ref === 'os/other')!;
  assert.equal(other.signed, true);
  assert.deepEqual(other.signatureTypes, ['gpg']);
  await assertSchema('get', '/api/repos/{repo}/branches', (await api('/branches?prefix=os/m').expect(200)).body);
  assert.deepEqual((await api('/branches?prefix=os/m').expect(200)).body.items.map((b: { ref: string }) => b.ref), ['os/main']);
});

test('history: os/main following parents, page by page, is `ostree log`, and ends at the root', async () => {
  const got: string[] = [];
  let cursor: string | null = null;
  let end: unknown = null;
  do {
    const res: request.Response = await api(`/history?ref=os/main&limit=2${cursor ? `&cursor=${cursor}` : ''}`).expect(200);
    await assertSchema('get', '/api/repos/{repo}/history', res.body);
    got.push(...res.body.items.map((e: { commit: string }) => e.commit));
    cursor = res.body.next;
    end = res.body.end;
    if (cursor) assert.equal(end, null);
  } while (cursor);
  assert.equal(end, 'root');
  const log = [...(await cli(['log', 'os/main'])).matchAll(/^commit ([0-9a-f]{64})$/gm)].map((m) => m[1]);
  assert.deepEqual(got, log);
  assert.deepEqual(got, [...bed.line].reverse());
  const first = (await api('/history?ref=os/main&limit=3').expect(200)).body.items;
  assert.deepEqual(first.map((e: { signed: boolean }) => e.signed), [false, true, true], 'v1 and v2 were signed by Cairn when pushed');
  assert.deepEqual(first.map((e: { version: string }) => e.version), ['3', '2', '1']);
  assert.equal(first[0].parent, bed.line[1]);
  await api('/history?ref=os/none').expect(404);
});

/** What `ostree show --gpg-homedir` says about each GPG signature of a commit: good, bad or unknown-key. */
async function ostreeShow(commit: string): Promise<string[]> {
  const r = await ostreeResult(['show', `--gpg-homedir=${bed.keyring}`, commit], { repo: bed.mainDir });
  const verdicts: string[] = [];
  for (const line of (r.stdout + r.stderr).split('\n')) {
    if (/Good signature from/.test(line)) verdicts.push('good');
    else if (/BAD signature from/.test(line)) verdicts.push('bad');
    else if (/Can't check signature: public key not found/.test(line)) verdicts.push('unknown-key');
  }
  return verdicts;
}

test("commit detail: signature status agrees with `ostree show` (Cairn's key, a foreign key, unsigned)", async () => {
  const expect = new Map([
    [bed.line[0], 'good'],
    [bed.line[1], 'good'],
    [bed.line[2], null],
    [bed.foreign, 'unknown-key'],
  ]);
  for (const [commit, verdict] of expect) {
    const res = await api(`/commits/${commit}`).expect(200);
    await assertSchema('get', '/api/repos/{repo}/commits/{commit}', res.body);
    const d = res.body;
    const gpg = d.signatures.filter((s: { kind: string }) => s.kind === 'gpg');
    const shown = await ostreeShow(commit);
    if (verdict === null) {
      assert.deepEqual(shown, []);
      assert.deepEqual(gpg, []);
      assert.equal(d.signed, false);
      assert.equal(d.verified, false);
      continue;
    }
    assert.deepEqual(shown, [verdict], `ostree show ${commit}`);
    assert.equal(gpg.length, 1);
    assert.equal(gpg[0].valid, verdict === 'good');
    assert.equal(d.verified, verdict === 'good');
    assert.match(gpg[0].keyId, /^[0-9A-F]{16}$/);
    if (verdict === 'unknown-key') assert.equal(gpg[0].keyId, bed.foreignKey.keyId.slice(-16).toUpperCase());
  }
  const v2 = (await api(`/commits/${bed.line[1]}`).expect(200)).body;
  assert.equal(v2.parent, bed.line[0]);
  assert.equal(v2.parentPresent, true);
  assert.equal(v2.subject, 'v2');
  assert.equal(v2.version, '2');
  assert.equal(v2.timestamp, 1700000100);
  assert.ok(v2.metadata.some((m: { key: string; value: unknown }) => m.key === 'version' && m.value === '2'));
  assert.deepEqual(v2.deltas, { to: [], from: [] });
  await api(`/commits/${'0'.repeat(64)}`).expect(404);
  await api('/commits/NOTHEX').expect(400);
});

/** The line `ostree ls -R -C` prints for an API tree entry (ot-builtin-ls.c). */
function lsLine(e: { kind: string; mode: number; uid: number; gid: number; size: number; checksum: string; metaChecksum: string | null; path: string; target: string | null }): string {
  const t = e.kind === 'dir' ? 'd' : e.kind === 'symlink' ? 'l' : '-';
  const perms = '0' + (e.mode & 0o7777).toString(8).padStart(4, '0');
  const sums = e.kind === 'dir' ? `${e.checksum} ${e.metaChecksum} ` : `${e.checksum} `;
  return `${t}${perms} ${e.uid} ${e.gid} ${String(e.size).padStart(6)} ${sums}${e.path}${e.kind === 'symlink' ? ` -> ${e.target}` : ''}`;
}

test('tree: every directory, read page by page through the API, is `ostree ls -R -C` line for line', async () => {
  for (const commit of bed.line) {
    const out: string[] = [];
    const visit = async (dir: string, self: string | null) => {
      let cursor: string | null = null;
      const entries: Array<Parameters<typeof lsLine>[0]> = [];
      let pages = 0;
      do {
        const res: request.Response = await api(`/commits/${commit}/tree?path=${encodeURIComponent(dir)}&limit=4${cursor ? `&cursor=${cursor}` : ''}`).expect(200);
        if (pages++ === 0 && commit === bed.line[2] && dir === '/many') await assertSchema('get', '/api/repos/{repo}/commits/{commit}/tree', res.body);
        if (self === null) out.push(lsLine(res.body.dir));
        self = 'done';
        assert.ok(res.body.items.length <= 4);
        entries.push(...res.body.items);
        cursor = res.body.next;
      } while (cursor);
      for (const e of entries) {
        if (e.kind !== 'dir') out.push(lsLine(e));
      }
      for (const e of entries) {
        if (e.kind !== 'dir') continue;
        out.push(lsLine(e));
        await visit(e.path, 'listed');
      }
    };
    await visit('/', null);
    assert.deepEqual(out, lines(await cli(['ls', '-R', '-C', commit])), `commit ${commit}`);
  }
});

test('tree answers are immutable: ETag, private caching, 304; bad paths and cursors are 400, absent ones 404', async () => {
  const url = `/commits/${bed.line[0]}/tree?path=/bin`;
  const res = await api(url).expect(200);
  assert.equal(res.headers['cache-control'], 'private, max-age=86400, immutable');
  assert.ok(res.headers.etag);
  await api(url).set('If-None-Match', `"other", ${res.headers.etag}`).expect(304);
  // `*` names no copy: a commit that does not exist is 404, never 304.
  await api(`/commits/${'0'.repeat(64)}/tree?path=/bin`).set('If-None-Match', '*').expect(404);
  assert.deepEqual((await api(`/commits/${bed.line[0]}/tree?path=/bin/`).expect(200)).body.items, res.body.items);
  await api(`/commits/${bed.line[0]}/tree?path=/nope`).expect(404);
  await api(`/commits/${bed.line[0]}/tree?path=/README`).expect(400);
  await api(`/commits/${bed.line[0]}/tree?path=/bin/../etc`).expect(400);
  await api(`/commits/${bed.line[0]}/tree?path=relative`).expect(400);
  await api(`/commits/${bed.line[0]}/tree?cursor=-1`).expect(400);
  await api(`/commits/${bed.line[0]}/tree?limit=1001`).expect(400);
  await api(`/commits/${bed.line[0]}/tree?path=/&bogus=1`).expect(400);
  await api(`/commits/${bed.line[0]}/tree?path=/${'a'.repeat(5000)}`).expect(400);
});

function download(commit: string, p: string, extra = '') {
  return api(`/commits/${commit}/file?path=${encodeURIComponent(p)}${extra}`).buffer(true).parse(binary);
}

test('file download: the committed bytes (ostree cat), streamed as an attachment that is never rendered', async () => {
  for (const p of ['/README', '/bin/tool', '/big/blob.bin', '/www/page.html']) {
    const res = await download(bed.line[1], p).expect(200);
    const cat = await ostreeBytes(['cat', bed.line[1], p]);
    assert.ok((res.body as Buffer).equals(cat), `bytes of ${p}`);
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    assert.equal(res.headers['content-length'], String(cat.length));
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.match(res.headers['content-security-policy']!, /^sandbox/);
    assert.match(res.headers['content-disposition']!, new RegExp(`^attachment; filename="${path.basename(p).replace('.', '\\.')}"`));
    assert.equal(res.headers['cache-control'], 'private, max-age=86400, immutable');
    assert.match(res.headers.etag!, /^"[0-9a-f]{64}"$/);
    await download(bed.line[1], p).set('If-None-Match', res.headers.etag!).expect(304);
  }
  const odd = await download(bed.line[1], '/names/héllo wörld "quoted".txt').expect(200);
  assert.equal(odd.headers['content-disposition'], `attachment; filename="h_llo_w_rld__quoted_.txt"; filename*=UTF-8''h%C3%A9llo%20w%C3%B6rld%20%22quoted%22.txt`);
});

async function ostreeBytes(args: string[]): Promise<Buffer> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn('ostree', [...args, `--repo=${bed.mainDir}`]);
    const parts: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => parts.push(c));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(parts)) : reject(new Error(`ostree ${args.join(' ')} exited ${code}`))));
  });
}

test('file download: inline=1 shows small UTF-8 text only; directories, symlinks, absent and escaping paths are refused', async () => {
  const text = await download(bed.line[1], '/README', '&inline=1').expect(200);
  assert.equal(text.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(text.headers['x-content-type-options'], 'nosniff');
  assert.match(text.headers['content-security-policy']!, /^sandbox/);
  assert.equal((text.body as Buffer).toString('utf8'), 'hello\nthere\nworld\n');
  const html = await download(bed.line[1], '/www/page.html', '&inline=1').expect(200);
  assert.equal(html.headers['content-type'], 'text/plain; charset=utf-8', 'HTML is shown as text, never as a page');
  const bin = await api(`/commits/${bed.line[1]}/file?path=/bin/tool&inline=1`).expect(400);
  assert.equal(bin.body.error.details.reason, 'binary');
  const big = await api(`/commits/${bed.line[1]}/file?path=/big/blob.bin&inline=1`).expect(400);
  assert.equal(big.body.error.details.reason, 'too-large');
  await api(`/commits/${bed.line[1]}/file?path=/bin`).expect(400);
  const link = await api(`/commits/${bed.line[1]}/file?path=/link`).expect(400);
  assert.equal(link.body.error.details.symlinkTarget, 'README');
  await api(`/commits/${bed.line[1]}/file?path=/gone/a`).expect(404);
  await api(`/commits/${bed.line[1]}/file?path=/etc/../../x`).expect(400);
  await api(`/commits/${bed.line[1]}/file`).expect(400);
  await api(`/commits/${bed.line[1]}/file?path=/README&inline=2`).expect(400);
});

test('diff: the same entries in the same order as `ostree diff`, both ways and across the CLI commit; text diffs; the cap', async () => {
  const pairs: Array<[string, string]> = [
    [bed.line[0], bed.line[1]],
    [bed.line[1], bed.line[0]],
    [bed.line[1], bed.line[2]],
    [bed.line[0], bed.line[2]],
  ];
  for (const [a, b] of pairs) {
    const res = await api(`/diff?from=${a}&to=${b}`).expect(200);
    const d = res.body;
    const ours = [...d.modified.map((m: { path: string }) => `M    ${m.path}`), ...d.removed.map((r: { path: string }) => `D    ${r.path}`), ...d.added.map((x: { path: string }) => `A    ${x.path}`)];
    assert.deepEqual(ours, lines(await cli(['diff', a, b])), `diff ${a} ${b}`);
    assert.equal(d.truncated, false);
  }
  const res = await api(`/diff?from=${bed.line[0]}&to=${bed.line[1]}&text=1`).expect(200);
  await assertSchema('get', '/api/repos/{repo}/diff', res.body);
  const readme = res.body.modified.find((m: { path: string }) => m.path === '/README');
  assert.equal(readme.old.size, 12);
  assert.equal(readme.new.size, 18);
  assert.equal(readme.textDiff.status, 'ok');
  assert.match(readme.textDiff.unified, /^\+there$/m);
  const script = res.body.modified.find((m: { path: string }) => m.path === '/bin/script');
  assert.equal(script.modeChanged, true);
  assert.equal(script.old.mode, 0o100644);
  assert.equal(script.new.mode, 0o100755);
  const kind = res.body.modified.find((m: { path: string }) => m.path === '/becomes-link');
  assert.equal(kind.kindChanged, true);
  assert.equal(kind.new.target, 'README');
  assert.equal(res.headers['cache-control'], 'private, max-age=86400, immutable');
  await api(`/diff?from=${bed.line[0]}&to=${bed.line[1]}&text=1`).set('If-None-Match', res.headers.etag!).expect(304);
  const cut = await api(`/diff?from=${bed.line[0]}&to=${bed.line[1]}&limit=2`).expect(200);
  assert.equal(cut.body.truncated, true);
  assert.equal(cut.body.added.length + cut.body.removed.length + cut.body.modified.length, 2);
  assert.equal((await api(`/diff?from=${bed.line[0]}&to=${bed.line[1]}`).expect(200)).body.modified[0].textDiff, undefined, 'no text diffs unless asked');
  await api(`/diff?from=${bed.line[0]}&to=${'1'.repeat(64)}`).expect(404);
  await api(`/diff?from=${bed.line[0]}`).expect(400);
  await api(`/diff?from=${bed.line[0]}&to=${bed.line[1]}&limit=100001`).expect(400);
});

test('stats: objects by type as the repository folder holds them, refs', async () => {
  const res = await api('/stats').expect(200);
  await assertSchema('get', '/api/repos/{repo}/stats', res.body);
  const out = await ostreeResult(['refs'], { repo: bed.mainDir });
  assert.equal(res.body.refs, lines(out.stdout).length);
  const { readdirSync } = await import('node:fs');
  let files = 0;
  let bytes = 0;
  for (const d of readdirSync(path.join(bed.mainDir, 'objects'))) {
    for (const f of readdirSync(path.join(bed.mainDir, 'objects', d))) {
      files++;
      bytes += statSync(path.join(bed.mainDir, 'objects', d, f)).size;
    }
  }
  assert.equal(res.body.objectsTotal.count, files);
  assert.equal(res.body.objectsTotal.bytes, bytes);
  assert.equal(res.body.objects.commit.count, 4);
});

test('query bounds: limits over the maximum, unknown parameters and malformed values are 400 before any work', async () => {
  await api('/branches?limit=201').expect(400);
  await api('/branches?limit=0').expect(400);
  await api('/history?ref=os/main&limit=201').expect(400);
  await api('/history?ref=os/main&cursor=xyz').expect(400);
  await api('/history').expect(400);
  await api(`/history?ref=${'a'.repeat(1025)}`).expect(400);
  await api('/traffic').expect(400);
  await api('/traffic?ref=os/main&minutes=1441').expect(400);
  const res = await api('/branches?limit=1e9').expect(400);
  assert.equal(res.body.error.code, 'INVALID_ARGUMENT');
});
