// storage/browse tree and diff against the real ostree CLI: the recursive
// listing agrees line for line with `ostree ls -R -C`, the diff of two
// commits with `ostree diff A B` (same entries, same order), on commits made
// by `ostree commit` with files added, removed, modified, a mode change, a
// kind change and directories added and removed; and on the reference
// repository (xattrs). Directory pages add up to the listing; file downloads
// give the committed bytes; paths cannot leave the tree.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { Repo } from '../../storage/repo/repo';
import { walkTree, listDirectory, openFile, type TreeEntry } from '../../storage/browse/listing';
import { diffCommits, ostreeDiffLines } from '../../storage/browse/diff';
import { resolvePath } from '../../storage/browse/trees';
import { isCairnError } from '../../storage/errors';
import { commitTree, initRepo, makeTempDir, ostree, removeTempDirs } from '../helpers/ostree';
import { FIXTURE_REPO, REF_NAME, S1, S2 } from '../helpers/fixtures';

let dir: string;
let src: string;
let repo: Repo;
let v1: string;
let v2: string;
let fixture: Repo;

async function write(rel: string, data: string | Buffer, mode?: number): Promise<void> {
  const p = path.join(src, rel);
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, data);
  if (mode !== undefined) await fsp.chmod(p, mode);
}

before(async () => {
  const work = await makeTempDir('cairn-browse-tree-');
  src = path.join(work, 'src');
  dir = await initRepo(path.join(work, 'repo'), 'archive');
  await write('README', 'hello\nworld\n');
  await write('text/story.txt', Array.from({ length: 40 }, (_, i) => `line ${i}`).join('\n') + '\n');
  await write('bin/tool', Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2, 3]), 0o755);
  await write('bin/script', '#!/bin/sh\necho hi\n', 0o644);
  await write('gone/a', 'a\n');
  await write('gone/deeper/b', 'b\n');
  await write('becomes-link', 'was a file\n');
  await write('becomes-dir', 'was a file\n');
  await write('stays/same/file', 'unchanged\n');
  await fsp.mkdir(path.join(src, 'empty'), { recursive: true });
  await fsp.symlink('README', path.join(src, 'link'));
  v1 = await commitTree(dir, { branch: 'os/main', tree: src, subject: 'v1', timestamp: 1700000000, metadata: { version: '1' } });

  await write('README', 'hello\nthere\nworld\n');
  await write('text/story.txt', Array.from({ length: 40 }, (_, i) => (i === 20 ? 'line twenty' : `line ${i}`)).join('\n') + '\n');
  await fsp.chmod(path.join(src, 'bin/script'), 0o755); // mode change only
  await fsp.chmod(path.join(src, 'bin'), 0o700); // a directory's mode
  await fsp.rm(path.join(src, 'gone'), { recursive: true });
  await fsp.rm(path.join(src, 'becomes-link'));
  await fsp.symlink('README', path.join(src, 'becomes-link'));
  await fsp.rm(path.join(src, 'becomes-dir'));
  await write('becomes-dir/inside', 'now a dir\n');
  await write('new/nested/deep/file', 'new\n');
  await write('new/top', 'top\n');
  await write('added.txt', 'added\n');
  v2 = await commitTree(dir, { branch: 'os/main', tree: src, subject: 'v2', timestamp: 1700000100, metadata: { version: '2' } });
  repo = new Repo('t', new FsBackend(dir));
  fixture = new Repo('sample', new FsBackend(FIXTURE_REPO));
});

after(removeTempDirs);

/** The line `ostree ls -R -C` prints for an entry (ot-builtin-ls.c). */
function lsLine(e: TreeEntry): string {
  const t = e.kind === 'dir' ? 'd' : e.kind === 'symlink' ? 'l' : '-';
  const perms = '0' + (e.mode & 0o7777).toString(8).padStart(4, '0');
  const sums = e.kind === 'dir' ? `${e.checksum} ${e.metaChecksum} ` : `${e.checksum} `;
  return `${t}${perms} ${e.uid} ${e.gid} ${String(e.size).padStart(6)} ${sums}${e.path}${e.kind === 'symlink' ? ` -> ${e.symlinkTarget}` : ''}`;
}

async function walkAll(r: Repo, commit: string, p = '/', max?: number): Promise<{ entries: TreeEntry[]; truncated: boolean }> {
  const entries: TreeEntry[] = [];
  let truncated: boolean | undefined;
  for await (const item of walkTree(r, commit, p, { maxEntries: max })) {
    if ('entry' in item) entries.push(item.entry);
    else truncated = item.truncated;
  }
  assert.notEqual(truncated, undefined, 'the walk ends with its done record');
  return { entries, truncated: truncated! };
}

