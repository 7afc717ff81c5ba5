// A repository made by `flatpak build-update-repo` (summary.idx, summaries/, xa.* keys, a title in
// its config) adopted by Cairn: a user added it before adoption; after `cairn adopt` and a `cairn
// push --all` of v2 the repository's summary.idx is fresh (it names v2), the title is kept, and the
// user's `flatpak update` gets v2.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { parse, type VarDict } from '../../storage/gvariant';
import { OBJECT_GVARIANT_TYPE } from '../../storage/objects/types';
import { parseIndex } from '../../storage/flatpak/index';
import { startCairn, type CairnProcess } from '../helpers/cairn-process';
import { cli } from '../e2e/publish-helpers';
import { APP, ARCH, Builder, flatpak, revParse, summaryMeta } from './helpers';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-flatpak-adopt-'));
const build = new Builder(work);
const data = path.join(work, 'data');
const served = path.join(data, 'repos', 'upstream');
const user = path.join(work, 'user');
let cairn: CairnProcess;

before(async () => {
  build.runtime();
  build.app('v1');
  // The publisher's own repository: a copy of the build repository, indexed by flatpak itself.
  fs.mkdirSync(path.dirname(served), { recursive: true });
  execFileSync('cp', ['-a', build.repo, served]);
  execFileSync('flatpak', ['build-update-repo', '--title=Upstream Apps', served], { env: { ...process.env, HOME: build.home } });
  assert.ok(fs.existsSync(path.join(served, 'summary.idx')));
  cairn = await startCairn({ dataDir: data, env: { CAIRN_LOG: 'info' } });
});

after(async () => {
  await cairn?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

function indexedCommit(ref: string): string | undefined {
  const idx = parseIndex(fs.readFileSync(path.join(served, 'summary.idx')))!;
  const e = idx.subsummaries.get(ARCH)!;
  const [refs] = parse(OBJECT_GVARIANT_TYPE.summary, gunzipSync(fs.readFileSync(path.join(served, 'summaries', `${e.digest}.gz`)))) as [Array<[string, [bigint, Buffer, VarDict]]>];
  return refs.find(([r]) => r === ref)?.[1][1].toString('hex');
}

test('pushing into an adopted build-update-repo repository keeps summary.idx fresh and users get the update', async () => {
  const ref = `app/${APP}/${ARCH}/stable`;
  // A user of the repository as flatpak published it (unsigned).
  flatpak(user, ['remote-add', '--user', '--no-gpg-verify', 'up', `${cairn.url}/repo/upstream/`]);
  flatpak(user, ['install', '--user', '-y', '--noninteractive', 'up', APP]);
  assert.equal(flatpak(user, ['run', APP]).out.trim(), 'hello from v1');

  const adopt = await cli(['adopt', 'upstream', '--data', data]);
  assert.equal(adopt.code, 0, adopt.stderr);
  assert.equal(indexedCommit(ref), revParse(served, ref), 'adoption regenerates the index');
  const t = await cli(['token', '--data', data, '--scope', 'push', '--repo', 'upstream', '--ttl', '1h', '--sub', 'adopt-e2e']);
  assert.equal(t.code, 0, t.stderr);

  build.app('v2');
  const p = await cli(['push', '--url', `${cairn.url}/repo/upstream`, '--token', t.stdout.trim(), '--repo', build.repo, '--all']);
  assert.equal(p.code, 0, p.stderr);
  const v2 = revParse(build.repo, ref);
  assert.equal(revParse(served, ref), v2);
  assert.equal(indexedCommit(ref), v2, 'summary.idx names the pushed commit');
  const md = summaryMeta(fs.readFileSync(path.join(served, 'summary')));
  assert.equal(md.get('xa.title')?.value, 'Upstream Apps', "the publisher's title is kept");
  assert.ok(md.has('xa.cache'));

  flatpak(user, ['update', '--user', '-y', '--noninteractive']);
  assert.equal(flatpak(user, ['run', APP]).out.trim(), 'hello from v2');
});
