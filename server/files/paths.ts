import { CairnError } from '../../storage/errors';

/**
 * Turns the raw, still percent-encoded path below a route prefix into decoded
 * segments, decoding exactly once. Deliberately not `decodeURIComponent` on
 * the whole path and not a form decoder:
 * - `+` stays a plus (mb64 names under deltas/ contain it; FORMATS.md §6);
 * - an encoded `/` or `\` (`%2F`, `%5C`) would smuggle a separator past the
 *   segment checks, so it is refused rather than decoded.
 * Legality of the segments themselves (`..`, NUL, length) is `validateKey`'s job.
 */
export function decodePathSegments(raw: string): string[] {
  return raw.split('/').map((seg) => {
    if (!seg.includes('%')) return seg;
    if (/%(2f|5c)/i.test(seg)) throw new CairnError('INVALID_PATH', 'invalid path: encoded separator');
    try {
      return decodeURIComponent(seg);
    } catch {
      throw new CairnError('INVALID_PATH', 'invalid path: bad percent-encoding');
    }
  });
}
