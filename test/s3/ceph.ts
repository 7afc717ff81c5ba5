import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { makeS3Client, type S3ClientSettings } from '../../storage/backends/s3';

/**
 * The S3 store the tests run against: a real Ceph RADOS Gateway. Under
 * `npm test` scripts/with-ceph.sh has started one and set
 * CAIRN_TEST_S3_ENDPOINT (and the keys); a test file run on its own starts
 * one with scripts/ceph-up.sh (about 15 s, free ports) and stops it when the
 * file's process exits, unless CAIRN_TEST_S3_ENDPOINT names one (say a
 * cluster a developer keeps running: `export CAIRN_TEST_S3_ENDPOINT=$(bash
 * scripts/ceph-up.sh)`). There is no skipping: without Ceph installed
 * (scripts/install-test-deps.sh) the S3 tests fail.
 */
export interface S3TestStore {
  settings: S3ClientSettings;
  client: S3Client;
  /** A bucket for the tests (created if absent). */
  bucket: string;
}

const ROOT = path.resolve(__dirname, '../../..');
let store: Promise<S3TestStore> | undefined;

function up(): S3ClientSettings {
  const accessKeyId = process.env.CAIRN_TEST_S3_ACCESS_KEY ?? 'testkey';
  const secretAccessKey = process.env.CAIRN_TEST_S3_SECRET_KEY ?? 'testsecret';
  let endpoint = process.env.CAIRN_TEST_S3_ENDPOINT;
  if (!endpoint) {
    const dir = `/tmp/cairn-ceph-test-${process.pid}`;
    const down = (): void => {
      try {
        execFileSync('bash', [path.join(ROOT, 'scripts/ceph-down.sh'), dir], { stdio: 'ignore' });
      } catch {
        // nothing more to do at exit
      }
    };
    process.on('exit', down);
    endpoint = execFileSync('bash', [path.join(ROOT, 'scripts/ceph-up.sh'), dir], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, S3_ACCESS_KEY: accessKeyId, S3_SECRET_KEY: secretAccessKey },
    })
      .trim()
      .split('\n')
      .pop()!;
    process.env.CAIRN_TEST_S3_ENDPOINT = endpoint;
  }
  return { endpoint, region: 'us-east-1', credentials: { accessKeyId, secretAccessKey } };
}

/** The test store, started once per test process. */
export function s3TestStore(): Promise<S3TestStore> {
  store ??= (async () => {
    const settings = up();
    const client = makeS3Client(settings);
    const bucket = 'cairn-tests';
    await client.send(new CreateBucketCommand({ Bucket: bucket })).catch((e: unknown) => {
      const name = (e as { name?: string }).name;
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw e;
    });
    return { settings, client, bucket };
  })();
  return store;
}

/** A fresh prefix of the test bucket, ending with '/'. */
export function freshPrefix(what: string): string {
  return `${what}/${Date.now()}-${randomBytes(6).toString('hex')}/`;
}

/** Removes every object and multipart upload below `prefix`. */
export async function emptyPrefix(s: S3TestStore, prefix: string): Promise<void> {
  let ContinuationToken: string | undefined;
  do {
    const page = await s.client.send(new ListObjectsV2Command({ Bucket: s.bucket, Prefix: prefix, ContinuationToken }));
    const keys = (page.Contents ?? []).map((c) => ({ Key: c.Key! }));
    if (keys.length) await s.client.send(new DeleteObjectsCommand({ Bucket: s.bucket, Delete: { Objects: keys, Quiet: true } }));
    ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (ContinuationToken);
  const uploads = await s.client.send(new ListMultipartUploadsCommand({ Bucket: s.bucket, Prefix: prefix }));
  for (const u of uploads.Uploads ?? []) await s.client.send(new AbortMultipartUploadCommand({ Bucket: s.bucket, Key: u.Key!, UploadId: u.UploadId! }));
}

/** What a `cairn` process needs in its environment to reach the test store: endpoint, keys, region. */
export function s3ClientEnv(store: S3TestStore): NodeJS.ProcessEnv {
  return {
    CAIRN_S3_ENDPOINT: store.settings.endpoint!,
    AWS_ACCESS_KEY_ID: store.settings.credentials!.accessKeyId,
    AWS_SECRET_ACCESS_KEY: store.settings.credentials!.secretAccessKey,
    AWS_REGION: 'us-east-1',
  };
}
