import { vbiError } from '../errors';
import { CertInfo, readCertInfo } from './cert-info';
import { verifySignature } from './verify-signature';

const MAX_DEPTH = 4;

/**
 * Certification path validation, small and strict (RFC 5280 6.1 reduced to what this PKI
 * uses): from the leaf, each certificate's issuer name must equal the next certificate's
 * subject (byte equality of the DER names) and its signature must verify under that
 * certificate's key; every certificate must be valid at `at`; every issuer must be a CA
 * (basicConstraints cA, keyCertSign when keyUsage is present, pathLen respected); no
 * certificate may carry a critical extension this code does not understand. The path must end
 * at one of `anchors` (self-signed roots the relying party installed itself, never taken from
 * the other side). Returns the path leaf first, anchor last; CERT_INVALID says what failed.
 */
export function verifyPath(req: { leaf: Buffer | CertInfo; intermediates: Buffer[]; anchors: Buffer[]; at: Date }): CertInfo[] {
  const leaf = Buffer.isBuffer(req.leaf) ? readCertInfo(req.leaf) : req.leaf;
  const anchors = req.anchors.map(readCertInfo);
  const pool = req.intermediates.map(readCertInfo).filter((c) => !anchors.some((a) => a.der.equals(c.der)));
  const path: CertInfo[] = [leaf];
  checkCommon(leaf, req.at, 'leaf');
  let current = leaf;
  for (let depth = 0; depth <= MAX_DEPTH; depth++) {
    const anchor = anchors.find((a) => issuedBy(current, a));
    if (anchor) {
      checkIssuer(anchor, req.at, depth, 'trust anchor');
      path.push(anchor);
      return path;
    }
    const next = pool.find((c) => !path.includes(c) && issuedBy(current, c));
    if (!next) {
      throw vbiError('CERT_INVALID', `no trusted issuer found for '${current.subject?.commonName ?? 'unnamed'}' (serial ${current.serialHex}): signature or issuer name does not match any CA certificate`);
    }
    checkCommon(next, req.at, 'intermediate');
    checkIssuer(next, req.at, depth, 'intermediate');
    path.push(next);
    current = next;
  }
  throw vbiError('CERT_INVALID', 'certification path is too long');
}

/** True when `issuer`'s subject is `cert`'s issuer and `issuer`'s key verifies `cert`'s signature. */
export function issuedBy(cert: CertInfo, issuer: CertInfo): boolean {
  return cert.issuerDer.equals(issuer.subjectDer)
    && cert.signatureAlgorithm !== null
    && verifySignature({ spki: issuer.spki, algorithm: cert.signatureAlgorithm, data: cert.tbs, signature: cert.signature });
}

function checkCommon(c: CertInfo, at: Date, what: string): void {
  const name = c.subject?.commonName ?? 'unnamed';
  if (c.signatureAlgorithm === null) throw vbiError('CERT_INVALID', `${what} '${name}': signature algorithm is not ECDSA or RSA with SHA-256`);
  if (at < c.notBefore || at > c.notAfter) {
    throw vbiError('CERT_INVALID', `${what} '${name}' (serial ${c.serialHex}) is not valid at ${at.toISOString()} (valid ${c.notBefore.toISOString()} to ${c.notAfter.toISOString()})`);
  }
  if (c.unknownCritical.length > 0) throw vbiError('CERT_INVALID', `${what} '${name}' has unknown critical extensions ${c.unknownCritical.join(', ')}`);
}

/** `depth` = number of CA certificates below this one in the path (pathLen counts those). */
function checkIssuer(c: CertInfo, at: Date, depth: number, what: string): void {
  checkCommon(c, at, what);
  const name = c.subject?.commonName ?? 'unnamed';
  if (!c.isCa) throw vbiError('CERT_INVALID', `${what} '${name}' is not a CA certificate`);
  if (c.keyUsage && !c.keyUsage.has('keyCertSign')) throw vbiError('CERT_INVALID', `${what} '${name}' may not sign certificates (keyUsage)`);
  if (c.pathLen !== undefined && depth > c.pathLen) throw vbiError('CERT_INVALID', `${what} '${name}' pathLen ${c.pathLen} exceeded`);
}
