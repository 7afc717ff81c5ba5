// The shared verification pool is sized by the serving processes it shares the
// machine with: `cairn serve --workers N` tells each worker (server/start.ts
// calls setVerifyProcesses(N)), and the pool made on the first upload has
// defaultVerifyThreads(CPUs, N) threads. Its own file: the pool is per process.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as os from 'node:os';
import { defaultVerifyThreads, setVerifyProcesses, sharedVerifyPool } from '../../storage/repo/verify-pool';

test('setVerifyProcesses(N) sizes the shared pool as defaultVerifyThreads(CPUs, N)', async () => {
  delete process.env.CAIRN_VERIFY_THREADS;
  const n = Math.max(2, os.availableParallelism());
  setVerifyProcesses(n);
  const pool = sharedVerifyPool();
  assert.equal(pool.threads, defaultVerifyThreads(os.availableParallelism(), n));
  assert.equal(pool.threads, 1); // as many processes as CPUs: one thread each
  await pool.close();
});
