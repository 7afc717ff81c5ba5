import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { enumerateCommit, openLocalRepo, openObject, statObjects } from '../../cli/push/local';
import { ObjectType } from '../../storage/objects/types';
import { FIXTURE_REPO, S1 } from '../helpers/fixtures';

/**
 * The push's view of its local repository: the walk lists every object
 * without looking for content files; statObjects finds the ones that are not
 * there (a partial pull), so the push refuses only what neither side has.
 */
test('local walk: every object listed, a missing content file found by statObjects, not by the walk', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cairn-push-local-'));
  try {
    cpSync(FIXTURE_REPO, dir, { recursive: true });
    const { repo, root } = await openLocalRepo(dir);
    const full = await enumerateCommit(repo, root, S1);
    const content = full.objects.filter((o) => o.type === ObjectType.File);
    assert.ok(content.length > 0);
    assert.deepEqual(full.absent, []);
    const { sizes, absent } = await statObjects(full.objects);
    assert.deepEqual(absent, []);
    for (const o of full.objects) assert.equal(sizes.get(o.name), readFileSync(o.file).length, o.name);

    // A partial local repository: one content file gone.
    const gone = content[0]!;
    rmSync(gone.file);
    const partial = await enumerateCommit(repo, root, S1);
    assert.deepEqual(partial.objects.map((o) => o.name), full.objects.map((o) => o.name), 'the walk lists the same objects');
    assert.deepEqual(partial.absent, [], 'content is not looked for during the walk');
    assert.deepEqual((await statObjects(partial.objects)).absent, [gone.name]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('local objects read whole or streamed give the same bytes', async () => {
  const { repo, root } = await openLocalRepo(FIXTURE_REPO);
  const { objects } = await enumerateCommit(repo, root, S1);
  const { sizes } = await statObjects(objects);
  for (const o of objects) {
    const read = async (size?: number) => {
      const parts: Buffer[] = [];
      for await (const c of openObject(o.file, size)) parts.push(Buffer.from(c));
      return Buffer.concat(parts);
    };
    const expected = readFileSync(o.file);
    assert.deepEqual(await read(sizes.get(o.name)), expected, `${o.name} in one read`);
    assert.deepEqual(await read(), expected, `${o.name} streamed`);
  }
});
