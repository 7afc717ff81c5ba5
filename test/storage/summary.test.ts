import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { parse, serialize, Variant, type VarDict } from '../../storage/gvariant';
import { OBJECT_GVARIANT_TYPE } from '../../storage/objects/types';
import { buildSummary, listStaticDeltas, updateSummary } from '../../storage/repo/summary';
import { Repo } from '../../storage/repo/repo';
import { addRemote, commitTree, initRepo, makeSourceTree, makeTempDir, ostree, removeTempDirs } from '../helpers/ostree';

/**
 * Cairn's summary must carry exactly what `ostree summary -u` puts in it (refs,
 * sizes, checksums, per-ref and repository metadata, delta digests), and the
 * real client must accept it.
 */
let work: string;
let repoDir: string;
let c1: string;
let c2: string;
let other: string;

before(async () => {
  work = await makeTempDir('cairn-summary-');
  const t1 = await makeSourceTree(path.join(work, 't1'), { seed: 1, bigFileBytes: 200_000 });
  const t2 = await makeSourceTree(path.join(work, 't2'), { seed: 2, bigFileBytes: 200_000 });
  repoDir = await initRepo(path.join(work, 'repo'), 'archive');
  c1 = await commitTree(repoDir, { branch: 'os/stable', tree: t1, timestamp: 1709251200, metadata: { version: '1.0' } });
  c2 = await commitTree(repoDir, { branch: 'os/stable', tree: t2, timestamp: 1709337600, metadata: { version: '2.0' } });
  other = await commitTree(repoDir, { branch: 'a-first/ref', tree: t1, timestamp: 1709000000 });
  await ostree(['static-delta', 'generate', `--from=${c1}`, `--to=${c2}`], { repo: repoDir });
  await ostree(['static-delta', 'generate', '--empty', `--to=${c2}`], { repo: repoDir });
  await ostree(['summary', '-u'], { repo: repoDir });
});

after(removeTempDirs);

type Parsed = { refs: Map<string, { size: bigint; checksum: string; meta: Record<string, unknown> }>; extra: Record<string, unknown> };

/** A comparable view of a summary: refs by name, dicts as plain objects (key order is free in a{sv}). */
function view(bytes: Buffer): Parsed {
  const [refs, extra] = parse(OBJECT_GVARIANT_TYPE.summary, bytes) as [Array<[string, [bigint, Buffer, VarDict]]>, VarDict];
  const plain = (v: unknown): unknown =>
    v instanceof Variant ? plain(v.value) : Buffer.isBuffer(v) ? v.toString('hex') : Array.isArray(v) && v.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === 'string' && e[1] instanceof Variant) ? Object.fromEntries(v.map(([k, x]) => [k, plain(x)])) : v;
  return {
    refs: new Map(refs.map(([name, [size, csum, meta]]) => [name, { size, checksum: csum.toString('hex'), meta: plain(meta) as Record<string, unknown> }])),
    extra: plain(extra) as Record<string, unknown>,
  };
}

test('buildSummary carries the same refs, sizes, checksums and metadata as ostree summary -u', async () => {
  const theirs = view(await fsp.readFile(path.join(repoDir, 'summary')));
  const repo = new Repo('r', new FsBackend(repoDir));
  const oursBytes = await buildSummary(repo);
  const ours = view(oursBytes);

  assert.deepEqual([...ours.refs.keys()], ['a-first/ref', 'os/stable'], 'refs sorted by name');
  assert.deepEqual(ours.refs, theirs.refs);
  assert.equal(ours.refs.get('os/stable')!.checksum, c2);
  const commitSize = (await fsp.stat(path.join(repoDir, 'objects', c2.slice(0, 2), `${c2.slice(2)}.commit`))).size;
  assert.equal(ours.refs.get('os/stable')!.size, BigInt(commitSize));

  const { ['ostree.summary.last-modified']: lmOurs, ...restOurs } = ours.extra;
  const { ['ostree.summary.last-modified']: lmTheirs, ...restTheirs } = theirs.extra;
  assert.deepEqual(restOurs, restTheirs);
  assert.equal(typeof lmOurs, 'bigint');
  assert.equal(typeof lmTheirs, 'bigint');
  const deltas = restOurs['ostree.static-deltas'] as Record<string, string>;
  assert.deepEqual(Object.keys(deltas).sort(), [c2, `${c1}-${c2}`].sort());
  // Serialization is in normal form (parse re-serializes and compares).
  assert.ok(serialize(OBJECT_GVARIANT_TYPE.summary, parse(OBJECT_GVARIANT_TYPE.summary, oursBytes)).equals(oursBytes));
  assert.equal(other.length, 64);
});

