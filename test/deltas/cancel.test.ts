// Cooperative cancellation of the delta compiler: a compile asked to stop (its AbortSignal) at
// any moment — while planning objects, between parts, inside an xz compression — throws
// CancelledError (code CANCELLED) and leaves nothing behind: no part, no superblock, no
// temporary file. A compile that is not cancelled gives the same parts as ever.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { CancelledError } from '../../storage/deltas/cancel';
import { compileDelta } from '../../storage/deltas/compile';
import { deltaDir } from '../../storage/deltas/format';
import { commitFolder } from '../../storage/import/folder';
import { Repo } from '../../storage/repo/repo';
import { xzCompress, XZ_PRESET } from '../../storage/deltas/xz';
import { check, xzAsync } from 'node-liblzma';
import { pseudoRandomBytes } from '../helpers/ostree';

let work: string;
let repo: Repo;
let repoDir: string;
let v1: string;
let v2: string;

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'cairn-delta-cancel-'));
  repoDir = path.join(work, 'repo');
  repo = await Repo.init('r', new FsBackend(repoDir));
  const src = path.join(work, 'src');
  mkdirSync(path.join(src, 'etc'), { recursive: true });
  mkdirSync(path.join(src, 'usr/lib'), { recursive: true });
  for (let i = 0; i < 40; i++) writeFileSync(path.join(src, 'etc', `f${i}.conf`), `key${i}=${'v'.repeat(i * 10)}\n`);
  // Enough incompressible bytes for several parts of 1 MB, each some xz work.
  for (let i = 0; i < 5; i++) writeFileSync(path.join(src, 'usr/lib', `lib${i}.so`), pseudoRandomBytes(100 + i, 900_000));
  v1 = (await commitFolder(repo, src, 'test/main', { subject: 'v1', timestamp: 1_760_000_000n })).commit;
  writeFileSync(path.join(src, 'etc/f1.conf'), 'changed\n');
  for (let i = 7; i < 10; i++) writeFileSync(path.join(src, 'usr/lib', `lib${i}.so`), pseudoRandomBytes(990 + i, 900_000));
  v2 = (await commitFolder(repo, src, 'test/main', { parent: v1, subject: 'v2', timestamp: 1_760_003_600n })).commit;
});

after(() => rmSync(work, { recursive: true, force: true }));

/** Files of the delta `from → to` and temporary files. */
function leftovers(from: string | null, to: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name), `${rel}${e.name}/`);
      else out.push(`${rel}${e.name}`);
    }
  };
  walk(path.join(repoDir, deltaDir(from, to)), `${deltaDir(from, to)}/`);
  walk(path.join(repoDir, 'tmp'), 'tmp/');
  return out;
}

// Part files (inline: false): what a cancel must remove.
const OPTS = { maxPartSize: 1_000_000, inline: false, timestamp: new Date(1_760_000_000_000) };

for (const [from, label] of [
  [null, 'from scratch'],
  ['v1', 'v1→v2'],
] as const) {
  test(`cancelled at every stage of a ${label} compile: CancelledError, nothing left behind`, async () => {
    const f = from === null ? null : v1;
    // Stages: the Nth progress report of each phase, or `delayMs` after it (inside that part's xz).
    const stages: Array<{ phase: 'objects' | 'parts'; at: number; delayMs?: number }> = [
      { phase: 'objects', at: 0 },
      { phase: 'objects', at: 5 },
      { phase: 'parts', at: 0 },
      { phase: 'parts', at: 2 },
      { phase: 'parts', at: 1, delayMs: 20 },
    ];
    for (const stage of stages) {
      const ac = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      const run = compileDelta(repo, f, v2, {
        ...OPTS,
        signal: ac.signal,
        onProgress: (p) => {
          if (p.phase !== stage.phase || p.done < stage.at || timer) return;
          if (stage.delayMs === undefined) ac.abort();
          else timer = setTimeout(() => ac.abort(), stage.delayMs);
        },
      });
      await assert.rejects(run, (e: unknown) => {
        assert.ok(e instanceof CancelledError, `${JSON.stringify(stage)}: ${String(e)}`);
        assert.equal(e.code, 'CANCELLED');
        return true;
      });
      clearTimeout(timer);
      assert.deepEqual(leftovers(f, v2), [], `nothing left after a cancel at ${JSON.stringify(stage)}`);
    }
    // Not cancelled: it completes, with several parts, and a second compile gives the same parts.
    const a = await compileDelta(repo, f, v2, OPTS);
    assert.ok(a.partSizes.length >= 3, `several parts (${a.partSizes.length})`);
    const b = await compileDelta(repo, f, v2, { ...OPTS, replace: true });
    assert.equal(b.digest, a.digest, 'same inputs, same superblock (and so the same parts)');
  });
}

test('an already aborted signal stops a compile before it reads anything', async () => {
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(compileDelta(repo, v1, v2, { ...OPTS, replace: true, signal: ac.signal }), CancelledError);
});

test('xz in chunks (cancellable) gives exactly the bytes of a one-shot compression', async () => {
  const text = Buffer.from('lorem ipsum dolor sit amet, '.repeat(60_000));
  const data = Buffer.concat([text, pseudoRandomBytes(5, 700_000), text.subarray(0, 900_001)]);
  for (const d of [Buffer.alloc(0), data.subarray(0, 1000), data]) {
    const oneShot = await xzAsync(d, { preset: XZ_PRESET, check: check.NONE });
    assert.ok((await xzCompress(d)).equals(oneShot), `${d.length} bytes`);
  }
});
