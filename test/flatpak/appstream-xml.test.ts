// The appstream catalogue of a flatpak repository is every app's components
// in one document: a component that is not well formed XML breaks `flatpak
// search` and software centres for every app of the repository. So what one
// publisher's XML may carry into it is checked beyond tag balance: entity
// references, characters, attribute syntax, comments, processing
// instructions; and the <bundle> Cairn replaces is removed without cutting
// across elements, comments or CDATA.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { extractComponents, migrate } from '../../storage/flatpak/appstream';

const wrap = (inner: string) => `<?xml version="1.0"?>\n<components><component><id>org.x.A</id>${inner}</component></components>`;

test('components that would make the shared catalogue malformed are refused', () => {
  for (const inner of [
    '<name>&xxe;</name>', // undeclared entity (no DTD: a fatal error for libxml2 and expat)
    '<name>a & b</name>', // bare ampersand
    '<name>&#0;</name>', // reference to a character XML does not allow
    '<name>&#x1F;</name>',
    '<name>\u0001</name>', // control character
    '<name>a ]]> b</name>',
    '<name lang=en>a</name>', // unquoted attribute
    '<name lang="en" lang="fr">a</name>', // attribute given twice
    '<name "x">a</name>',
    '<name lang="&nope;">a</name>',
    '<!-- a -- b -->',
    '<?xml version="1.0"?>', // an XML declaration inside an element
    '< name>a</name>',
    '<name>a</ name>',
  ]) {
    assert.throws(() => extractComponents(wrap(inner)), /appstream XML/, inner);
  }
});

test('predefined entities, character references, comments and CDATA are still taken; comments dropped, CDATA as text', () => {
  const [c] = extractComponents(wrap('<!-- note --><name lang="en" xml:lang=\'fr\'>A &amp; B &#233; &#x1F600;</name><summary><![CDATA[x < y & z]]></summary>'));
  assert.equal(c!.xml, '<component><id>org.x.A</id><name lang="en" xml:lang=\'fr\'>A &amp; B &#233; &#x1F600;</name><summary>x &lt; y &amp; z</summary></component>');
});

test('the bundle Cairn replaces is removed without cutting across elements, comments or CDATA', () => {
  const cases = [
    '<!-- <bundle --><name>n</name><bundle type="flatpak">app/org.other.B/x86_64/stable</bundle>',
    '<summary><![CDATA[<bundle>]]></summary><bundle>q</bundle>',
    '<a><bundle type="flatpak"/></a><b><bundle>q</bundle></b>',
    '<bundle><bundle>q</bundle></bundle>',
  ];
  for (const inner of cases) {
    const [c] = extractComponents(wrap(inner));
    const m = migrate(c!, 'app/org.x.A/x86_64/stable', 'org.x.A', undefined, undefined);
    if (m === null) continue; // left out of the catalogue: fine
    // What goes into the catalogue is well formed, and names only this app's ref.
    const [again] = extractComponents(`<components>${m}</components>`);
    assert.ok(again, inner);
    assert.deepEqual([...m.matchAll(/<bundle[^>]*>([^<]*)<\/bundle>/g)].map((x) => x[1]), ['app/org.x.A/x86_64/stable'], inner);
  }
});