function lines(out: string): string[] {
  return out.split('\n').filter((l) => l.length > 0);
}

test('the recursive listing is exactly `ostree ls -R -C`, for both commits, a subdirectory and the reference repository', async () => {
  for (const c of [v1, v2]) {
    const ours = (await walkAll(repo, c)).entries.map(lsLine);
    assert.deepEqual(ours, lines(await ostree(['ls', '-R', '-C', c], { repo: dir })));
  }
  const sub = (await walkAll(repo, v2, '/new')).entries.map(lsLine);
  assert.deepEqual(sub, lines(await ostree(['ls', '-R', '-C', v2, '/new'], { repo: dir })));
  for (const c of [S1, S2]) {
    assert.deepEqual((await walkAll(fixture, c)).entries.map(lsLine), lines(await ostree(['ls', '-R', '-C', c], { repo: FIXTURE_REPO })));
  }
});

test('entries carry xattrs (hex and text) as ostree ls -X shows them', async () => {
  const { entries } = await walkAll(fixture, S2);
  const conf = entries.find((e) => e.path === '/etc/conf')!;
  assert.deepEqual(conf.xattrs, [{ name: 'user.note', value: { hex: '6869', bytes: 2 }, text: 'hi' }]);
  const x = await ostree(['ls', '-X', S2, '/etc/conf'], { repo: FIXTURE_REPO });
  assert.match(x, /b'user\.note', \[byte 0x68, 0x69\]/);
  assert.equal(entries.find((e) => e.path === '/link')!.symlinkTarget, 'README');
});

test('the walk stops at its cap and says so', async () => {
  const full = await walkAll(repo, v2);
  assert.equal(full.truncated, false);
  const cut = await walkAll(repo, v2, '/', 5);
  assert.equal(cut.truncated, true);
  assert.equal(cut.entries.length, 5);
  assert.deepEqual(cut.entries.map((e) => e.path), full.entries.slice(0, 5).map((e) => e.path));
});

test('directory pages follow the cursor to the end and hold what `ostree ls` shows for that directory', async () => {
  for (const p of ['/', '/bin', '/new']) {
    const got: TreeEntry[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page = await listDirectory(repo, v2, p, { cursor, limit: 2 });
      assert.ok(page.entries.length <= 2);
      got.push(...page.entries);
      cursor = page.next;
      pages++;
      assert.ok(pages < 50);
    } while (cursor);
    const expected = lines(await ostree(['ls', '-C', v2, p], { repo: dir })).slice(1); // first line: the directory itself
    assert.deepEqual(got.map(lsLine), expected);
  }
  await assert.rejects(listDirectory(repo, v2, '/README'), (e) => isCairnError(e, 'INVALID_ARGUMENT'));
  await assert.rejects(listDirectory(repo, v2, '/nope'), (e) => isCairnError(e, 'NOT_FOUND'));
  await assert.rejects(listDirectory(repo, v2, '/', { cursor: 'x1' }), (e) => isCairnError(e, 'INVALID_ARGUMENT'));
});

test('the diff of two commits is `ostree diff A B`, line for line, both ways', async () => {
  for (const [a, b] of [
    [v1, v2],
    [v2, v1],
  ] as const) {
    const d = await diffCommits(repo, a, b);
    assert.equal(d.truncated, false);
    assert.deepEqual(ostreeDiffLines(d), lines(await ostree(['diff', a, b], { repo: dir })));
  }
  const f = await diffCommits(fixture, S1, S2);
  assert.deepEqual(ostreeDiffLines(f), lines(await ostree(['diff', S1, S2], { repo: FIXTURE_REPO })));
  assert.deepEqual(ostreeDiffLines(await diffCommits(repo, v2, v2)), []);
});

