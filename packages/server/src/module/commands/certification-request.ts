import { vbiError } from '@vbi/core/errors';
import { HsmModule, IndiciumKeyAlgorithm } from '../../hsm/hsm-module';
import { openPackage } from '../package-seal';
import { parseRequestInfo } from '../../pki/csr';
import { rawToDer } from '@vbi/core/pki/ecdsa-signature';
import { verifySignature } from '@vbi/core/pki/verify-signature';

/**
 * Signs a PKCS#10 CertificationRequestInfo with a meter's wrapped indicium key (proof of
 * possession for MeterGen) — and nothing else. A meter key must not become a signing oracle:
 * a signature made before certification would verify as an indicium afterwards. So the module
 * signs only bytes that are exactly a DER CertificationRequestInfo whose subject CN is the
 * meter ID and whose public key verifies the signature just made (the key is the meter's own);
 * otherwise the signature is discarded and CSR_SIGN_REFUSED raised. Indicium data must never
 * be a DER CertificationRequestInfo (docs/pki.md). Returns the X.509 signature value
 * (DER ECDSA-Sig-Value, or RSA PKCS#1 v1.5).
 */
export async function signRequestWithKey(hsm: HsmModule, req: { meterId: string; wrappedKey: Buffer; algorithm: IndiciumKeyAlgorithm; requestInfo: Buffer }): Promise<Buffer> {
  const info = parseRequestInfo(req.requestInfo);
  if (!info) throw vbiError('CSR_SIGN_REFUSED', `meter ${req.meterId}: data to sign is not a DER CertificationRequestInfo`);
  if (info.subject?.commonName !== req.meterId) throw vbiError('CSR_SIGN_REFUSED', `meter ${req.meterId}: request subject CN must be the meter ID`);
  const raw = await hsm.signWithWrappedKey({ wrappedKey: req.wrappedKey, algorithm: req.algorithm, data: req.requestInfo });
  const ec = req.algorithm === 'ec-p256';
  const signature = ec ? rawToDer(raw) : raw;
  if (!verifySignature({ spki: info.spki, algorithm: ec ? 'ecdsa-sha256' : 'rsa-pkcs1-sha256', data: req.requestInfo, signature })) {
    throw vbiError('CSR_SIGN_REFUSED', `meter ${req.meterId}: the request's public key is not the meter's key`);
  }
  return signature;
}

/**
 * The same for the key inside a sealed package: read-only (no dispatch, no checkpoint), only
 * while the package is unassigned and uncertified; a certified key signs indicia only.
 */
export async function signRequestWithPackageKey(hsm: HsmModule, req: { meterId: string; sealedPackage: Buffer; requestInfo: Buffer }): Promise<Buffer> {
  const pkg = await openPackage(hsm, req.sealedPackage, req.meterId);
  if (pkg.indiciumCertSerial !== '' || pkg.state !== 'unassigned') {
    throw vbiError('CSR_SIGN_REFUSED', `meter ${req.meterId} is certified; its key signs indicia only (renew to get a new key)`);
  }
  if (!pkg.indiciumKeyAlgorithm || pkg.secrets.wrappedIndiciumKey.length === 0) throw vbiError('BAD_REQUEST', `meter ${req.meterId} has no indicium key`);
  return signRequestWithKey(hsm, { meterId: req.meterId, wrappedKey: pkg.secrets.wrappedIndiciumKey, algorithm: pkg.indiciumKeyAlgorithm, requestInfo: req.requestInfo });
}
