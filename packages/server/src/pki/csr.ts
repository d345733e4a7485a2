import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { NameFields, buildName, readName } from '@vbi/core/pki/names';
import { SignatureAlgorithm, X509Signer, signatureAlgorithmIdentifier, signatureAlgorithmOf } from '@vbi/core/pki/signer';
import { verifySignature } from '@vbi/core/pki/verify-signature';
import { toArrayBuffer } from '@vbi/core/pki/bytes';

/**
 * Builds a PKCS#10 certification request with pkijs, signed by the requested key itself (proof
 * of possession). The CertificationRequestInfo is encoded here and signed by `signer`, wherever
 * that key lives; there are no attributes (the CA applies its own profile, docs/pki.md).
 */
export async function buildCsr(req: { subject: NameFields; publicKeySpki: Buffer; signer: X509Signer }): Promise<Buffer> {
  const csr = new pkijs.CertificationRequest();
  csr.version = 0;
  csr.subject = buildName(req.subject);
  csr.subjectPublicKeyInfo = pkijs.PublicKeyInfo.fromBER(toArrayBuffer(req.publicKeySpki));
  csr.attributes = []; // encoded as the empty [0] SET PKCS#10 requires
  // encodeTBS is protected in pkijs' typings only; it is what pkijs' own sign() uses.
  csr.tbsView = new Uint8Array((csr as unknown as { encodeTBS(): asn1js.Sequence }).encodeTBS().toBER());
  csr.signatureAlgorithm = signatureAlgorithmIdentifier(req.signer.algorithm);
  csr.signatureValue = new asn1js.BitString({ valueHex: await req.signer.sign(Buffer.from(csr.tbsView)) });
  return Buffer.from(csr.toSchema().toBER());
}

/** A decoded PKCS#10 request. */
export interface CsrInfo {
  der: Buffer;
  /** The signed CertificationRequestInfo bytes as received. */
  requestInfo: Buffer;
  subject: NameFields | null;
  spki: Buffer;
  signatureAlgorithm: SignatureAlgorithm | null;
  signature: Buffer;
  attributeCount: number;
}

/** Decodes a DER PKCS#10 request; throws on anything that is not exactly one. */
export function parseCsr(der: Buffer): CsrInfo {
  const parsed = asn1js.fromBER(der);
  if (parsed.offset !== der.length) throw new Error('not a DER PKCS#10 request (length)');
  const csr = new pkijs.CertificationRequest({ schema: parsed.result });
  if (csr.version !== 0) throw new Error(`PKCS#10 version ${csr.version}`);
  return {
    der,
    requestInfo: Buffer.from(csr.tbsView),
    subject: readName(csr.subject),
    spki: Buffer.from(csr.subjectPublicKeyInfo.toSchema().toBER()),
    signatureAlgorithm: signatureAlgorithmOf(csr.signatureAlgorithm),
    signature: Buffer.from(csr.signatureValue.valueBlock.valueHexView),
    attributeCount: csr.attributes?.length ?? 0,
  };
}

/** True when the request is signed by the key it asks to certify, with a SHA-256 algorithm. */
export function csrSelfSignatureValid(info: CsrInfo): boolean {
  return info.signatureAlgorithm !== null
    && verifySignature({ spki: info.spki, algorithm: info.signatureAlgorithm, data: info.requestInfo, signature: info.signature });
}

/**
 * Decodes bytes that must be exactly a DER CertificationRequestInfo (version 0, subject, key,
 * attributes); null for anything else. Used by the module before it lets a meter key sign.
 */
export function parseRequestInfo(der: Buffer): { subject: NameFields | null; spki: Buffer } | null {
  try {
    const parsed = asn1js.fromBER(der);
    const seq = parsed.result;
    if (parsed.offset !== der.length || !(seq instanceof asn1js.Sequence)) return null;
    const v = seq.valueBlock.value;
    if (v.length !== 4 || !(v[0] instanceof asn1js.Integer) || v[0].valueBlock.valueDec !== 0) return null;
    const tag = v[3].idBlock;
    if (tag.tagClass !== 3 || tag.tagNumber !== 0) return null;
    // The bytes must be the canonical encoding, not merely decodable into one.
    if (!Buffer.from(seq.toBER()).equals(der)) return null;
    const subject = readName(new pkijs.RelativeDistinguishedNames({ schema: v[1] }));
    const spki = Buffer.from(new pkijs.PublicKeyInfo({ schema: v[2] }).toSchema().toBER());
    return { subject, spki };
  } catch {
    return null;
  }
}
