// History, refs, closure sizes, deltas of a commit and repository stats
// (storage/browse) on a repository made by the real ostree CLI: history
// pages follow `ostree log`, stop cleanly where a parent is missing, refs
// carry their commits' fields, closure figures match what `ostree ls -R -C`
// and the files on disk say, stats match a count of the files.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { Repo } from '../../storage/repo/repo';
import { refHistory, stepsBack, type HistoryEntry } from '../../storage/browse/history';
import { listRefDetails, refDetail } from '../../storage/browse/refs';
import { cachedClosureSize, commitClosureSize } from '../../storage/browse/closure-size';
import { deltasOfCommit } from '../../storage/browse/deltas';
import { repoStats } from '../../storage/browse/stats';
import { commitDetail } from '../../storage/browse/commit';
import { isCairnError } from '../../storage/errors';
import { commitTree, initRepo, makeTempDir, ostree, removeTempDirs } from '../helpers/ostree';

let work: string;
let dir: string;
let repo: Repo;
/** os/main's commits, oldest first. */
const main: string[] = [];
let other: string;

before(async () => {
  work = await makeTempDir('cairn-browse-views-');
  dir = await initRepo(path.join(work, 'repo'), 'archive');
  const src = path.join(work, 'src');
  await fsp.mkdir(path.join(src, 'sub'), { recursive: true });
  await fsp.writeFile(path.join(src, 'shared'), 'same in every commit\n');
  await fsp.writeFile(path.join(src, 'sub', 'dup1'), 'duplicate\n');
  await fsp.writeFile(path.join(src, 'sub', 'dup2'), 'duplicate\n'); // same content object twice
  await fsp.symlink('shared', path.join(src, 'link'));
  for (let i = 1; i <= 7; i++) {
    await fsp.writeFile(path.join(src, 'changing'), `version ${i}\n`.repeat(i * 100));
    main.push(await commitTree(dir, { branch: 'os/main', tree: src, subject: `release ${i}`, timestamp: 1700000000 + i * 60, metadata: { version: `1.${i}` } }));
  }
  other = await commitTree(dir, { branch: 'os/other', tree: src, subject: 'other', timestamp: 1700001000 });
  await ostree(['static-delta', 'generate', `--from=${main[5]}`, `--to=${main[6]}`], { repo: dir });
  await ostree(['static-delta', 'generate', '--empty', `--to=${main[6]}`], { repo: dir });
  repo = new Repo('t', new FsBackend(dir));
});

after(removeTempDirs);

test('history pages follow `ostree log`, newest first, the cursor leading on; the last page says the history ends at a root', async () => {
  const log = await ostree(['log', 'os/main'], { repo: dir });
  const logged = [...log.matchAll(/^commit ([0-9a-f]{64})$/gm)].map((m) => m[1]);
  assert.deepEqual(logged, [...main].reverse());
  const seen: HistoryEntry[] = [];
  let cursor: string | null = null;
  let pages = 0;
  for (;;) {
    const page = await refHistory(repo, 'os/main', { cursor, limit: 3 });
    pages++;
    assert.equal(page.head, main[6]);
    seen.push(...page.entries);
    if (!page.next) {
      assert.deepEqual(page.end, { reason: 'root' });
      break;
    }
    assert.equal(page.end, null);
    cursor = page.next;
  }
  assert.equal(pages, 3);
  assert.deepEqual(seen.map((e) => e.checksum), logged);
  assert.deepEqual(seen.map((e) => e.version), ['1.7', '1.6', '1.5', '1.4', '1.3', '1.2', '1.1']);
  assert.equal(seen[0]!.subject, 'release 7');
  assert.equal(seen[0]!.timestamp, 1700000420);
  assert.equal(seen[0]!.parent, main[5]);
  assert.equal(seen[6]!.parent, null);
  const capped = await refHistory(repo, 'os/main', { limit: 10_000 });
  assert.equal(capped.entries.length, 7, 'limit is capped at 200, the history is 7 long');
  await assert.rejects(refHistory(repo, 'os/none'), (e) => isCairnError(e, 'NOT_FOUND'));
  await assert.rejects(refHistory(repo, 'os/main', { cursor: 'zz' }), (e) => isCairnError(e, 'INVALID_CHECKSUM'));
});

