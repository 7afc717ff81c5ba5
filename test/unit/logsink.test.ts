// The batched log sink (server/logsink.ts): lines go out whole, in order, in
// chunks of at most PIPE_BUF cut at line ends (atomic writes to a shared
// pipe), soon after they were queued, and at once on flush().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { batchedSink } from '../../server/logsink';

test('lines are batched, kept whole and in order, in chunks of at most 4096 bytes', async () => {
  const chunks: string[] = [];
  const sink = batchedSink((c) => chunks.push(c));
  const lines = Array.from({ length: 500 }, (_, i) => `{"n":${i},"pad":"${'x'.repeat(i % 97)}"}\n`);
  for (const l of lines) sink.write(l);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(chunks.join(''), lines.join(''));
  for (const c of chunks) {
    assert.ok(c.length <= 4096, `chunk of ${c.length}`);
    assert.ok(c.endsWith('\n'));
  }
  assert.ok(chunks.length < lines.length / 10, `${chunks.length} writes for ${lines.length} lines`);
});

test('a few lines appear within the flush delay; flush() writes at once; a huge line goes alone', async () => {
  const chunks: string[] = [];
  const sink = batchedSink((c) => chunks.push(c));
  sink.write('a\n');
  sink.write('b\n');
  assert.deepEqual(chunks, []);
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(chunks, ['a\nb\n']);
  sink.write('c\n');
  sink.flush();
  assert.deepEqual(chunks, ['a\nb\n', 'c\n']);
  const huge = `${'y'.repeat(10_000)}\n`;
  sink.write('d\n');
  sink.write(huge);
  assert.deepEqual(chunks.slice(2), ['d\n', huge]);
});
