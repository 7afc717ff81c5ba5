import { formatBytes } from './progress';
import type { PushResult } from './push';

/**
 * The one line a push prints when it is done, e.g.
 * `pushed 3fd0406929e8 to http://h/repo/main os/stable (was absent): 1204 objects, 37 missing, 37 uploaded, 4.21 MB in 2.3 s`
 * Counts and seconds are plain numbers so logs stay greppable; scripts use --json.
 */
export function summaryLine(r: PushResult): string {
  const was = r.old === null ? 'was absent' : r.old === r.new ? 'unchanged' : `was ${r.old.slice(0, 12)}`;
  const rate = r.seconds > 0 && r.bytes > 0 ? ` (${formatBytes(r.bytes / r.seconds)}/s)` : '';
  const retries = r.requests.retries ? `, ${r.requests.retries} retries` : '';
  return (
    `pushed ${r.commit.slice(0, 12)} to ${r.url} ${r.ref} (${was}): ` +
    `${r.objects} objects, ${r.missing} missing, ${r.uploaded} uploaded, ${formatBytes(r.bytes)} in ${r.seconds.toFixed(1)} s${rate}${retries}`
  );
}
