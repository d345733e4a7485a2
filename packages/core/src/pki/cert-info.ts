import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { vbiError } from '../errors';
import { OID, oidIs } from './oids';
import { KeyUsageName, findExtension, readKeyUsage } from './extensions';
import { NameFields, nameDer, readName } from './names';
import { SignatureAlgorithm, signatureAlgorithmOf } from './signer';

/** What the PKI code needs to know about a certificate, decoded once. */
export interface CertInfo {
  der: Buffer;
  cert: pkijs.Certificate;
  /** The signed TBSCertificate bytes exactly as received. */
  tbs: Buffer;
  /** Canonical serial: unsigned magnitude, lower-case hex, no leading zero byte. */
  serialHex: string;
  /** O/OU/CN of the subject (other attributes ignored); null without exactly one CN. */
  subject: NameFields | null;
  subjectDer: Buffer;
  issuerDer: Buffer;
  spki: Buffer;
  notBefore: Date;
  notAfter: Date;
  signatureAlgorithm: SignatureAlgorithm | null;
  signature: Buffer;
  isCa: boolean;
  pathLen: number | undefined;
  /** Null when the certificate has no keyUsage extension (any usage). */
  keyUsage: Set<KeyUsageName> | null;
  /** Null when the certificate has no extendedKeyUsage extension. */
  extKeyUsage: string[] | null;
  /** OIDs of critical extensions this code does not process (a verifier must refuse them). */
  unknownCritical: string[];
}

const KNOWN = [OID.basicConstraints, OID.keyUsage, OID.extKeyUsage, OID.subjectKeyIdentifier, OID.authorityKeyIdentifier, OID.nextCaKeyHash];

/** Decodes a DER certificate; CERT_INVALID when it is not one (or has trailing bytes). */
export function readCertInfo(der: Buffer): CertInfo {
  let cert: pkijs.Certificate;
  try {
    const parsed = asn1js.fromBER(der);
    if (parsed.offset !== der.length) throw new Error('trailing or missing bytes');
    cert = new pkijs.Certificate({ schema: parsed.result });
  } catch (e) {
    throw vbiError('CERT_INVALID', `not a DER X.509 certificate: ${(e as Error).message}`);
  }
  if (cert.version !== 2) throw vbiError('CERT_INVALID', `certificate is not X.509 v3 (version field ${cert.version})`);
  const bc = findExtension(cert, OID.basicConstraints)?.parsedValue as pkijs.BasicConstraints | undefined;
  const ku = findExtension(cert, OID.keyUsage)?.parsedValue as asn1js.BitString | undefined;
  const eku = findExtension(cert, OID.extKeyUsage)?.parsedValue as pkijs.ExtKeyUsage | undefined;
  const outer = signatureAlgorithmOf(cert.signatureAlgorithm);
  const inner = signatureAlgorithmOf(cert.signature);
  return {
    der,
    cert,
    tbs: Buffer.from(cert.tbsView),
    serialHex: canonicalSerial(Buffer.from(cert.serialNumber.valueBlock.valueHexView)),
    subject: readName(cert.subject, false),
    subjectDer: nameDer(cert.subject),
    issuerDer: nameDer(cert.issuer),
    spki: Buffer.from(cert.subjectPublicKeyInfo.toSchema().toBER()),
    notBefore: cert.notBefore.value,
    notAfter: cert.notAfter.value,
    // The TBS copy of the algorithm must equal the outer one (RFC 5280 4.1.1.2).
    signatureAlgorithm: outer !== null && outer === inner ? outer : null,
    signature: Buffer.from(cert.signatureValue.valueBlock.valueHexView),
    isCa: bc?.cA === true,
    pathLen: bc && typeof bc.pathLenConstraint === 'number' ? bc.pathLenConstraint : undefined,
    keyUsage: ku ? readKeyUsage(ku) : null,
    extKeyUsage: eku ? eku.keyPurposes.slice() : null,
    unknownCritical: (cert.extensions ?? []).filter((e) => e.critical && !KNOWN.some((k) => oidIs(e.extnID, k))).map((e) => e.extnID),
  };
}

/** The canonical spelling of a serial: magnitude bytes without leading zeros, lower-case hex. */
export function canonicalSerial(content: Buffer): string {
  let i = 0;
  while (i < content.length - 1 && content[i] === 0) i++;
  return content.subarray(i).toString('hex');
}

/** True when the certificate's extendedKeyUsage names `purpose`. */
export function hasPurpose(info: CertInfo, purpose: string): boolean {
  return (info.extKeyUsage ?? []).some((p) => oidIs(p, purpose));
}
