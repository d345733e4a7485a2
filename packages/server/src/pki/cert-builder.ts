import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { X509Signer, signatureAlgorithmIdentifier } from '@vbi/core/pki/signer';
import { minimalUnsigned } from '@vbi/core/pki/ecdsa-signature';
import { toArrayBuffer } from '@vbi/core/pki/bytes';

/** Everything a certificate says, decided by the caller (the CA's profile). */
export interface CertificateContent {
  /** Positive serial number magnitude (big-endian). */
  serial: Buffer;
  issuer: pkijs.RelativeDistinguishedNames;
  subject: pkijs.RelativeDistinguishedNames;
  /** DER SubjectPublicKeyInfo of the certified key. */
  spki: Buffer;
  notBefore: Date;
  notAfter: Date;
  extensions: pkijs.Extension[];
}

/**
 * Builds an X.509 v3 certificate with pkijs and has `signer` sign it: the TBSCertificate is
 * encoded here, signed wherever the key lives, and the signature set as-is. The algorithm
 * (ecdsa-with-SHA256 or sha256WithRSAEncryption) is always explicit: pkijs' own sign() would
 * default to SHA-1.
 */
export async function buildCertificate(content: CertificateContent, signer: X509Signer): Promise<Buffer> {
  const cert = new pkijs.Certificate();
  cert.version = 2;
  cert.serialNumber = new asn1js.Integer({ valueHex: minimalUnsigned(content.serial) });
  cert.signature = signatureAlgorithmIdentifier(signer.algorithm);
  cert.signatureAlgorithm = signatureAlgorithmIdentifier(signer.algorithm);
  cert.issuer = content.issuer;
  cert.subject = content.subject;
  cert.notBefore = x509Time(content.notBefore);
  cert.notAfter = x509Time(content.notAfter);
  cert.subjectPublicKeyInfo = pkijs.PublicKeyInfo.fromBER(toArrayBuffer(content.spki));
  cert.extensions = content.extensions;
  cert.tbsView = new Uint8Array(cert.encodeTBS().toBER());
  const signature = await signer.sign(Buffer.from(cert.tbsView));
  cert.signatureValue = new asn1js.BitString({ valueHex: signature });
  return Buffer.from(cert.toSchema().toBER());
}

/**
 * UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5). Both have one-second
 * resolution: callers pass whole seconds (wholeSeconds) so that the value read back is equal.
 */
function x509Time(d: Date): pkijs.Time {
  return new pkijs.Time({ type: d.getUTCFullYear() < 2050 ? pkijs.TimeType.UTCTime : pkijs.TimeType.GeneralizedTime, value: d });
}

/** Truncates to a whole second. */
export function wholeSeconds(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000);
}
