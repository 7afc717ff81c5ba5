/**
 * OpenPGP keys and signatures for `ostree.gpgsigs` and summary.sig, made with
 * OpenPGP.js so that Cairn never needs a gpg binary or agent at run time.
 *
 * Constraints from the client side (libostree verifies through GnuPG 2.2 /
 * gpgme): keys must be v4 — GnuPG 2.2 does not understand v6 — so v6 is
 * refused on generation and on load; signatures are binary (not armored)
 * detached signatures over the exact bytes. The generated key is a single
 * EdDSA (ed25519, "legacy" v4 encoding) primary key with no subkeys: Cairn
 * only signs, so an encryption subkey would be key material with no use.
 */

import * as openpgp from 'openpgp';
import { CairnError } from '../errors';

/** Pinned rather than inherited from openpgp's global config, which another module could change. */
const V4_ONLY: openpgp.PartialConfig = { v6Keys: false };

export interface GpgSigningKey {
  readonly privateKey: openpgp.PrivateKey;
  /** Long key ID of the primary key, 16 uppercase hex digits (as gpg and ostree print it). */
  readonly keyId: string;
  /** 40 uppercase hex digits. */
  readonly fingerprint: string;
  /** Armored public key, for `ostree remote add --gpg-import=`. */
  readonly armoredPublicKey: string;
}

export interface GeneratedGpgKey {
  armoredPrivateKey: string;
  armoredPublicKey: string;
}

/** A new, unprotected v4 EdDSA signing key with the user ID `NAME <EMAIL>`. */
export async function generateGpgKey(name: string, email: string): Promise<GeneratedGpgKey> {
  const { privateKey, publicKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'ed25519Legacy',
    userIDs: [{ name, email }],
    subkeys: [],
    format: 'armored',
    config: V4_ONLY,
  });
  return { armoredPrivateKey: privateKey, armoredPublicKey: publicKey };
}

function badKey(message: string, cause?: unknown): CairnError {
  const why = cause instanceof Error ? `: ${cause.message}` : '';
  return new CairnError('INVALID_ARGUMENT', `${message}${why}`);
}

function checkV4(key: openpgp.Key, what: string): void {
  if (key.keyPacket.version !== 4) {
    throw new CairnError('UNSUPPORTED', `${what} is an OpenPGP v${key.keyPacket.version} key; GnuPG 2.2 (and so libostree) only verifies v4`);
  }
}

/**
 * Loads an armored (or binary) secret key and checks everything that would
 * otherwise only fail at the first publish: v4, not passphrase-protected
 * (Cairn signs unattended), and able to sign now.
 */
export async function loadGpgSigningKey(secret: string | Buffer): Promise<GpgSigningKey> {
  let privateKey: openpgp.PrivateKey;
  try {
    privateKey = typeof secret === 'string' || looksArmored(secret)
      ? await openpgp.readPrivateKey({ armoredKey: secret.toString(), config: V4_ONLY })
      : await openpgp.readPrivateKey({ binaryKey: secret, config: V4_ONLY });
  } catch (e) {
    throw badKey('not a readable OpenPGP secret key', e);
  }
  checkV4(privateKey, 'the GPG secret key');
  if (!privateKey.isDecrypted()) {
    throw new CairnError('UNSUPPORTED', 'the GPG secret key is passphrase-protected; Cairn signs unattended and needs an unprotected key');
  }
  try {
    await privateKey.getSigningKey();
  } catch (e) {
    throw badKey('the GPG key cannot sign (expired, revoked or without a signing-capable key)', e);
  }
  return {
    privateKey,
    keyId: privateKey.getKeyID().toHex().toUpperCase(),
    fingerprint: privateKey.getFingerprint().toUpperCase(),
    armoredPublicKey: privateKey.toPublic().armor(),
  };
}

function looksArmored(b: Buffer): boolean {
  return b.subarray(0, 64).toString('latin1').trimStart().startsWith('-----BEGIN PGP');
}

/** Reads public keys (armored or binary; one or several concatenated) for verification. */
export async function readGpgPublicKeys(keys: string | Buffer): Promise<openpgp.Key[]> {
  try {
    const read = typeof keys === 'string' || looksArmored(keys)
      ? await openpgp.readKeys({ armoredKeys: keys.toString(), config: V4_ONLY })
      : await openpgp.readKeys({ binaryKeys: keys, config: V4_ONLY });
    return read.map((k) => (k.isPrivate() ? k.toPublic() : k));
  } catch (e) {
    throw badKey('not readable OpenPGP public keys', e);
  }
}

/** Binary detached signature over the exact bytes (one signature packet). */
export async function gpgSignDetached(key: GpgSigningKey, data: Buffer): Promise<Buffer> {
  const message = await openpgp.createMessage({ binary: data });
  const sig = await openpgp.sign({ message, signingKeys: key.privateKey, detached: true, format: 'binary', config: V4_ONLY });
  return Buffer.from(sig);
}

/**
 * Long key IDs (uppercase hex) of the issuers of every signature packet in a
 * detached signature blob. Throws when the blob is not OpenPGP at all.
 */
export async function gpgSignatureIssuers(signature: Buffer): Promise<string[]> {
  const sig = await readSignature(signature);
  // Array.from: openpgp returns its own PacketList-like array subclass.
  return Array.from(sig.getSigningKeyIDs(), (id) => id.toHex().toUpperCase());
}

async function readSignature(signature: Buffer): Promise<openpgp.Signature> {
  try {
    return await openpgp.readSignature({ binarySignature: signature, config: V4_ONLY });
  } catch (e) {
    throw new CairnError('INVALID_ARGUMENT', `not an OpenPGP signature${e instanceof Error ? `: ${e.message}` : ''}`);
  }
}

export interface GpgVerification {
  /** Long key IDs (uppercase hex) of the keys that made a valid signature. */
  validKeyIds: string[];
}

/**
 * Checks detached signatures over `data` against `publicKeys`, the way
 * libostree judges `ostree.gpgsigs`: the entries are independent, and the data
 * counts as signed when at least one signature packet is valid for a trusted
 * key. Packets by unknown keys or that fail are ignored (not an error), so
 * the result lists who signed; an empty list means "not signed by anyone we
 * trust". A blob that is not OpenPGP at all throws.
 */
export async function gpgVerifyDetached(data: Buffer, signatures: Buffer[], publicKeys: openpgp.Key[]): Promise<GpgVerification> {
  const validKeyIds: string[] = [];
  for (const blob of signatures) {
    const signature = await readSignature(blob);
    const message = await openpgp.createMessage({ binary: data });
    const result = await openpgp.verify({ message, signature, verificationKeys: publicKeys, format: 'binary', config: V4_ONLY });
    for (const s of result.signatures) {
      try {
        await s.verified;
        validKeyIds.push(s.keyID.toHex().toUpperCase());
      } catch {
        // wrong data, unknown key, expired/revoked key: not a valid signature, keep looking
      }
    }
  }
  return { validKeyIds: [...new Set(validKeyIds)] };
}
