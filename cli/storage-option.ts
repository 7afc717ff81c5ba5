import * as path from 'node:path';
import { locationKind } from '../storage/backends/factory';
import { parseS3Url } from '../storage/backends/s3';
import { dataDirOption, UsageError } from './command';

// The one parser of `--storage` (cairn serve and every command that opens repositories itself);
// apart from cli/command.ts so that commands without it (push, token) do not load the S3 SDK.

/** `--storage LOCATION` in a command's options (one definition for every command that opens repositories). */
export const STORAGE_OPTION_HELP = `  --storage LOCATION     where repositories and server state live instead of the data
                         folder (env CAIRN_STORAGE): a folder, file://PATH, or
                         s3://BUCKET/PREFIX (endpoint CAIRN_S3_ENDPOINT, the standard
                         AWS credentials and AWS_REGION), as 'cairn serve --storage'`;

/** A storage location as the driver factory takes it: s3://BUCKET/PREFIX checked, a folder made absolute. */
export function storageOption(s: string, command: string): string {
  try {
    if (locationKind(s) === 's3') {
      parseS3Url(s);
      return s.replace(/\/+$/, '');
    }
  } catch (e) {
    throw new UsageError(`invalid --storage "${s.slice(0, 200)}": ${(e as Error).message}`, command);
  }
  return path.resolve(s.startsWith('file://') ? decodeURIComponent(s.slice('file://'.length)) : s);
}

/**
 * Where a command finds repositories and server state: --storage, else
 * CAIRN_STORAGE (a folder, file://PATH or s3://BUCKET/PREFIX), else the data
 * folder (--data, CAIRN_DATA, ./data).
 */
export function locationOption(values: { data?: string; storage?: string }, command: string): string {
  const storage = values.storage ?? process.env.CAIRN_STORAGE;
  return storage !== undefined && storage !== '' ? storageOption(storage, command) : dataDirOption(values.data);
}
