/**
 * The RepoSigner of storage/repo/publish.ts: detached metadata (.commitmeta)
 * and summary.sig, both a normal-form `a{sv}` with
 *   ostree.gpgsigs       aay  binary OpenPGP detached signatures
 *   ostree.sign.ed25519  aay  64-byte Ed25519 signatures
 * over the exact .commit / summary bytes (FORMATS.md §3, §4).
 */

import { serialize, Variant, type VarDict } from '../gvariant';
import { CairnError } from '../errors';
import type { RepoSigner } from '../repo/publish';
import { type Ed25519KeyPair, ED25519_SIGNATURE_BYTES, ed25519Sign, ed25519Verify } from './ed25519';
import { type GpgSigningKey, gpgSignDetached, gpgSignatureIssuers } from './gpg';

export const GPG_SIGS_KEY = 'ostree.gpgsigs';
export const ED25519_SIGS_KEY = 'ostree.sign.ed25519';

/** Either key may be absent (a repo signing with one scheme only); RepoKeys fits. */
export interface SignerKeys {
  gpg?: GpgSigningKey | null;
  ed25519?: Ed25519KeyPair | null;
}

export function createRepoSigner(keys: SignerKeys): RepoSigner {
  const gpg = keys.gpg ?? null;
  const ed25519 = keys.ed25519 ?? null;
  if (!gpg && !ed25519) throw new CairnError('INVALID_ARGUMENT', 'a repository signer needs a GPG key, an ed25519 key, or both');
  const ownGpgIds = gpg ? gpgKeyIds(gpg) : new Set<string>();

  async function ownSignatures(data: Buffer): Promise<VarDict> {
    const out: VarDict = [];
    if (gpg) out.push([GPG_SIGS_KEY, new Variant('aay', [await gpgSignDetached(gpg, data)])]);
    if (ed25519) out.push([ED25519_SIGS_KEY, new Variant('aay', [ed25519Sign(ed25519, data)])]);
    return out;
  }

  /** Existing GPG signatures minus ours: a re-sign replaces our earlier one (new timestamp) instead of piling up. */
  async function foreignGpg(old: Buffer[]): Promise<Buffer[]> {
    const keep: Buffer[] = [];
    for (const sig of old) {
      let issuers: string[];
      try {
        issuers = await gpgSignatureIssuers(sig);
      } catch {
        // Not parseable here, but not ours to judge either: gpgme may well read it.
        keep.push(sig);
        continue;
      }
      // A blob may hold several packets; drop it only when all of them are ours.
      if (issuers.length === 0 || !issuers.every((id) => ownGpgIds.has(id))) keep.push(sig);
    }
    return keep;
  }

  /**
   * Existing ed25519 signatures minus ours (any that verify with our key over
   * these bytes: Ed25519 is deterministic, so that is exactly the one we are
   * about to add). Entries that are not 64 bytes are dropped: libostree
   * fails the whole verification on one of those, so keeping it would make
   * the commit unverifiable for every ed25519 host.
   */
  function foreignEd25519(old: Buffer[], data: Buffer): Buffer[] {
    return old.filter((sig) => sig.length === ED25519_SIGNATURE_BYTES && !ed25519Verify(ed25519!.publicKey, data, sig));
  }

  return {
    async signCommit(commit: Buffer, existing: VarDict | null): Promise<Buffer> {
      const result: VarDict = [];
      const fresh = new Map(await ownSignatures(commit));
      for (const [key, value] of existing ?? []) {
        const ours = fresh.get(key);
        if (!ours) {
          result.push([key, value]); // foreign metadata, kept as it was and where it was
          continue;
        }
        // A value of another type cannot be merged and would break the client's parse: ours replaces it.
        const old = value.type === 'aay' ? (value.value as Buffer[]) : [];
        const kept = key === GPG_SIGS_KEY ? await foreignGpg(old) : foreignEd25519(old, commit);
        result.push([key, new Variant('aay', [...kept, ...(ours.value as Buffer[])])]);
        fresh.delete(key);
      }
      result.push(...fresh); // our keys that were not there yet
      return serialize('a{sv}', result);
    },

    // summary.sig is rewritten with every summary (the old one signs other bytes), so nothing is merged.
    async signSummary(summary: Buffer): Promise<Buffer> {
      return serialize('a{sv}', await ownSignatures(summary));
    },
  };
}

function gpgKeyIds(key: GpgSigningKey): Set<string> {
  const ids = new Set<string>([key.keyId]);
  for (const sub of key.privateKey.subkeys) ids.add(sub.getKeyID().toHex().toUpperCase());
  return ids;
}
