import { parentPort } from 'node:worker_threads';
import type { ObjectType } from '../objects/types';
import { verdictOf } from './verify';

/**
 * A verification thread of storage/repo/verify-pool.ts: verifyObject on each
 * job it is handed, in order, one answer message per batch.
 */
interface Message {
  id: number;
  checksum: string;
  type: ObjectType;
  maxFileSize: number;
  data: Uint8Array;
}

parentPort!.on('message', (jobs: Message[]) => {
  void (async () => {
    const answers = [];
    for (const j of jobs) {
      const data = Buffer.from(j.data.buffer, j.data.byteOffset, j.data.byteLength);
      answers.push({ id: j.id, verdict: await verdictOf({ checksum: j.checksum, type: j.type, data, maxFileSize: j.maxFileSize }) });
    }
    parentPort!.postMessage(answers);
  })();
});
