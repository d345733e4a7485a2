import { constants, KeyObject, verify } from 'node:crypto';
import type { IndiciumKeyAlgorithm } from './key-algorithm';

/**
 * Checks an indicium signature with node:crypto (OpenSSL). EC: ECDSA P-256 over SHA-256 with
 * the raw r||s encoding the HSM produces (dsaEncoding 'ieee-p1363'). RSA: PKCS#1 v1.5 SHA-256.
 * Never throws: a signature OpenSSL cannot even parse is simply not valid.
 */
export function verifyIndiciumSignature(req: { algorithm: IndiciumKeyAlgorithm; publicKey: KeyObject; data: Buffer; signature: Buffer }): boolean {
  try {
    return req.algorithm === 'ec-p256'
      ? verify('sha256', req.data, { key: req.publicKey, dsaEncoding: 'ieee-p1363' }, req.signature)
      : verify('sha256', req.data, { key: req.publicKey, padding: constants.RSA_PKCS1_PADDING }, req.signature);
  } catch {
    return false;
  }
}

/**
 * Raw r||s (64 bytes) to the DER ECDSA-Sig-Value SEQUENCE { r INTEGER, s INTEGER } that
 * `openssl dgst -verify` and most X.509 tooling expect.
 */
export function ecdsaRawToDer(raw: Buffer): Buffer {
  if (raw.length !== 64) throw new Error('expected a 64-byte P-256 r||s signature');
  const int = (b: Buffer): Buffer => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    const v = b.subarray(i);
    const body = v[0] & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v;
    return Buffer.concat([Buffer.from([0x02, body.length]), body]);
  };
  const seq = Buffer.concat([int(raw.subarray(0, 32)), int(raw.subarray(32))]);
  return Buffer.concat([Buffer.from([0x30, seq.length]), seq]);
}
