import { KeyObject, createPublicKey, verify } from 'node:crypto';
import { SignatureAlgorithm } from './signer';

/**
 * Verifies an X.509-form signature (DER ECDSA-Sig-Value, or RSA PKCS#1 v1.5) over `data` with
 * SHA-256, using node's OpenSSL: independent of the token that made it. False on any mismatch,
 * including a key of the wrong type; never throws for a bad signature.
 */
export function verifySignature(req: { spki: Buffer; algorithm: SignatureAlgorithm; data: Buffer; signature: Buffer }): boolean {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: req.spki, format: 'der', type: 'spki' });
  } catch {
    return false;
  }
  if (key.asymmetricKeyType !== (req.algorithm === 'ecdsa-sha256' ? 'ec' : 'rsa')) return false;
  try {
    return verify('sha256', req.data, req.algorithm === 'ecdsa-sha256' ? { key, dsaEncoding: 'der' } : key, req.signature);
  } catch {
    return false;
  }
}

/** What kind of key an SPKI holds, as the package records it; null for anything else. */
export function keyAlgorithmOf(spki: Buffer): 'ec-p256' | 'rsa-2048' | null {
  try {
    const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    const d = key.asymmetricKeyDetails ?? {};
    if (key.asymmetricKeyType === 'ec' && d.namedCurve === 'prime256v1') return 'ec-p256';
    if (key.asymmetricKeyType === 'rsa' && d.modulusLength === 2048 && d.publicExponent === 65537n) return 'rsa-2048';
    return null;
  } catch {
    return null;
  }
}
