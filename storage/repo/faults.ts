/**
 * A test hook for the crash harness (test/e2e/publish-crash.test.ts):
 * `CAIRN_FAULT_AT=<n>` makes the n-th publish write step of this process
 * (counted from 1 over every publish: each staged file, the journal, each
 * rename or removal, the journal's removal; see storage/repo/publish.ts)
 * kill the process with SIGKILL just before the step, as a power cut or an
 * OOM kill would. The variable is read once, when this module loads; unset
 * (or not a positive integer), faultPoint() only counts. Never set it in
 * production.
 *
 * `CAIRN_FAULT_LOG=1` prints each step (number and label) on stderr, so a
 * harness can see how many steps a publish has.
 */
const FAULT_AT = ((): number => {
  const v = Number(process.env.CAIRN_FAULT_AT ?? '');
  return Number.isInteger(v) && v > 0 ? v : 0;
})();
const FAULT_LOG = process.env.CAIRN_FAULT_LOG === '1';

let steps = 0;

/** Marks one publish write step (`label` names it in the log). */
export function faultPoint(label: string): void {
  steps++;
  if (FAULT_LOG) process.stderr.write(`cairn fault point ${steps}: ${label}\n`);
  if (FAULT_AT !== 0 && steps === FAULT_AT) process.kill(process.pid, 'SIGKILL');
}

/** Steps counted so far in this process (for tests). */
export function faultSteps(): number {
  return steps;
}