test('a shallow history stops cleanly at the missing parent and says so, as `ostree log` does', async () => {
  const copy = path.join(work, 'shallow');
  await fsp.cp(dir, copy, { recursive: true });
  const gone = main[2]!;
  await fsp.rm(path.join(copy, 'objects', gone.slice(0, 2), `${gone.slice(2)}.commit`));
  const log = await ostree(['log', 'os/main'], { repo: copy });
  assert.match(log, /History beyond this commit not fetched/);
  const logged = [...log.matchAll(/^commit ([0-9a-f]{64})$/gm)].map((m) => m[1]);
  const shallow = new Repo('s', new FsBackend(copy));
  const page = await refHistory(shallow, 'os/main', { limit: 200 });
  assert.deepEqual(page.entries.map((e) => e.checksum), logged);
  assert.deepEqual(page.end, { reason: 'missing', commit: gone, tombstone: false });
  assert.equal(page.next, null);
  // Exactly at a page boundary: the next page starts at the missing commit and the cursor is refused as absent.
  const first = await refHistory(shallow, 'os/main', { limit: 4 });
  assert.equal(first.next, gone);
  await assert.rejects(refHistory(shallow, 'os/main', { cursor: first.next }), (e) => isCairnError(e, 'NOT_FOUND'));
  assert.deepEqual(await stepsBack(shallow, main[6]!, main[0]!), { steps: null, bounded: false });
  assert.deepEqual(await stepsBack(repo, main[6]!, main[0]!), { steps: 6, bounded: false });
  assert.deepEqual(await stepsBack(repo, main[6]!, main[0]!, 3), { steps: null, bounded: true });
});

test('refs with details, paged by name', async () => {
  const all = await listRefDetails(repo);
  assert.deepEqual(all.refs.map((r) => [r.ref, r.commit, r.summary?.subject, r.summary?.version, r.signed]), [
    ['os/main', main[6], 'release 7', '1.7', false],
    ['os/other', other, 'other', null, false],
  ]);
  assert.equal(all.total, 2);
  assert.equal(all.next, null);
  const p1 = await listRefDetails(repo, { limit: 1 });
  assert.deepEqual(p1.refs.map((r) => r.ref), ['os/main']);
  assert.equal(p1.next, 'os/main');
  const p2 = await listRefDetails(repo, { limit: 1, after: p1.next });
  assert.deepEqual(p2.refs.map((r) => r.ref), ['os/other']);
  assert.equal(p2.next, null);
  assert.deepEqual((await listRefDetails(repo, { prefix: 'os/o' })).refs.map((r) => r.ref), ['os/other']);
  await assert.rejects(refDetail(repo, 'os/none'), (e) => isCairnError(e, 'NOT_FOUND'));
});

/** Objects of a commit's closure and their figures, from `ostree ls -R -C` and the files on disk. */
async function closureFromCli(commit: string): Promise<{ objects: number; archived: number; unpacked: number }> {
  const ls = await ostree(['ls', '-R', '-C', commit], { repo: dir });
  const objects = new Map<string, string>([[commit, 'commit']]);
  const unpacked = new Map<string, number>();
  for (const line of ls.split('\n').filter(Boolean)) {
    const f = line.split(/\s+/);
    if (line.startsWith('d')) {
      objects.set(f[4]!, 'dirtree');
      objects.set(f[5]!, 'dirmeta');
    } else {
      objects.set(f[4]!, 'filez');
      if (line.startsWith('-')) unpacked.set(f[4]!, Number(f[3]));
    }
  }
  let archived = 0;
  for (const [cs, ext] of objects) archived += (await fsp.stat(path.join(dir, 'objects', cs.slice(0, 2), `${cs.slice(2)}.${ext}`))).size;
  return { objects: objects.size, archived, unpacked: [...unpacked.values()].reduce((a, b) => a + b, 0) };
}

