/**
 * A unified text diff of two small text files (content objects), made with
 * jsdiff (`diff` on npm) under a bound on edits and time: both sides at most
 * MAX_TEXT_DIFF_BYTES, no NUL byte, valid UTF-8; otherwise it says why not.
 */
import { createTwoFilesPatch } from 'diff';
import { isSymlink } from '../objects/content';
import { readContent } from '../deltas/objects-io';
import type { Repo } from '../repo/repo';

export const MAX_TEXT_DIFF_BYTES = 256 * 1024;
/**
 * Edit script length jsdiff may explore before giving up, and its time limit
 * per file. jsdiff runs synchronously: each diff holds the event loop for up
 * to its time limit (two 5,000-line files with no line in common reach it),
 * so a request's diffs share a budget as well (diff.ts TEXT_DIFF_BUDGET_MS).
 */
const MAX_EDIT_LENGTH = 20_000;
export const TEXT_DIFF_TIMEOUT_MS = 250;

export type TextDiff =
  | { status: 'ok'; unified: string }
  /** A side is not a regular file (symlink), is larger than MAX_TEXT_DIFF_BYTES, is not text, or the two differ too much to diff in bounds. */
  | { status: 'not-regular' | 'too-large' | 'binary' | 'too-complex'; unified: null };

/**
 * The unified diff (3 lines of context by default) from content object
 * `oldChecksum` to `newChecksum`; either may be null (an added or removed
 * file: the diff against nothing). Both objects are read in full, verified
 * against their checksums.
 */
export async function unifiedFileDiff(
  repo: Repo,
  oldChecksum: string | null,
  newChecksum: string | null,
  opts: { oldPath?: string; newPath?: string; context?: number; timeoutMs?: number } = {},
): Promise<TextDiff> {
  const sides: string[] = [];
  for (const cs of [oldChecksum, newChecksum]) {
    if (cs === null) {
      sides.push('');
      continue;
    }
    const got = await readContent(repo, cs, MAX_TEXT_DIFF_BYTES);
    if (isSymlink(got.header)) return { status: 'not-regular', unified: null };
    if (got.size > MAX_TEXT_DIFF_BYTES || !got.data) return { status: 'too-large', unified: null };
    const text = asText(got.data);
    if (text === null) return { status: 'binary', unified: null };
    sides.push(text);
  }
  const context = Math.min(100, Math.max(0, Math.floor(opts.context ?? 3)));
  const oldName = oldChecksum === null ? '/dev/null' : `a${opts.oldPath ?? ''}`;
  const newName = newChecksum === null ? '/dev/null' : `b${opts.newPath ?? opts.oldPath ?? ''}`;
  const unified = createTwoFilesPatch(oldName, newName, sides[0]!, sides[1]!, undefined, undefined, {
    context,
    maxEditLength: MAX_EDIT_LENGTH,
    timeout: Math.max(1, Math.min(TEXT_DIFF_TIMEOUT_MS, Math.floor(opts.timeoutMs ?? TEXT_DIFF_TIMEOUT_MS))),
  });
  if (unified === undefined) return { status: 'too-complex', unified: null };
  return { status: 'ok', unified };
}

function asText(b: Buffer): string | null {
  if (b.includes(0)) return null;
  const s = b.toString('utf8');
  return Buffer.byteLength(s, 'utf8') === b.length && Buffer.from(s, 'utf8').equals(b) ? s : null;
}
