/**
 * The appstream refs of a flatpak repository, as `flatpak build-update-repo`
 * makes them (flatpak's _flatpak_repo_generate_appstream), so that `flatpak
 * search` and software centres list the apps:
 *
 *   appstream2/ARCH   /appstream.xml       every app's components, each with
 *                                          <bundle type="flatpak">REF</bundle>
 *   appstream/ARCH    /appstream.xml.gz    the same, gzipped (clients < 0.9.x)
 *   both              /icons/64x64/ID.png, /icons/128x128/ID.png, and
 *                     /icons/flatpak/{64x64,128x128} -> ../SIZE (libappstream's layout)
 *
 * An app's components come from its tree: `files/share/app-info/xmls/ID.xml.gz`
 * (what flatpak-builder composes; what build-update-repo reads), else its
 * metainfo `files/share/{metainfo,appdata}/ID.{metainfo,appdata}.xml`; icons
 * from `files/share/app-info/icons/flatpak/SIZE/COMPONENT.png`, else
 * `files/share/icons/hicolor/SIZE/apps/ID.png`. End-of-life refs are left
 * out. A branch whose tree would not change gets no new commit.
 *
 * The publisher's XML is hostile input: each component is taken only if it
 * is well formed on its own (tags balanced, no DTD), its <id> matches the
 * app, and within size bounds; anything else is left out of the catalogue.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { Variant, type VarDict } from '../gvariant';
import { CairnError } from '../errors';
import { decodeCommit, encodeCommit } from '../objects/commit';
import { S_IFDIR, S_IFLNK, S_IFREG, encodeDirMeta } from '../objects/dirmeta';
import { encodeDirTree, type DirTree } from '../objects/dirtree';
import { ObjectType } from '../objects/types';
import { keyFileGet } from '../repo/config';
import type { Repo } from '../repo/repo';
import type { RefLogEntry } from '../repo/reflog';
import { isFlatpakRepo } from './index';
import { loadDirTree, findByName } from '../browse/trees';
import { openContent } from '../browse/content';

/** Largest app XML (inflated) or metainfo file read. */
export const MAX_APPSTREAM_BYTES = 4 * 1024 * 1024;
/** Most components taken from one app. */
export const MAX_COMPONENTS_PER_APP = 64;
/** Largest icon taken. */
const ICON_SIZES = ['64x64', '128x128'] as const;

export interface AppstreamRef {
  ref: string;
  commit: string;
}

interface AppEntry {
  ref: string;
  id: string;
  arch: string;
  commit: string;
}

function parseFlatpakRef(ref: string): { kind: string; id: string; arch: string; branch: string } | null {
  const p = ref.split('/');
  if (p.length !== 4 || (p[0] !== 'app' && p[0] !== 'runtime')) return null;
  return { kind: p[0]!, id: p[1]!, arch: p[2]!, branch: p[3]! };
}

/** A file of a commit's tree by path (null when absent or a folder). */
async function fileAt(repo: Repo, rootTree: string, path: string[]): Promise<string | null> {
  let tree = rootTree;
  for (let i = 0; i < path.length - 1; i++) {
    const dt = await loadDirTree(repo, tree);
    const d = findByName(dt.dirs, path[i]!);
    if (!d) return null;
    tree = d.treeChecksum;
  }
  const dt = await loadDirTree(repo, tree);
  return findByName(dt.files, path[path.length - 1]!)?.checksum ?? null;
}

