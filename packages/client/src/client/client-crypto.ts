import { constants, createDecipheriv, createHmac, createPublicKey, publicEncrypt, timingSafeEqual } from 'node:crypto';
import { vbiError } from '@vbi/core/errors';
import { indiciumAad } from '@vbi/core/protocol/bodies';
import type { OaepHash } from './client-state';

/** HMAC-SHA256(key, data): request/response MACs, dynamic passwords, the registration proof. */
export function hmacSha256(key: Buffer, data: Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** Constant-time check of a base64 MAC against HMAC-SHA256(key, data). */
export function macMatches(key: Buffer, data: Buffer, macB64: unknown): boolean {
  if (typeof macB64 !== 'string') return false;
  const expected = hmacSha256(key, data);
  const given = Buffer.from(macB64, 'base64');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * RSA-OAEP encryption of a client secret (HMK, password secret, session key) to a module
 * transport key (base64 SPKI DER), with the hash the service announced: the module unwraps it
 * inside the token (CKM_RSA_PKCS_OAEP, MGF1 with the same hash). Returns base64.
 */
export function encryptToModule(module: { transportKey: string; oaepHash: OaepHash }, secret: Buffer): string {
  const key = createPublicKey({ key: Buffer.from(module.transportKey, 'base64'), format: 'der', type: 'spki' });
  if (key.asymmetricKeyType !== 'rsa') throw vbiError('CERT_INVALID', 'the module transport key is not an RSA key');
  return publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: module.oaepHash }, secret).toString('base64');
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Decrypts an `encryptedIndicium` (base64 IV(12) || AES-256-GCM ciphertext || tag(16)) with
 * the session key; the AAD binds it to the session and the item's counter. INDICIUM_MALFORMED
 * when it does not decrypt (wrong key, session, counter, or modified bytes).
 */
export function decryptIndicium(req: { sessionKey: Buffer; sessionId: string; counter: number; encryptedIndicium: string; aad?: Buffer }): Buffer {
  const blob = Buffer.from(req.encryptedIndicium, 'base64');
  if (blob.length < IV_BYTES + TAG_BYTES + 1) throw vbiError('INDICIUM_MALFORMED', 'encrypted indicium is too short', { field: 'encryptedIndicium' });
  try {
    const decipher = createDecipheriv('aes-256-gcm', req.sessionKey, blob.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(req.aad ?? indiciumAad(req.sessionId, req.counter));
    decipher.setAuthTag(blob.subarray(blob.length - TAG_BYTES));
    return Buffer.concat([decipher.update(blob.subarray(IV_BYTES, blob.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw vbiError('INDICIUM_MALFORMED', `encrypted indicium (counter ${req.counter}) does not decrypt under the session key`, { field: 'encryptedIndicium' });
  }
}
