// Which Debian mirror bench:delta debootstraps from: the machine's own apt sources, as a
// `debootstrap` user would pick them, rather than a host name written into the code.
//
// Order: CAIRN_BENCH_MIRROR / CAIRN_BENCH_SECURITY_MIRROR (explicit override), then the first
// suitable entry of /etc/apt/sources.list, /etc/apt/sources.list.d/*.list (one-line format) and
// /etc/apt/sources.list.d/*.sources (deb822), in that order (apt's own: sources.list first, then the
// folder's files by name), and only then deb.debian.org. "Suitable": a `deb` (not `deb-src`)
// entry that is enabled, whose URI apt and debootstrap can both fetch from (http, https, ftp,
// file), that lists the suite (`bookworm` for the archive, `bookworm-security` — or the old
// `bookworm/updates` — for the security archive) and the `main` component. When no entry names the
// suite (a host on another release), an entry whose URI path ends in /debian (or /debian-security)
// is taken: the archive is the same, only the suite differs.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

export interface AptSource {
  types: string[];
  uris: string[];
  suites: string[];
  components: string[];
  enabled: boolean;
  /** Where it was read: file and line (one-line format) or paragraph start (deb822). */
  origin: string;
}

export interface MirrorChoice {
  url: string;
  /** Human-readable: where the URL came from. */
  source: string;
}

export const DEFAULT_MIRROR = 'http://deb.debian.org/debian';
export const DEFAULT_SECURITY_MIRROR = 'http://deb.debian.org/debian-security';

/** One-line format: `deb [ opt=val … ] URI SUITE [COMPONENT…]`, `#` comments. */
export function parseOneLine(text: string, file: string): AptSource[] {
  const out: AptSource[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) continue;
    let rest = line;
    const typeMatch = /^(\S+)\s+/.exec(rest);
    if (!typeMatch) continue;
    const type = typeMatch[1]!;
    if (type !== 'deb' && type !== 'deb-src') continue;
    rest = rest.slice(typeMatch[0].length);
    let enabled = true;
    // options: `[arch=amd64 signed-by=/x.gpg]`, possibly with spaces inside the brackets
    if (rest.startsWith('[')) {
      const end = rest.indexOf(']');
      if (end < 0) continue;
      const optsText = rest.slice(1, end);
      if (/(^|\s)enabled=no(\s|$)/i.test(optsText)) enabled = false;
      rest = rest.slice(end + 1).trim();
    }
    const words = rest.split(/\s+/).filter(Boolean);
    if (words.length < 2) continue;
    out.push({ types: [type], uris: [words[0]!], suites: [words[1]!], components: words.slice(2), enabled, origin: `${file}:${i + 1}` });
  }
  return out;
}

/** deb822 (`*.sources`): paragraphs of `Field: value` lines, continuation lines indented, `#` comments. */
export function parseDeb822(text: string, file: string): AptSource[] {
  const out: AptSource[] = [];
  let fields = new Map<string, string>();
  let startLine = 0;
  let last: string | undefined;
  const flush = () => {
    if (fields.size) {
      const words = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
      const enabled = !/^(no|false|0)$/i.test((fields.get('enabled') ?? 'yes').trim());
      out.push({ types: words('types'), uris: words('uris'), suites: words('suites'), components: words('components'), enabled, origin: `${file}:${startLine}` });
    }
    fields = new Map();
    last = undefined;
  };
  for (const [i, raw] of text.split('\n').entries()) {
    if (/^\s*#/.test(raw)) continue; // comment lines do not end a paragraph
    if (!raw.trim()) {
      flush();
      continue;
    }
    if (/^\s/.test(raw)) {
      if (last) fields.set(last, `${fields.get(last) ?? ''} ${raw.trim()}`);
      continue;
    }
    const m = /^([A-Za-z0-9-]+)\s*:\s*(.*)$/.exec(raw);
    if (!m) continue;
    if (!fields.size) startLine = i + 1;
    last = m[1]!.toLowerCase();
    fields.set(last, m[2]!.trim());
  }
  flush();
  return out;
}

/** Every source entry of the machine's apt configuration, in apt's order. */
export async function readAptSources(etc = '/etc/apt'): Promise<AptSource[]> {
  const out: AptSource[] = [];
  const read = (p: string) => fsp.readFile(p, 'utf8').catch(() => null);
  const main = await read(path.join(etc, 'sources.list'));
  if (main !== null) out.push(...parseOneLine(main, path.join(etc, 'sources.list')));
  const dir = path.join(etc, 'sources.list.d');
  const names = (await fsp.readdir(dir).catch(() => [] as string[])).sort();
  for (const n of names) {
    const p = path.join(dir, n);
    if (n.endsWith('.list')) {
      const t = await read(p);
      if (t !== null) out.push(...parseOneLine(t, p));
    } else if (n.endsWith('.sources')) {
      const t = await read(p);
      if (t !== null) out.push(...parseDeb822(t, p));
    }
  }
  return out;
}

const FETCHABLE = /^(https?|ftp|file):/i;

/** The first suitable URI for `suites` (any of them) in `sources`; see the file comment. */
export function pickMirror(sources: AptSource[], suites: string[], pathTail: RegExp): MirrorChoice | null {
  const usable = sources.filter((s) => s.enabled && s.types.includes('deb') && (s.components.length === 0 || s.components.includes('main')));
  for (const s of usable) {
    if (!s.suites.some((x) => suites.includes(x.replace(/\/$/, '')))) continue;
    const uri = s.uris.find((u) => FETCHABLE.test(u));
    if (uri) return { url: uri.replace(/\/+$/, ''), source: `${s.origin} (suite ${s.suites.join(' ')})` };
  }
  for (const s of usable) {
    const uri = s.uris.find((u) => FETCHABLE.test(u) && pathTail.test(u.replace(/\/+$/, '')));
    if (uri) return { url: uri.replace(/\/+$/, ''), source: `${s.origin} (same archive, suite ${s.suites.join(' ')})` };
  }
  return null;
}

/** The archive and security mirrors for `suite`: environment, then apt sources, then deb.debian.org. */
export async function debianMirrors(suite: string, etc = '/etc/apt'): Promise<{ mirror: MirrorChoice; security: MirrorChoice }> {
  const sources = await readAptSources(etc).catch(() => [] as AptSource[]);
  const envMirror = process.env.CAIRN_BENCH_MIRROR;
  const envSecurity = process.env.CAIRN_BENCH_SECURITY_MIRROR;
  const mirror: MirrorChoice = envMirror
    ? { url: envMirror.replace(/\/+$/, ''), source: 'CAIRN_BENCH_MIRROR' }
    : (pickMirror(sources, [suite], /\/debian$/) ?? { url: DEFAULT_MIRROR, source: `default (no suitable deb entry for ${suite} in ${etc}/sources.list{,.d})` });
  const security: MirrorChoice = envSecurity
    ? { url: envSecurity.replace(/\/+$/, ''), source: 'CAIRN_BENCH_SECURITY_MIRROR' }
    : (pickMirror(sources, [`${suite}-security`, `${suite}/updates`], /\/debian-security$/) ?? {
        url: DEFAULT_SECURITY_MIRROR,
        source: `default (no suitable deb entry for ${suite}-security in ${etc}/sources.list{,.d})`,
      });
  return { mirror, security };
}
