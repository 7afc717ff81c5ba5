// Unit checks of the flatpak modules: summary diffs ("xadf") round-trip as flatpak applies them,
// hostile appstream XML is refused per document, remote-config key-file escapes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { applySummaryDiff, summaryDiff } from '../../storage/flatpak/index';
import { extractComponents } from '../../storage/flatpak/appstream';
import { pickRef } from '../../storage/flatpak/flatpakrepo';

test('summary diffs reproduce the new bytes from the old ones, and carry only the changed middle', () => {
  const cases: Array<[Buffer, Buffer]> = [
    [Buffer.alloc(0), Buffer.from('new')],
    [Buffer.from('old'), Buffer.alloc(0)],
    [Buffer.from('same'), Buffer.from('same')],
  ];
  for (let i = 0; i < 50; i++) {
    const base = randomBytes(1000 + i * 37);
    const changed = Buffer.concat([base.subarray(0, 300 + i), randomBytes(i), base.subarray(400 + i)]);
    cases.push([base, changed], [changed, base]);
  }
  for (const [a, b] of cases) assert.deepEqual(applySummaryDiff(a, summaryDiff(a, b)), b);
  const big = randomBytes(100_000);
  const one = Buffer.from(big);
  one[50_000] ^= 1;
  assert.ok(summaryDiff(big, one).length < 64);
  assert.throws(() => applySummaryDiff(Buffer.alloc(10), Buffer.from('xadf\x01\x00\x00\x00\x20\x00\x00\x00', 'latin1')), /past the old bytes/);
  assert.throws(() => applySummaryDiff(Buffer.alloc(10), Buffer.from('nope\x00\x00\x00\x00', 'latin1')), /not a summary diff/);
});

test('appstream components are cut from well-formed documents only', () => {
  const ok = extractComponents('<?xml version="1.0"?>\n<components><!-- c --><component type="desktop"><id>org.x.A</id><name><![CDATA[a<b]]></name></component><component><id>org.x.A.Plugin</id></component></components>');
  assert.deepEqual(ok.map((c) => c.id), ['org.x.A', 'org.x.A.Plugin']);
  assert.match(ok[0]!.xml, /^<component type="desktop">.*<\/component>$/s);
  const lone = extractComponents('<?xml version="1.0"?><component><id>org.x.B</id></component>');
  assert.deepEqual(lone.map((c) => c.id), ['org.x.B']);
  for (const bad of [
    '<!DOCTYPE x [<!ENTITY a "b">]><components/>',
    '<components><component><id>a</id></components>',
    '<components><component><id>a</id></component>',
    '<components><component a="x>y"><id>a</id></component></components>',
    '<components><component><id>a</id></component></components><!--',
    '<components><1bad/></components>',
    '<a>' + '<b>'.repeat(100) + '</b>'.repeat(100) + '</a>',
  ]) {
    assert.throws(() => extractComponents(bad), /appstream XML/, bad.slice(0, 60));
  }
  assert.throws(() => extractComponents('<components>' + '<component><id>x</id></component>'.repeat(100) + '</components>'), /more than 64 components/);
});

test('.flatpakref picks the app on the branch asked for, the default branch, or the only one', () => {
  const refs = ['app/org.x.A/x86_64/stable', 'app/org.x.A/x86_64/beta', 'runtime/org.x.P/x86_64/1', 'app/org.x.Ab/x86_64/stable'];
  assert.equal(pickRef(refs, 'org.x.A', 'beta', undefined).ref, 'app/org.x.A/x86_64/beta');
  assert.equal(pickRef(refs, 'org.x.A', undefined, 'stable').ref, 'app/org.x.A/x86_64/stable');
  assert.throws(() => pickRef(refs, 'org.x.A', undefined, undefined), /several branches/);
  assert.deepEqual(pickRef(refs, 'org.x.P', undefined, undefined), { ref: 'runtime/org.x.P/x86_64/1', branch: '1', runtime: true });
  assert.throws(() => pickRef(refs, 'org.x.Z', undefined, undefined), /no app or runtime/);
});
