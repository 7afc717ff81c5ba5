// The summary pair on a data folder (the scenario: test/e2e/summary-pair-scenario.ts; the same on S3:
// test/s3/publish-pair-s3; verifying pulls under publishing load on a folder: test/e2e/publish-load).

import * as path from 'node:path';
import { FsBackend } from '../../storage/backends/fs';
import { startCairn } from '../helpers/cairn-process';
import { cli, initData } from './publish-helpers';
import { summaryPairTests } from './summary-pair-scenario';

summaryPairTests({
  where: '',
  async setup(work) {
    const data = path.join(work, 'data');
    await initData(data);
    const t = await cli(['token', '--data', data, '--scope', 'admin', '--repo', 'main', '--ttl', '1h', '--sub', 'e2e']);
    if (t.code !== 0) throw new Error(t.stderr);
    return { cairn: await startCairn({ dataDir: data }), token: t.stdout.trim(), repo: new FsBackend(path.join(data, 'repos', 'main')) };
  },
});
