import { vbiError } from '@vbi/core/errors';
import { CertInfo, readCertInfo } from '@vbi/core/pki/cert-info';
import { verifyPath } from '@vbi/core/pki/path';

/**
 * The requester's check of a certificate a CA returned (WO 01/29778: "MeterGen verifies the
 * certificate using the USPS Certificate Authority's certificate"): it must chain to one of the
 * requester's own trust anchors (signatures, validity at `at`, CA constraints), be an end-entity
 * certificate for digital signatures, name the expected subject, and certify exactly the
 * public key that was requested. Returns the leaf and the verified path (leaf first, anchor last). CERT_KEY_MISMATCH for a different key, CERT_INVALID for
 * everything else. Nothing about the CA's own conventions is assumed (serial format, extra
 * extensions, signature algorithm beyond SHA-256 ECDSA/RSA).
 */
export function verifyIssuedCertificate(req: {
  certificateDer: Buffer;
  chain: Buffer[];
  anchors: Buffer[];
  expectedSpki: Buffer;
  expectedCommonName: string;
  at: Date;
}): { leaf: CertInfo; path: CertInfo[] } {
  const leaf = readCertInfo(req.certificateDer);
  const path = verifyPath({ leaf, intermediates: req.chain, anchors: req.anchors, at: req.at });
  if (leaf.isCa) throw vbiError('CERT_INVALID', `certificate ${leaf.serialHex} is a CA certificate, not an end-entity certificate`);
  if (leaf.keyUsage && !leaf.keyUsage.has('digitalSignature')) throw vbiError('CERT_INVALID', `certificate ${leaf.serialHex} does not allow digital signatures`);
  if (leaf.subject?.commonName !== req.expectedCommonName) {
    throw vbiError('CERT_INVALID', `certificate ${leaf.serialHex} names '${leaf.subject?.commonName ?? '?'}', expected '${req.expectedCommonName}'`);
  }
  if (!leaf.spki.equals(req.expectedSpki)) {
    throw vbiError('CERT_KEY_MISMATCH', `certificate ${leaf.serialHex} certifies another public key than the one requested for '${req.expectedCommonName}'`);
  }
  return { leaf, path };
}
