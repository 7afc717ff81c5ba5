import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deltaJobsOptionsFromEnv } from '../../server/jobs/deltas';
import { defaultJobConcurrency } from '../../server/jobs/queue';

/**
 * How many background jobs run at once by default: several on machines with
 * cores to spare, one on small ones (a delta job keeps a core busy, and the
 * requests need theirs).
 */

test('defaultJobConcurrency: floor((cpus - 1) / 2), at least 1, at most 8', () => {
  assert.equal(defaultJobConcurrency(1), 1);
  assert.equal(defaultJobConcurrency(2), 1);
  assert.equal(defaultJobConcurrency(3), 1);
  assert.equal(defaultJobConcurrency(4), 1);
  assert.equal(defaultJobConcurrency(5), 2);
  assert.equal(defaultJobConcurrency(8), 3);
  assert.equal(defaultJobConcurrency(16), 7);
  assert.equal(defaultJobConcurrency(64), 8);
  assert.equal(defaultJobConcurrency(0), 1, 'nonsense counts still run jobs');
  assert.equal(defaultJobConcurrency(Number.NaN), 1);
});

test('CAIRN_JOBS_CONCURRENCY overrides the default, which follows the CPU count', () => {
  assert.equal(deltaJobsOptionsFromEnv({}, 2).maxConcurrent, 1);
  assert.equal(deltaJobsOptionsFromEnv({}, 8).maxConcurrent, 3);
  assert.equal(deltaJobsOptionsFromEnv({ CAIRN_JOBS_CONCURRENCY: '' }, 8).maxConcurrent, 3);
  assert.equal(deltaJobsOptionsFromEnv({ CAIRN_JOBS_CONCURRENCY: '5' }, 2).maxConcurrent, 5);
  assert.equal(deltaJobsOptionsFromEnv({}).maxConcurrent! >= 1, true, 'this machine');
  assert.throws(() => deltaJobsOptionsFromEnv({ CAIRN_JOBS_CONCURRENCY: '0' }, 8), /CAIRN_JOBS_CONCURRENCY must be an integer ≥ 1/);
});
