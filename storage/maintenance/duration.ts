import { CairnError } from '../errors';

/**
 * Durations as operators write them for maintenance (`--grace 1h`,
 * `--keep-younger-than 30d`, the API's `keepYoungerThan`): a whole number
 * with a unit s, m, h, d or w (a bare number is seconds). Bounded: at most
 * 100 years.
 */
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const MAX_MS = 100 * 365 * 86_400_000;

export function parseDuration(text: string): number {
  const m = /^(\d{1,12})([smhdw]?)$/.exec(text.trim());
  if (!m) throw new CairnError('INVALID_ARGUMENT', `invalid duration "${text.slice(0, 40)}": use a number with s, m, h, d or w (e.g. 90s, 1h, 30d)`);
  const ms = Number(m[1]) * UNIT_MS[m[2] || 's']!;
  if (ms > MAX_MS) throw new CairnError('INVALID_ARGUMENT', `duration "${text.slice(0, 40)}" is too long`);
  return ms;
}

/**
 * A point in time: a duration back from `now` (`30d`), or an ISO 8601 date
 * (`2024-05-01`, `2024-05-01T12:00:00Z`).
 */
export function parseTimeOrAge(text: string, now = Date.now()): Date {
  if (/^\d{1,12}[smhdw]?$/.test(text.trim())) return new Date(now - parseDuration(text));
  if (!/^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text.trim())) {
    throw new CairnError('INVALID_ARGUMENT', `invalid time "${text.slice(0, 40)}": use an age (30d, 12h) or an ISO 8601 date`);
  }
  const d = new Date(text.trim());
  if (Number.isNaN(d.getTime())) throw new CairnError('INVALID_ARGUMENT', `invalid date "${text.slice(0, 40)}"`);
  return d;
}