test('closure figures match `ostree ls -R -C` and the files on disk; memoised when complete; capped walks say so', async () => {
  const expected = await closureFromCli(main[6]!);
  assert.equal(cachedClosureSize(repo, main[6]!), null);
  const got = await commitClosureSize(repo, main[6]!);
  assert.deepEqual(
    { objects: got.objects, archived: got.archivedBytes, unpacked: got.unpackedBytes, missing: got.missing, truncated: got.truncated },
    { ...expected, missing: 0, truncated: false },
  );
  assert.equal(got.objects, 1 + got.dirtrees + got.dirmetas + got.contentObjects);
  assert.equal(cachedClosureSize(repo, main[6]!), got);
  assert.equal(await commitClosureSize(repo, main[6]!), got, 'the second call is the memo');
  const capped = await commitClosureSize(repo, main[5]!, { maxObjects: 3 });
  assert.equal(capped.truncated, true);
  assert.equal(capped.objects, 3);
  assert.equal(cachedClosureSize(repo, main[5]!), null, 'a capped walk is not memoised');
});

test('deltas to and from a commit with their sizes; commit detail carries them', async () => {
  const listed = await ostree(['static-delta', 'list'], { repo: dir });
  assert.match(listed, new RegExp(`${main[5]}-${main[6]}`));
  const d = await deltasOfCommit(repo, main[6]!);
  assert.deepEqual(d.to.map((x) => [x.from, x.to]).sort(), [[main[5], main[6]], [null, main[6]]].sort());
  assert.deepEqual(d.from, []);
  const d5 = await deltasOfCommit(repo, main[5]!);
  assert.deepEqual(d5.from.map((x) => x.name), [`${main[5]}-${main[6]}`]);
  // Sizes: the files of each delta folder.
  let total = 0;
  const walk = async (p: string): Promise<void> => {
    for (const e of await fsp.readdir(p, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(path.join(p, e.name));
      else total += (await fsp.stat(path.join(p, e.name))).size;
    }
  };
  await walk(path.join(dir, 'deltas'));
  assert.equal(d.to.reduce((s, x) => s + x.size, 0), total);
  const detail = await commitDetail(repo, main[6]!);
  assert.deepEqual(detail.deltas, d);
  assert.equal(detail.closure?.objects, (await closureFromCli(main[6]!)).objects);
  assert.equal(detail.parentPresent, true);
  assert.deepEqual(detail.metadata.find((m) => m.key === 'version'), { key: 'version', type: 's', value: '1.7' });
});

test('repository stats match a count of the files on disk', async () => {
  const s = await repoStats(repo);
  const want: Record<string, { count: number; bytes: number }> = {};
  for (const sub of await fsp.readdir(path.join(dir, 'objects'))) {
    for (const f of await fsp.readdir(path.join(dir, 'objects', sub))) {
      const ext = f.slice(f.indexOf('.') + 1);
      const type = ext === 'filez' ? 'file' : ext;
      want[type] ??= { count: 0, bytes: 0 };
      want[type].count++;
      want[type].bytes += (await fsp.stat(path.join(dir, 'objects', sub, f))).size;
    }
  }
  for (const [type, v] of Object.entries(s.objects)) assert.deepEqual(v, want[type] ?? { count: 0, bytes: 0 }, type);
  assert.equal(s.refs, 2);
  assert.equal(s.deltas.count, 2);
  assert.equal(s.deltaLeftovers.count, 0);
  assert.equal(s.truncated, false);
  assert.equal((await repoStats(repo, { maxKeys: 5 })).truncated, true);
});
