/**
 * The repository `config` file is a GKeyFile. We only need to read a few keys
 * and to write the archive repo's own; comments and unknown keys are kept.
 */
export type KeyFile = Map<string, Map<string, string>>;

export function parseKeyFile(text: string): KeyFile {
  const out: KeyFile = new Map();
  let group: Map<string, string> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const g = /^\[(.+)\]$/.exec(line);
    if (g) {
      group = out.get(g[1]!) ?? new Map();
      out.set(g[1]!, group);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq > 0 && group) group.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  return out;
}

export function serializeKeyFile(kf: KeyFile): string {
  let s = '';
  for (const [name, entries] of kf) {
    if (s) s += '\n';
    s += `[${name}]\n`;
    for (const [k, v] of entries) s += `${k}=${v}\n`;
  }
  return s;
}

export function keyFileGet(kf: KeyFile, group: string, key: string): string | undefined {
  return kf.get(group)?.get(key);
}

export function keyFileSet(kf: KeyFile, group: string, key: string, value: string): void {
  let g = kf.get(group);
  if (!g) kf.set(group, (g = new Map()));
  g.set(key, value);
}

export function keyFileBool(kf: KeyFile, group: string, key: string): boolean {
  return keyFileGet(kf, group, key)?.toLowerCase() === 'true';
}
