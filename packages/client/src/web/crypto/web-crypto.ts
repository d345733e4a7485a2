import { vbiError } from '@vbi/core/errors';
import type { OaepHash } from '../../client/client-state';

/**
 * The SDK's client crypto (packages/client/src/client/client-crypto.ts) on WebCrypto, for the browser: the same
 * inputs give the same bytes (test/web/web-crypto.test.ts checks it against the SDK). Keys never
 * leave this page; HMK and session key are imported as non-extractable CryptoKeys where
 * WebCrypto allows it.
 */
const subtle = (): SubtleCrypto => globalThis.crypto.subtle;

/** A copy WebCrypto accepts as BufferSource (a Buffer may view a shared pool). */
export function bytes(b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(b.length);
  out.set(b);
  return out;
}

/** `n` random bytes from the platform's CSPRNG. */
export function randomBytes(n: number): Buffer {
  return Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(n)));
}

/** A random UUID (Idempotency-Key). */
export function randomUuid(): string {
  return globalThis.crypto.randomUUID();
}

/** HMAC-SHA256(key, data), as the SDK's hmacSha256. */
export async function hmacSha256(key: Uint8Array, data: Uint8Array): Promise<Buffer> {
  const k = await subtle().importKey('raw', bytes(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return Buffer.from(await subtle().sign('HMAC', k, bytes(data)));
}

/** Checks a base64 MAC with WebCrypto's HMAC verify (constant time). */
export async function macMatches(key: Uint8Array, data: Uint8Array, macB64: unknown): Promise<boolean> {
  if (typeof macB64 !== 'string') return false;
  const k = await subtle().importKey('raw', bytes(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
  return subtle().verify('HMAC', k, bytes(Buffer.from(macB64, 'base64')), bytes(data));
}

/** RSA-OAEP encryption of a secret to a module transport key (base64 SPKI), base64 out. */
export async function encryptToModule(module: { transportKey: string; oaepHash: OaepHash }, secret: Uint8Array): Promise<string> {
  let key: CryptoKey;
  try {
    key = await subtle().importKey('spki', bytes(Buffer.from(module.transportKey, 'base64')),
      { name: 'RSA-OAEP', hash: module.oaepHash === 'sha1' ? 'SHA-1' : 'SHA-256' }, false, ['encrypt']);
  } catch {
    throw vbiError('CERT_INVALID', 'the module transport key is not an RSA key');
  }
  return Buffer.from(await subtle().encrypt({ name: 'RSA-OAEP' }, key, bytes(secret))).toString('base64');
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Decrypts an encrypted indicium (base64 IV(12) || AES-256-GCM ciphertext || tag(16)) under
 * the session key with the AAD the SDK uses; INDICIUM_MALFORMED when it does not decrypt.
 */
export async function decryptWithSessionKey(req: { sessionKey: CryptoKey; encrypted: string; aad: Uint8Array; what: string }): Promise<Buffer> {
  const blob = Buffer.from(req.encrypted, 'base64');
  if (blob.length < IV_BYTES + TAG_BYTES + 1) throw vbiError('INDICIUM_MALFORMED', `${req.what} is too short`, { field: 'encryptedIndicium' });
  try {
    const plain = await subtle().decrypt({ name: 'AES-GCM', iv: bytes(blob.subarray(0, IV_BYTES)), additionalData: bytes(req.aad), tagLength: TAG_BYTES * 8 },
      req.sessionKey, bytes(blob.subarray(IV_BYTES)));
    return Buffer.from(plain);
  } catch {
    throw vbiError('INDICIUM_MALFORMED', `${req.what} does not decrypt under the session key`, { field: 'encryptedIndicium' });
  }
}

/** A fresh AES-256-GCM session key: its raw bytes (sent once, RSA-OAEP-encrypted) and a non-extractable handle. */
export async function newSessionKey(): Promise<{ raw: Buffer; key: CryptoKey }> {
  const raw = randomBytes(32);
  const key = await subtle().importKey('raw', bytes(raw), { name: 'AES-GCM' }, false, ['decrypt']);
  return { raw, key };
}

/** ECDSA P-256 / SHA-256 over `data`, raw r||s signature (what modules sign), key as SPKI DER. */
export async function verifyEcdsaP256(spki: Uint8Array, data: Uint8Array, signatureB64: unknown): Promise<boolean> {
  if (typeof signatureB64 !== 'string') return false;
  try {
    const key = await subtle().importKey('spki', bytes(spki), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    return await subtle().verify({ name: 'ECDSA', hash: 'SHA-256' }, key, bytes(Buffer.from(signatureB64, 'base64')), bytes(data));
  } catch {
    return false;
  }
}

/** SHA-256 (receipt batch trees). */
export async function sha256(data: Uint8Array): Promise<Buffer> {
  return Buffer.from(await subtle().digest('SHA-256', bytes(data)));
}

/** SHA-256, hex: certificate fingerprints shown to the user. */
export async function sha256Hex(data: Uint8Array): Promise<string> {
  return (await sha256(data)).toString('hex');
}