test('diff entries say what changed: sizes, checksums, mode, kind; small text files get a unified diff', async () => {
  const d = await diffCommits(repo, v1, v2, { textDiffs: 10 });
  const by = new Map(d.modified.map((m) => [m.path, m]));
  const readme = by.get('/README')!;
  assert.equal(readme.old.size, 12);
  assert.equal(readme.new.size, 18);
  assert.ok(readme.sizeChanged && !readme.modeChanged);
  assert.notEqual(readme.old.checksum, readme.new.checksum);
  assert.equal(readme.text?.status, 'ok');
  assert.match(readme.text!.unified!, /--- a\/README\n\+\+\+ b\/README\n@@ -1,2 \+1,3 @@\n hello\n\+there\n world\n/);
  const story = by.get('/text/story.txt')!;
  assert.match(story.text!.unified!, /-line 20\n\+line twenty\n/);
  assert.equal(by.get('/bin/tool'), undefined, 'an unchanged binary is not listed');
  const script = by.get('/bin/script')!;
  assert.ok(script.modeChanged && !script.sizeChanged);
  assert.equal(script.old.mode & 0o7777, 0o644);
  assert.equal(script.new.mode & 0o7777, 0o755);
  assert.equal(script.text?.status, 'ok');
  assert.equal(script.text!.unified!.includes('@@'), false, 'same bytes: no hunk');
  const binDir = by.get('/bin')!;
  assert.equal(binDir.new.kind, 'dir');
  assert.ok(binDir.modeChanged);
  const link = by.get('/becomes-link')!;
  assert.ok(link.kindChanged);
  assert.equal(link.new.kind, 'symlink');
  assert.equal(link.new.symlinkTarget, 'README');
  assert.equal(by.get('/becomes-dir')!.new.kind, 'dir');
  assert.deepEqual(d.removed.map((r) => [r.path, r.kind]), [['/gone', 'dir']]);
  const added = new Map(d.added.map((a) => [a.path, a]));
  assert.equal(added.get('/added.txt')!.size, 6);
  assert.equal(added.get('/new/nested/deep/file')!.kind, 'file');

  const binary = await diffCommits(fixture, S1, S2, { textDiffs: 10 });
  const tool = binary.modified.find((m) => m.path === '/bin/tool')!;
  assert.equal(tool.text?.status, 'binary');
});

test('the diff stops at its cap and says so', async () => {
  const d = await diffCommits(repo, v1, v2, { maxEntries: 3 });
  assert.equal(d.truncated, true);
  assert.equal(d.modified.length + d.removed.length + d.added.length, 3);
  assert.throws(() => ostreeDiffLines(d));
});

async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.from(c as Buffer));
  return Buffer.concat(parts);
}

test('a file downloads as committed; directories and symlinks are refused; paths cannot leave the tree', async () => {
  const f = await openFile(repo, v2, '/text/story.txt');
  assert.equal(f.entry.size, (await fsp.stat(path.join(src, 'text/story.txt'))).size);
  assert.deepEqual(await readAll(f.stream), await fsp.readFile(path.join(src, 'text/story.txt')));
  assert.deepEqual(await readAll((await openFile(repo, v1, 'bin/tool')).stream), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2, 3]));
  await assert.rejects(openFile(repo, v2, '/bin'), (e) => isCairnError(e, 'INVALID_ARGUMENT'));
  await assert.rejects(openFile(repo, v2, '/link'), (e) => isCairnError(e, 'INVALID_ARGUMENT') && (e.details as { symlinkTarget: string }).symlinkTarget === 'README');
  for (const bad of ['/../README', 'bin/../README', 'bin//tool', '/bin/', './README', 'bin/\0', 'a\\b', '/'.repeat(1) + 'x/'.repeat(300)]) {
    await assert.rejects(openFile(repo, v2, bad), (e) => isCairnError(e, 'INVALID_PATH'), bad);
  }
  await assert.rejects(openFile(repo, v2, '/README/x'), (e) => isCairnError(e, 'NOT_FOUND'));
  assert.equal((await resolvePath(repo, v2, '')).kind, 'dir');
});

test('a corrupted object fails the download stream instead of serving other bytes', async () => {
  const r = await resolvePath(repo, v2, '/text/story.txt');
  assert.equal(r.kind, 'content');
  const checksum = (r as { checksum: string }).checksum;
  const file = path.join(dir, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.filez`);
  const good = await fsp.readFile(file);
  // Same header, same size, other content: a deflate of other bytes of the same length.
  const { deflateRawSync } = await import('node:zlib');
  const headLen = 8 + good.readUInt32BE(0);
  const size = (await fsp.stat(path.join(src, 'text/story.txt'))).size;
  await fsp.writeFile(file, Buffer.concat([good.subarray(0, headLen), deflateRawSync(Buffer.alloc(size, 0x41))]));
  try {
    const f = await openFile(repo, v2, '/text/story.txt');
    await assert.rejects(readAll(f.stream), (e) => isCairnError(e, 'CHECKSUM_MISMATCH'));
  } finally {
    await fsp.writeFile(file, good);
  }
  assert.equal(REF_NAME, 'sample/main');
});