async function readSmall(repo: Repo, checksum: string, max: number): Promise<Buffer | null> {
  const opened = await openContent(repo, checksum).catch(() => null);
  if (!opened) return null;
  if (opened.size > max) {
    opened.stream.destroy();
    return null;
  }
  const chunks: Buffer[] = [];
  for await (const c of opened.stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

// ---- a small, strict XML reader: enough to cut <component> elements out and check them ----

interface Component {
  /** The element's source text, `<component …>…</component>`. */
  xml: string;
  id: string;
}

const NAME = /^[A-Za-z_][A-Za-z0-9._:-]*$/;

/**
 * The <component> elements directly under the document's root (<components>
 * or a lone <component> as in a metainfo file), each well formed on its own.
 * Throws INVALID_ARGUMENT for a document that is not well formed.
 */
export function extractComponents(text: string): Component[] {
  const out: Component[] = [];
  const stack: Array<{ name: string; start: number }> = [];
  let i = 0;
  let componentStart = -1;
  let idText: string | null = null;
  let idStart = -1;
  const bad = (why: string) => new CairnError('INVALID_ARGUMENT', `appstream XML: ${why}`);
  // The components are copied into one catalogue for every app: what is not well formed in one breaks every client's parse of all.
  if (BAD_CHAR.test(text)) throw bad('a character XML does not allow');
  while (i < text.length) {
    const lt = text.indexOf('<', i);
    checkText(text.slice(i, lt === -1 ? text.length : lt), bad);
    if (lt === -1) break;
    if (text.startsWith('<!--', lt)) {
      const end = text.indexOf('--', lt + 4);
      if (end === -1) throw bad('unterminated comment');
      if (text[end + 2] !== '>') throw bad('"--" inside a comment');
      i = end + 3;
      continue;
    }
    if (text.startsWith('<![CDATA[', lt)) {
      const end = text.indexOf(']]>', lt + 9);
      if (end === -1) throw bad('unterminated CDATA');
      i = end + 3;
      continue;
    }
    if (text.startsWith('<?', lt)) {
      if (stack.length > 0) throw bad('a processing instruction inside an element');
      const end = text.indexOf('?>', lt + 2);
      if (end === -1) throw bad('unterminated processing instruction');
      i = end + 2;
      continue;
    }
    if (text.startsWith('<!', lt)) throw bad('DTDs and entity declarations are not accepted');
    const gt = text.indexOf('>', lt + 1);
    if (gt === -1) throw bad('unterminated tag');
    const inner = text.slice(lt + 1, gt);
    if (/[<]/.test(inner)) throw bad('"<" inside a tag');
    // Attribute values may not hide a ">" here: we cut at the first one and check quotes balance.
    if ((inner.match(/"/g)?.length ?? 0) % 2 !== 0 || (inner.match(/'/g)?.length ?? 0) % 2 !== 0) throw bad('a quote or ">" inside an attribute value');
    if (!inner.startsWith('/')) checkStartTag(inner, bad);
    if (inner.startsWith('/')) {
      const name = inner.slice(1).trimEnd();
      const open = stack.pop();
      if (!open || open.name !== name) throw bad(`</${name.slice(0, 50)}> does not close <${open?.name.slice(0, 50) ?? 'nothing'}>`);
      if (name === 'id' && componentStart !== -1 && idText === null && idStart !== -1) idText = text.slice(idStart, lt).trim();
      if (name === 'component' && componentStart !== -1 && (stack.length === 0 || (stack.length === 1 && stack[0]!.name === 'components'))) {
        if (idText) out.push({ xml: plainComponent(text.slice(componentStart, gt + 1)), id: idText });
        componentStart = -1;
        idText = null;
        idStart = -1;
        if (out.length > MAX_COMPONENTS_PER_APP) throw bad(`more than ${MAX_COMPONENTS_PER_APP} components`);
      }
      i = gt + 1;
      continue;
    }
    const selfClosing = inner.endsWith('/');
    const name = (selfClosing ? inner.slice(0, -1) : inner).trim().split(/\s+/)[0] ?? '';
    if (!NAME.test(name)) throw bad(`bad element name ${name.slice(0, 50)}`);
    if (stack.length > 64) throw bad('nested too deep');
    if (name === 'component' && !selfClosing && (stack.length === 0 || (stack.length === 1 && stack[0]!.name === 'components'))) componentStart = lt;
    if (name === 'id' && !selfClosing && componentStart !== -1 && stack.length >= 1 && stack[stack.length - 1]!.name === 'component') idStart = gt + 1;
    if (!selfClosing) stack.push({ name, start: lt });
    i = gt + 1;
  }
  if (stack.length) throw bad(`<${stack[stack.length - 1]!.name.slice(0, 50)}> is not closed`);
  return out;
}

/** Characters outside XML 1.0's Char production (lone surrogates cannot come out of a UTF-8 decode). */
const BAD_CHAR = /[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]/;
const REF = /&(#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6}|[A-Za-z_][A-Za-z0-9._-]*)?;?/g;
const ATTR = /\s+([A-Za-z_][A-Za-z0-9._:-]*)\s*=\s*("[^"<]*"|'[^'<]*')/y;

/** Character data or an attribute value: `&` only as the five predefined entities or a reference to an allowed character; no `]]>`. */
function checkText(s: string, bad: (why: string) => Error): void {
  if (s.includes(']]>')) throw bad('"]]>" outside CDATA');
  if (!s.includes('&')) return;
  for (const m of s.matchAll(REF)) {
    const body = m[1];
    if (!m[0].endsWith(';') || body === undefined) throw bad('a bare "&"');
    if (body.startsWith('#')) {
      const c = body[1] === 'x' ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      const ok = c === 0x9 || c === 0xa || c === 0xd || (c >= 0x20 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) || (c >= 0x10000 && c <= 0x10ffff);
      if (!ok) throw bad(`a reference to a character XML does not allow (${body.slice(0, 20)})`);
    } else if (!['amp', 'lt', 'gt', 'quot', 'apos'].includes(body)) throw bad(`an undeclared entity &${body.slice(0, 50)};`);
  }
}

/** `name attr="v" …` (optionally ending in `/`): the name first, attributes quoted, each once. */
function checkStartTag(inner: string, bad: (why: string) => Error): void {
  const name = /^[A-Za-z_][A-Za-z0-9._:-]*/.exec(inner)?.[0];
  if (!name) throw bad(`bad element name ${inner.slice(0, 50)}`);
  const seen = new Set<string>();
  let pos = name.length;
  for (;;) {
    ATTR.lastIndex = pos;
    const m = ATTR.exec(inner);
    if (!m) break;
    if (seen.has(m[1]!)) throw bad(`attribute ${m[1]!.slice(0, 50)} given twice`);
    seen.add(m[1]!);
    checkText(m[2]!.slice(1, -1), bad);
    pos = ATTR.lastIndex;
  }
  if (!/^\s*\/?$/.test(inner.slice(pos))) throw bad(`a malformed attribute in <${name.slice(0, 50)}>`);
}

/** A component's text without comments, its CDATA sections as escaped text: what is left is elements and character data only. */
function plainComponent(xml: string): string {
  return xml.replace(/<!--[\s\S]*?-->|<!\[CDATA\[([\s\S]*?)\]\]>/g, (_m, cdata: string | undefined) => (cdata === undefined ? '' : escapeXml(cdata)));
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** validate_component: the id must be the app's (or start with it and a dot); the bundle says which ref. */
export function migrate(c: Component, ref: string, id: string, runtime: string | undefined, sdk: string | undefined): string | null {
  let cid = c.id;
  if (cid.endsWith('.desktop') && !id.endsWith('.desktop')) cid = cid.slice(0, -'.desktop'.length);
  if (!(cid === id || cid.startsWith(id + '.'))) return null;
  // The component has no comments or CDATA left (plainComponent): a <bundle is an element. One with child elements is not flatpak's: the component is left out.
  let xml = c.xml.replace(/<bundle(?:\s[^>]*)?\/>|<bundle(?:\s[^>]*)?>[^<]*<\/bundle\s*>/g, '');
  if (/<\/?bundle[\s/>]/.test(xml)) return null;
  const attrs = [`type="flatpak"`];
  if (runtime && !runtime.startsWith('runtime/')) attrs.push(`runtime="${escapeXml(runtime)}"`);
  if (sdk) attrs.push(`sdk="${escapeXml(sdk)}"`);
  xml = xml.replace(/<\/component>$/, `  <bundle ${attrs.join(' ')}>${escapeXml(ref)}</bundle>\n  </component>`);
  return xml;
}

/** What an app contributes: its components (bundle added) and icons (name → content checksum per size). */
async function appContribution(repo: Repo, app: AppEntry): Promise<{ xml: string[]; icons: Map<string, Map<string, string>> } | null> {
  const bytes = await repo.readMetadata(app.commit, ObjectType.Commit);
  if (!bytes) return null;
  const commit = decodeCommit(bytes);
  const md = new Map(commit.metadata);
  if (md.has('ostree.endoflife') || md.has('ostree.endoflife-rebase')) return null;
  const metadataText = md.get('xa.metadata')?.value;
  const group = app.ref.startsWith('app/') ? 'Application' : 'Runtime';
  const keyfile = typeof metadataText === 'string' ? metadataText : '';
  const kv = (key: string) => new RegExp(`^\\[${group}\\][^[]*?^${key}=(.*)$`, 'm').exec(keyfile)?.[1]?.trim();
  const runtime = kv('runtime');
  const sdk = kv('sdk');

  let text: string | null = null;
  const gz = await fileAt(repo, commit.rootTree, ['files', 'share', 'app-info', 'xmls', `${app.id}.xml.gz`]);
  if (gz) {
    const raw = await readSmall(repo, gz, MAX_APPSTREAM_BYTES);
    if (raw) {
      try {
        text = gunzipSync(raw, { maxOutputLength: MAX_APPSTREAM_BYTES }).toString('utf8');
      } catch {
        text = null;
      }
    }
  }
  if (text === null) {
    for (const p of [
      ['files', 'share', 'metainfo', `${app.id}.metainfo.xml`],
      ['files', 'share', 'metainfo', `${app.id}.appdata.xml`],
      ['files', 'share', 'appdata', `${app.id}.appdata.xml`],
    ]) {
      const f = await fileAt(repo, commit.rootTree, p);
      const raw = f ? await readSmall(repo, f, MAX_APPSTREAM_BYTES) : null;
      if (raw) {
        text = raw.toString('utf8');
        break;
      }
    }
  }
  if (text === null) return null;
  let components: Component[];
  try {
    components = extractComponents(text);
  } catch {
    return null; // a malformed catalogue of one app is left out, not the whole repository's
  }
  const xml: string[] = [];
  const icons = new Map<string, Map<string, string>>(ICON_SIZES.map((s) => [s, new Map()]));
  for (const c of components) {
    const m = migrate(c, app.ref, app.id, runtime, sdk);
    if (!m) continue;
    xml.push(m);
    for (const size of ICON_SIZES) {
      const icon =
        (await fileAt(repo, commit.rootTree, ['files', 'share', 'app-info', 'icons', 'flatpak', size, `${c.id}.png`])) ??
        (c.id === app.id ? await fileAt(repo, commit.rootTree, ['files', 'share', 'icons', 'hicolor', size, 'apps', `${app.id}.png`]) : null);
      if (icon) icons.get(size)!.set(`${c.id}.png`, icon);
    }
  }
  return { xml, icons };
}

const DIR_MODE = S_IFDIR | 0o755;

async function writeTree(repo: Repo, t: DirTree): Promise<string> {
  return repo.writeMetadata(ObjectType.DirTree, encodeDirTree(t));
}

async function writeFile(repo: Repo, data: Buffer): Promise<string> {
  return repo.writeContent({ uid: 0, gid: 0, mode: S_IFREG | 0o644, symlinkTarget: '', xattrs: [] }, data.length, async function* () {
    yield data;
  });
}

async function writeSymlink(repo: Repo, target: string): Promise<string> {
  return repo.writeContent({ uid: 0, gid: 0, mode: S_IFLNK | 0o777, symlinkTarget: target, xattrs: [] }, 0, null);
}

/**
 * New commits for the appstream branches of every architecture, for the refs
 * as they will be after this publish (`refs`); only branches whose tree
 * changes. Objects are written (content-addressed: invisible until a ref
 * names them); the caller moves the refs with the publish.
 */
export async function buildAppstream(repo: Repo, refs: Map<string, string>, opts: { now?: Date; signCommit?: (commit: Buffer) => Promise<Buffer> } = {}): Promise<AppstreamRef[]> {
  const apps: AppEntry[] = [];
  const arches = new Set<string>();
  for (const [ref, commit] of refs) {
    const p = parseFlatpakRef(ref);
    if (!p) continue;
    arches.add(p.arch);
    apps.push({ ref, id: p.id, arch: p.arch, commit });
  }
  if (apps.length === 0) return [];
  const config = await repo.readConfig();
  const collectionId = keyFileGet(config, 'core', 'collection-id') ?? '';
  const dirmeta = await repo.writeMetadata(ObjectType.DirMeta, encodeDirMeta({ uid: 0, gid: 0, mode: DIR_MODE, xattrs: [] }));
  const out: AppstreamRef[] = [];
  for (const arch of [...arches].sort()) {
    const xml: string[] = [];
    const icons = new Map<string, Map<string, string>>(ICON_SIZES.map((s) => [s, new Map()]));
    for (const app of apps.filter((a) => a.arch === arch)) {
      const c = await appContribution(repo, app);
      if (!c) continue;
      xml.push(...c.xml);
      for (const [size, m] of c.icons) for (const [name, sum] of m) icons.get(size)!.set(name, sum);
    }
    const doc = Buffer.from(`<?xml version="1.0" encoding="UTF-8"?>\n<components version="0.8" origin="flatpak">\n  ${xml.join('\n  ')}\n</components>\n`, 'utf8');
    const sizeTrees = new Map<string, string>();
    for (const size of ICON_SIZES) sizeTrees.set(size, await writeTree(repo, { files: [...icons.get(size)!].map(([name, checksum]) => ({ name, checksum })), dirs: [] }));
    const flatpakDir = await writeTree(repo, { files: await Promise.all(ICON_SIZES.map(async (s) => ({ name: s, checksum: await writeSymlink(repo, `../${s}`) }))), dirs: [] });
    const iconsTree = await writeTree(repo, {
      files: [],
      dirs: [
        ...ICON_SIZES.map((s) => ({ name: s, treeChecksum: sizeTrees.get(s)!, metaChecksum: dirmeta })),
        { name: 'flatpak', treeChecksum: flatpakDir, metaChecksum: dirmeta },
      ],
    });
    for (const [prefix, name, data] of [
      ['appstream', 'appstream.xml.gz', gzipSync(doc)],
      ['appstream2', 'appstream.xml', doc],
    ] as const) {
      const branch = `${prefix}/${arch}`;
      const root = await writeTree(repo, { files: [{ name, checksum: await writeFile(repo, data) }], dirs: [{ name: 'icons', treeChecksum: iconsTree, metaChecksum: dirmeta }] });
      const parent = refs.get(branch) ?? null;
      let parentTs = 0n;
      if (parent) {
        const pb = await repo.readMetadata(parent, ObjectType.Commit);
        if (pb) {
          const pc = decodeCommit(pb);
          if (pc.rootTree === root && pc.rootMeta === dirmeta) continue; // no change
          parentTs = pc.timestamp;
        }
      }
      const now = BigInt(Math.floor((opts.now ?? new Date()).getTime() / 1000));
      const metadata: VarDict = [
        ['ostree.collection-binding', new Variant('s', collectionId)],
        ['ostree.ref-binding', new Variant('as', [branch])],
      ];
      const bytes = encodeCommit({ metadata, parent, subject: 'Update', body: '', timestamp: now > parentTs ? now : parentTs + 1n, rootTree: root, rootMeta: dirmeta });
      const commit = await repo.writeMetadata(ObjectType.Commit, bytes);
      if (opts.signCommit) await repo.writeCommitMeta(commit, await opts.signCommit(bytes));
      out.push({ ref: branch, commit });
    }
  }
  return out;
}

/**
 * The appstream ref moves that go with a publish's `changes` (publish.ts
 * adds them to the same switch): none unless the repository is a flatpak one
 * and an app or runtime ref moves, and none when the publisher moves
 * appstream refs itself.
 */
export async function appstreamChanges(
  repo: Repo,
  changes: RefLogEntry[],
  opts: { time: string; actor: string; signCommit?: (commit: Buffer) => Promise<Buffer> },
): Promise<RefLogEntry[]> {
  if (!changes.some((c) => c.ref.startsWith('app/') || c.ref.startsWith('runtime/'))) return [];
  if (changes.some((c) => c.ref.startsWith('appstream/') || c.ref.startsWith('appstream2/'))) return [];
  if (!(await isFlatpakRepo(repo, await repo.readConfig()))) return [];
  const refs = await repo.listRefs();
  for (const c of changes) {
    if (c.new === null) refs.delete(c.ref);
    else refs.set(c.ref, c.new);
  }
  const built = await buildAppstream(repo, refs, { now: new Date(opts.time), signCommit: opts.signCommit });
  return built.map((b) => ({ time: opts.time, ref: b.ref, old: refs.get(b.ref) ?? null, new: b.commit, actor: opts.actor }));
}
