import { randomBytes } from 'node:crypto';
import { vbiError } from '@vbi/core/errors';
import { HsmModule, IndiciumKeyAlgorithm } from '../../hsm/hsm-module';
import { rawToDer } from '@vbi/core/pki/ecdsa-signature';
import { keyAlgorithmOf, verifySignature } from '@vbi/core/pki/verify-signature';

/**
 * Proves inside the module that a wrapped indicium key is the private half of `spki` (the key a
 * certificate names): the module signs a random probe with the wrapped key and the signature
 * must verify under `spki`. CERT_KEY_MISMATCH otherwise. One unwrap + sign: MeterGen rates only.
 */
export async function assertKeyMatches(hsm: HsmModule, req: { wrappedKey: Buffer; algorithm: IndiciumKeyAlgorithm; spki: Buffer; what: string }): Promise<void> {
  if (keyAlgorithmOf(req.spki) !== req.algorithm) {
    throw vbiError('CERT_KEY_MISMATCH', `${req.what}: certificate key is not an ${req.algorithm} key`);
  }
  const probe = Buffer.concat([Buffer.from('vbi-key-probe\0', 'ascii'), randomBytes(32)]);
  const sig = await hsm.signWithWrappedKey({ wrappedKey: req.wrappedKey, algorithm: req.algorithm, data: probe });
  const ec = req.algorithm === 'ec-p256';
  const ok = verifySignature({ spki: req.spki, algorithm: ec ? 'ecdsa-sha256' : 'rsa-pkcs1-sha256', data: probe, signature: ec ? rawToDer(sig) : sig });
  if (!ok) throw vbiError('CERT_KEY_MISMATCH', `${req.what}: the certificate's public key is not the package's indicium key`);
}
