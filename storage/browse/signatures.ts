/**
 * A commit's detached signatures (`.commitmeta`: `ostree.gpgsigs` and
 * `ostree.sign.ed25519`, both `aay`), and whether each verifies over the
 * exact `.commit` bytes with the keys given (the repository's own keys:
 * storage/signing/keys.ts, see verifyKeysOf).
 */
import type { Key } from 'openpgp';
import { parse, type VarDict } from '../gvariant';
import { validateChecksum } from '../objects/checksum';
import { OBJECT_GVARIANT_TYPE, ObjectType } from '../objects/types';
import type { Repo } from '../repo/repo';
import { ED25519_SIGNATURE_BYTES, ed25519Verify } from '../signing/ed25519';
import { gpgSignatureIssuers, gpgVerifyDetached } from '../signing/gpg';
import type { RepoKeys } from '../signing/keys';
import { ED25519_SIGS_KEY, GPG_SIGS_KEY } from '../signing/signer';
import { metadataJson, type MetadataEntry } from './json';

/** Public keys to verify with. A scheme without keys is reported as not checked (`valid: null`). */
export interface VerifyKeys {
  gpg?: Key[];
  ed25519?: Buffer[];
}

/** The verification keys of a repository's key pair. */
export function verifyKeysOf(keys: Pick<RepoKeys, 'gpg' | 'ed25519'>): VerifyKeys {
  return { gpg: [keys.gpg.privateKey.toPublic()], ed25519: [keys.ed25519.publicKey] };
}

export interface SignatureStatus {
  type: 'gpg' | 'ed25519';
  /** Position in its array of the detached metadata. */
  index: number;
  bytes: number;
  /** GPG: long key IDs of the signature packets' issuers (uppercase hex). Ed25519: empty. */
  keyIds: string[];
  /** true: made by one of the keys; false: not (unknown key, bad signature, malformed); null: no keys of this kind to check with. */
  valid: boolean | null;
  /** GPG: the key IDs whose signature is valid. Ed25519: hex of the public key that verifies it. */
  validKeys: string[];
  /** Why it is not valid when it is malformed. */
  error?: string;
}

export interface CommitSignatures {
  /** A `.commitmeta` exists. */
  detachedMetadata: boolean;
  signatures: SignatureStatus[];
  /** At least one signature verifies with the keys given. */
  verified: boolean;
  /** Detached metadata other than the signatures, as JSON (bounded). */
  otherMetadata: MetadataEntry[];
  /** Signatures beyond MAX_SIGNATURES_CHECKED were not looked at. */
  truncated: boolean;
}

/** Signatures checked per commit (libostree has no limit; one or two is normal). */
export const MAX_SIGNATURES_CHECKED = 32;

/** Which signature kinds a commit's detached metadata holds, without verifying (cheap: one small read). */
export async function signatureKinds(repo: Repo, commit: string): Promise<{ gpg: boolean; ed25519: boolean }> {
  const md = await readDetached(repo, commit);
  if (!md) return { gpg: false, ed25519: false };
  return { gpg: countOf(md, GPG_SIGS_KEY) > 0, ed25519: countOf(md, ED25519_SIGS_KEY) > 0 };
}

function countOf(md: VarDict, key: string): number {
  const v = md.find(([k]) => k === key)?.[1];
  return v && v.type === 'aay' ? (v.value as Buffer[]).length : 0;
}

async function readDetached(repo: Repo, commit: string): Promise<VarDict | null> {
  const raw = await repo.readMetadata(validateChecksum(commit), ObjectType.CommitMeta);
  if (!raw) return null;
  try {
    return parse(OBJECT_GVARIANT_TYPE.commitmeta, raw) as VarDict;
  } catch {
    return []; // present but unreadable: no usable signature (the client would fail on it too)
  }
}

/**
 * Every signature of `commit`'s detached metadata, each verified over the
 * commit's exact bytes with `keys`. A commit without detached metadata, or
 * without a signature, answers `signatures: []`.
 */
export async function commitSignatures(repo: Repo, commit: string, keys: VerifyKeys = {}): Promise<CommitSignatures> {
  const md = await readDetached(repo, commit);
  const out: CommitSignatures = { detachedMetadata: md !== null, signatures: [], verified: false, otherMetadata: [], truncated: false };
  if (!md) return out;
  const data = await repo.readMetadata(commit, ObjectType.Commit);
  const other: VarDict = [];
  for (const [key, v] of md) {
    if (key !== GPG_SIGS_KEY && key !== ED25519_SIGS_KEY) other.push([key, v]);
  }
  out.otherMetadata = metadataJson(other, { budget: 32 * 1024 }).entries;
  const list = (key: string): Buffer[] => {
    const v = md.find(([k]) => k === key)?.[1];
    return v && v.type === 'aay' ? (v.value as Buffer[]) : [];
  };
  const gpg = list(GPG_SIGS_KEY);
  const ed = list(ED25519_SIGS_KEY);
  let budget = MAX_SIGNATURES_CHECKED;
  for (let i = 0; i < gpg.length; i++) {
    if (budget-- <= 0) {
      out.truncated = true;
      break;
    }
    out.signatures.push(await checkGpg(gpg[i]!, i, data, keys.gpg));
  }
  for (let i = 0; i < ed.length; i++) {
    if (budget-- <= 0) {
      out.truncated = true;
      break;
    }
    out.signatures.push(checkEd25519(ed[i]!, i, data, keys.ed25519));
  }
  out.verified = out.signatures.some((s) => s.valid === true);
  return out;
}

async function checkGpg(sig: Buffer, index: number, data: Buffer | null, keys: Key[] | undefined): Promise<SignatureStatus> {
  const s: SignatureStatus = { type: 'gpg', index, bytes: sig.length, keyIds: [], valid: null, validKeys: [] };
  try {
    s.keyIds = (await gpgSignatureIssuers(sig)).slice(0, 16);
  } catch (e) {
    s.valid = false;
    s.error = (e as Error).message.slice(0, 300);
    return s;
  }
  if (!keys || keys.length === 0) return s;
  if (!data) {
    s.valid = false;
    s.error = 'the commit object is missing';
    return s;
  }
  try {
    s.validKeys = (await gpgVerifyDetached(data, [sig], keys)).validKeyIds;
    s.valid = s.validKeys.length > 0;
  } catch (e) {
    s.valid = false;
    s.error = (e as Error).message.slice(0, 300);
  }
  return s;
}

function checkEd25519(sig: Buffer, index: number, data: Buffer | null, keys: Buffer[] | undefined): SignatureStatus {
  const s: SignatureStatus = { type: 'ed25519', index, bytes: sig.length, keyIds: [], valid: null, validKeys: [] };
  if (sig.length !== ED25519_SIGNATURE_BYTES) {
    s.valid = false;
    s.error = `an ed25519 signature is ${ED25519_SIGNATURE_BYTES} bytes, not ${sig.length}`;
    return s;
  }
  if (!keys || keys.length === 0) return s;
  if (!data) {
    s.valid = false;
    s.error = 'the commit object is missing';
    return s;
  }
  for (const k of keys) {
    try {
      if (ed25519Verify(k, data, sig)) s.validKeys.push(k.toString('hex'));
    } catch {
      /* a key of the wrong length verifies nothing */
    }
  }
  s.valid = s.validKeys.length > 0;
  return s;
}
