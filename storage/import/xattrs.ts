import { execFile } from 'node:child_process';
import { CairnError } from '../errors';
import type { Xattr } from '../objects/xattrs';

/**
 * Every extended attribute (all namespaces, as `ostree commit` records them)
 * of every file below `root`, symlinks included and not followed, keyed by
 * absolute path. Node has no xattr API, so we ask `getfattr` (Debian `attr`)
 * once for the whole tree instead of once per file.
 */
export async function readTreeXattrs(root: string): Promise<Map<string, Xattr[]>> {
  const out = await new Promise<Buffer>((resolve, reject) => {
    execFile(
      'getfattr',
      ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root],
      { encoding: 'buffer', maxBuffer: 1024 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } },
      (err, stdout, stderr) => {
        if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(new CairnError('UNSUPPORTED', 'getfattr not found: install the "attr" package to read extended attributes'));
        } else if (err) {
          reject(new CairnError('IO', `getfattr failed: ${stderr.toString().trim().slice(0, 500)}`));
        } else resolve(stdout);
      },
    );
  });
  return parseGetfattrDump(out);
}

export function parseGetfattrDump(out: Buffer): Map<string, Xattr[]> {
  const result = new Map<string, Xattr[]>();
  let current: Xattr[] | undefined;
  for (const line of out.toString('latin1').split('\n')) {
    if (line.startsWith('# file: ')) {
      current = [];
      result.set(unescape(line.slice('# file: '.length)), current);
    } else if (current && line.length > 0) {
      const eq = line.indexOf('=');
      if (eq <= 0) continue;
      const name = unescape(line.slice(0, eq));
      const raw = line.slice(eq + 1);
      current.push({ name, value: raw.startsWith('0x') ? Buffer.from(raw.slice(2), 'hex') : Buffer.alloc(0) });
    }
  }
  return result;
}

/** getfattr writes odd bytes as \ooo octal and a backslash as \\; the rest is raw (read as latin1 bytes). */
function unescape(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && /^[0-7]{3}$/.test(s.slice(i + 1, i + 4))) {
      bytes.push(parseInt(s.slice(i + 1, i + 4), 8));
      i += 3;
    } else if (s[i] === '\\' && s[i + 1] === '\\') {
      bytes.push(0x5c);
      i += 1;
    } else bytes.push(s.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}
