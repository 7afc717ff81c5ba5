import { CairnError } from '../errors';

/** Names of repositories under DATA/repos/: short, no dots at the start, safe in a URL and a path. */
const REPO_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function validateRepoName(name: string): string {
  if (!REPO_NAME.test(name)) {
    throw new CairnError('INVALID_ARGUMENT', `invalid repository name "${name.slice(0, 80)}": use 1-64 of [A-Za-z0-9._-], starting with a letter or digit`);
  }
  return name;
}

/** OSTree's ref grammar (ostree_validate_rev): '/'-separated fragments of [\w\d][-._\w\d]*. */
const REF_FRAGMENT = /^[A-Za-z0-9_][-._A-Za-z0-9_]*$/;
const MAX_REF_LENGTH = 1024;

export function isValidRefName(ref: string): boolean {
  if (ref.length === 0 || ref.length > MAX_REF_LENGTH) return false;
  return ref.split('/').every((f) => REF_FRAGMENT.test(f));
}

export function validateRefName(ref: string): string {
  if (!isValidRefName(ref)) throw new CairnError('INVALID_REF', `invalid ref name "${ref.slice(0, 200)}"`);
  return ref;
}

/** Collection IDs are reverse-DNS (ostree_validate_collection_id). */
const COLLECTION_ID = /^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)+$/;

export function validateCollectionId(id: string): string {
  if (id.length > 255 || !COLLECTION_ID.test(id)) throw new CairnError('INVALID_ARGUMENT', `invalid collection id "${id.slice(0, 80)}"`);
  return id;
}
