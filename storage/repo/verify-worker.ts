import { parentPort } from 'node:worker_threads';
import { verdictOf } from './verify';
import type { WireBatch } from './verify-pool';

/**
 * A verification thread of storage/repo/verify-pool.ts: verifyObject on each
 * job of a batch it is handed, in order, one answer message per batch.
 */
parentPort!.on('message', (batch: WireBatch) => {
  void (async () => {
    const answers = [];
    const all = Buffer.from(batch.bytes.buffer, batch.bytes.byteOffset, batch.bytes.byteLength);
    let at = 0;
    for (const j of batch.jobs) {
      const data = all.subarray(at, at + j.length);
      at += j.length;
      answers.push({ id: j.id, verdict: await verdictOf({ checksum: j.checksum, type: j.type, data, maxFileSize: j.maxFileSize }) });
    }
    parentPort!.postMessage(answers);
  })();
});
