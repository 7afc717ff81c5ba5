import { S3Backend } from '../../storage/backends/s3';
import { emptyPrefix, freshPrefix, s3TestStore } from '../s3/ceph';
import { backendConformance } from './backend-conformance';

// The conformance suite against a real Ceph RADOS Gateway (test/s3/ceph.ts
// starts one when npm test's scripts/with-ceph.sh has not). Multipart
// uploads at S3's smallest part size (5 MiB), so large writes take that path.
backendConformance(
  'S3Backend (Ceph RGW)',
  async () => {
    const store = await s3TestStore();
    const prefix = freshPrefix('conformance');
    const backend = new S3Backend(store.client, store.bucket, prefix, { partSize: 5 * 1024 * 1024, lockLeaseMs: 3000 });
    return { backend, cleanup: () => emptyPrefix(store, prefix) };
  },
  { readerKeepsReplacedVersion: false },
);
