// The summary pair on S3 (the scenario: test/e2e/summary-pair-scenario.ts, also run on a data folder by
// test/e2e/publish-pair): `cairn serve --storage s3://…` against a real Ceph RGW, with verifying pulls by
// the stock client while the ref moves. (Before the pair was served as one on S3, its files were served
// as any file, one HEAD and GET each, and a publish between the client's two requests tore it: 7 of 89
// verifying pulls failed "BAD signature".)

import * as path from 'node:path';
import { S3Backend } from '../../storage/backends/s3';
import { startCairn } from '../helpers/cairn-process';
import { cli } from '../e2e/publish-helpers';
import { summaryPairTests } from '../e2e/summary-pair-scenario';
import { emptyPrefix, freshPrefix, s3ClientEnv, s3TestStore } from './ceph';

const SECRET = 'cairn-s3-pair-token-secret-0123456789abcdef';

summaryPairTests({
  where: 'on S3, ',
  async setup(work) {
    const store = await s3TestStore();
    const prefix = freshPrefix('pair');
    const cairn = await startCairn({
      dataDir: path.join(work, 'scratch'),
      extraArgs: ['--storage', `s3://${store.bucket}/${prefix.replace(/\/$/, '')}`],
      env: { ...s3ClientEnv(store), CAIRN_TOKEN_SECRET: SECRET },
    });
    const t = await cli(['token', '--scope', 'admin', '--repo', 'main', '--ttl', '1h', '--sub', 'e2e'], { CAIRN_TOKEN_SECRET: SECRET });
    if (t.code !== 0) throw new Error(t.stderr);
    return {
      cairn,
      token: t.stdout.trim(),
      repo: new S3Backend(store.client, store.bucket, `${prefix}repos/main/`),
      cleanup: () => emptyPrefix(store, prefix),
    };
  },
  // At least 24 pulls, and on until the ref moved 6 times (a publish on S3 takes seconds).
  pulls: { pulls: 24, minPublishes: 6, concurrency: 4 },
});
