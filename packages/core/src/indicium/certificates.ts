import { X509Certificate } from 'node:crypto';
import type { IndiciumKeyAlgorithm } from './key-algorithm';
import { OID } from '../pki/oids';
import { canonicalSerialHex } from './serial';

/**
 * Where a verifier finds indicium key certificates: the postal CA's directory, the vendor's
 * database, a local cache. `serialHex` is canonical (./serial.ts); the answer is DER X.509.
 */
export interface CertificateLookup {
  bySerial(serialHex: string): Promise<Buffer | null>;
}

/** Parses DER or PEM (Buffer or string). Throws on anything else. */
export function parseX509(input: Buffer | string): X509Certificate {
  return new X509Certificate(input);
}

/** The certificate's serial in the indicium's canonical spelling. */
export function certificateSerial(cert: X509Certificate): string {
  return canonicalSerialHex(cert.serialNumber);
}

/** Does the certificate's key fit the indicium's signature algorithm ID? */
export function keyMatchesAlgorithm(cert: X509Certificate, algorithm: IndiciumKeyAlgorithm): boolean {
  const key = cert.publicKey;
  if (algorithm === 'ec-p256') return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
  return key.asymmetricKeyType === 'rsa' && key.asymmetricKeyDetails?.modulusLength === 2048;
}

/**
 * The indicium certificate profile (packages/server/src/pki/ca/profile.ts, docs/pki.md): a certificate that
 * restricts its purposes (extendedKeyUsage) must allow id-vbi-kp-indicium, so that e.g. a
 * module identity certificate from the same CA cannot vouch for an indicium.
 */
export function allowsIndiciumSigning(cert: X509Certificate): boolean {
  const purposes = cert.keyUsage; // node: the extendedKeyUsage OIDs, undefined without the extension
  return purposes === undefined || purposes.includes(OID.kpIndicium);
}

/**
 * The meter an indicium certificate was issued to, per the profile: subject OU=indicium,
 * CN=<meter ID>. Undefined for certificates outside that profile (then not checked).
 */
export function profileMeterId(cert: X509Certificate): string | undefined {
  const rdns = cert.subject.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const);
  if (!rdns.some(([k, v]) => k === 'OU' && v === 'indicium')) return undefined;
  const cns = rdns.filter(([k]) => k === 'CN');
  return cns.length === 1 ? cns[0][1] : undefined;
}

const MAX_PATH = 5;

/**
 * The path from `leaf` to one of `anchors` through `intermediates` (leaf first, anchor last),
 * or null. Each link: the issuer's name matches, the issuer is a CA, its key verifies the
 * signature. Anchors are trusted as given (their own validity is not checked, RFC 5280 6.1).
 */
export function chainToAnchor(leaf: X509Certificate, intermediates: X509Certificate[], anchors: X509Certificate[]): X509Certificate[] | null {
  const walk = (cert: X509Certificate, depth: number): X509Certificate[] | null => {
    const anchor = anchors.find((a) => issuedBy(cert, a));
    if (anchor) return [cert, anchor];
    if (depth >= MAX_PATH) return null;
    for (const next of intermediates) {
      if (next === cert || !issuedBy(cert, next)) continue;
      const rest = walk(next, depth + 1);
      if (rest) return [cert, ...rest];
    }
    return null;
  };
  return walk(leaf, 0);
}

function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return issuer.ca && cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/**
 * Was the certificate valid on the calendar day `isoDate` (UTC)? An indicium carries only the
 * date of mailing, so a certificate counts as valid for that day if its validity period
 * overlaps any part of it.
 */
export function validOnDay(cert: X509Certificate, isoDate: string): boolean {
  const start = Date.parse(`${isoDate}T00:00:00Z`);
  const end = start + 86_400_000 - 1;
  return Date.parse(cert.validFrom) <= end && Date.parse(cert.validTo) >= start;
}

/** What a verification result says about the certificate used. */
export interface CertificateSummary {
  serial: string;
  subject: string;
  issuer: string;
  validFrom: string;
  validTo: string;
}

/** The certificate facts a verification result reports. */
export function summarise(cert: X509Certificate): CertificateSummary {
  return { serial: certificateSerial(cert), subject: cert.subject, issuer: cert.issuer, validFrom: cert.validFrom, validTo: cert.validTo };
}