test('delta indexes equal the ones ostree writes', async () => {
  const copy = path.join(work, 'copy');
  await fsp.cp(repoDir, copy, { recursive: true });
  const theirsIndexes = await readIndexes(copy);
  await fsp.rm(path.join(copy, 'delta-indexes'), { recursive: true });
  const repo = new Repo('r', new FsBackend(copy));
  await updateSummary(repo);
  assert.deepEqual(await readIndexes(copy), theirsIndexes);
  assert.equal((await listStaticDeltas(repo)).length, 2);
});

async function readIndexes(repo: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const root = path.join(repo, 'delta-indexes');
  for (const d of await fsp.readdir(root)) {
    for (const f of await fsp.readdir(path.join(root, d))) {
      const dict = parse('a{sv}', await fsp.readFile(path.join(root, d, f))) as VarDict;
      const deltas = (dict[0]![1].value as VarDict).map(([k, v]) => [k, (v.value as Buffer).toString('hex')]);
      out[`${d}/${f}`] = Object.fromEntries(deltas.sort());
    }
  }
  return out;
}

test('the real client reads the refs of a Cairn summary, and summary.sig never outlives its summary', async () => {
  const copy = path.join(work, 'copy2');
  await fsp.cp(repoDir, copy, { recursive: true });
  await fsp.writeFile(path.join(copy, 'summary.sig'), 'stale');
  const repo = new Repo('r', new FsBackend(copy));
  await updateSummary(repo);
  await assert.rejects(fsp.stat(path.join(copy, 'summary.sig')), /ENOENT/, 'unsigned regeneration removes a stale summary.sig');

  const viewOut = await ostree(['summary', '--view'], { repo: copy });
  assert.match(viewOut, /\* os\/stable\s*\n\s*Latest Commit \(\d+ bytes\):\s*\n?\s*[0-9a-f]{64}/);
  assert.match(viewOut, new RegExp(c2));
  const client = await initRepo(path.join(work, 'client'), 'archive');
  await addRemote(client, 'r', `file://${copy}`);
  const refs = (await ostree(['remote', 'refs', 'r'], { repo: client })).trim().split('\n').sort();
  assert.deepEqual(refs, ['r:a-first/ref', 'r:os/stable']);

  // With a signer the signature is rewritten together with every summary.
  const seen: Buffer[] = [];
  const signer = async (s: Buffer) => {
    seen.push(s);
    return serialize('a{sv}', [['ostree.sign.dummy', new Variant('aay', [createHash('sha256').update(s).digest()])]]);
  };
  const s1 = await updateSummary(repo, signer);
  const sig1 = await fsp.readFile(path.join(copy, 'summary.sig'));
  await new Promise((r) => setTimeout(r, 1100)); // last-modified has one-second resolution
  await repo.setRef('os/stable', c1);
  const s2 = await updateSummary(repo, signer);
  const sig2 = await fsp.readFile(path.join(copy, 'summary.sig'));
  assert.notDeepEqual(s1, s2);
  assert.notDeepEqual(sig1, sig2);
  assert.deepEqual(seen, [s1, s2]);
  assert.deepEqual(await fsp.readFile(path.join(copy, 'summary')), s2);
  assert.equal(view(s2).refs.get('os/stable')!.checksum, c1);
});
