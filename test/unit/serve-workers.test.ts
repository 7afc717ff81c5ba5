// The default worker count follows the CPUs: tested for every machine shape, whatever this one is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultWorkers, parseWorkers } from '../../cli/commands/serve';

test('--workers default: one process fewer than CPUs, at least 1, at most 16', () => {
  const cases: [number, number][] = [[1, 1], [2, 1], [3, 2], [4, 3], [8, 7], [17, 16], [64, 16], [256, 16]];
  for (const [cpus, workers] of cases) {
    assert.equal(defaultWorkers(cpus), workers, `${cpus} CPUs`);
    assert.equal(parseWorkers(undefined, cpus), workers);
    assert.equal(parseWorkers('auto', cpus), workers);
    assert.equal(parseWorkers('', cpus), workers);
  }
});

test('--workers N is taken as given; nonsense is refused', () => {
  assert.equal(parseWorkers('1', 64), 1);
  assert.equal(parseWorkers('2', 1), 2);
  for (const bad of ['0', '-1', '1.5', 'two', '257', '1e2']) assert.throws(() => parseWorkers(bad, 4), /invalid --workers/);
});
