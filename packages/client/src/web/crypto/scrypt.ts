import { scryptAsync } from '@noble/hashes/scrypt';

/**
 * scrypt, which WebCrypto lacks (@noble/hashes, audited, no dependencies). Same parameters as
 * node:crypto's scrypt; the password is NFKC-normalised by the caller as in the SDK.
 */
export async function scrypt(req: { password: string | Uint8Array; salt: string | Uint8Array; N: number; r: number; p: number; keyLength: number }): Promise<Buffer> {
  const key = await scryptAsync(req.password, req.salt, { N: req.N, r: req.r, p: req.p, dkLen: req.keyLength, maxmem: 256 * req.N * req.r + (1 << 20) });
  return Buffer.from(key);
}
