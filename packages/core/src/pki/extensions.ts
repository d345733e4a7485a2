import { createHash } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { OID, oidIs } from './oids';
import { toArrayBuffer } from './bytes';

/** Key usage bits (RFC 5280 4.2.1.3), numbered from the most significant bit of the first byte. */
export const KEY_USAGE = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const;
/** A key usage this code sets or reads. */
export type KeyUsageName = keyof typeof KEY_USAGE;

function ext(extnID: string, critical: boolean, value: asn1js.BaseBlock): pkijs.Extension {
  return new pkijs.Extension({ extnID, critical, extnValue: value.toBER() });
}

/** Critical basicConstraints: CA (with optional pathLen) or end entity (empty SEQUENCE = CA:FALSE). */
export function basicConstraints(req: { ca: boolean; pathLen?: number }): pkijs.Extension {
  const bc = new pkijs.BasicConstraints(req.ca ? { cA: true, ...(req.pathLen !== undefined ? { pathLenConstraint: req.pathLen } : {}) } : {});
  return ext(OID.basicConstraints, true, bc.toSchema());
}

/** Critical keyUsage with exactly `usages`, as a DER BIT STRING without trailing zero bits. */
export function keyUsage(usages: KeyUsageName[]): pkijs.Extension {
  const bits = usages.map((u) => KEY_USAGE[u]);
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const b of bits) bytes[b >> 3] |= 0x80 >> (b & 7);
  const unusedBits = 7 - (highest & 7);
  return ext(OID.keyUsage, true, new asn1js.BitString({ valueHex: bytes, unusedBits }));
}

/** Names the bits set in a keyUsage BIT STRING. */
export function readKeyUsage(bits: asn1js.BitString): Set<KeyUsageName> {
  const bytes = Buffer.from(bits.valueBlock.valueHexView);
  const out = new Set<KeyUsageName>();
  for (const [name, bit] of Object.entries(KEY_USAGE) as Array<[KeyUsageName, number]>) {
    if ((bit >> 3) < bytes.length && bytes[bit >> 3] & (0x80 >> (bit & 7))) out.add(name);
  }
  return out;
}

/**
 * Key identifier of a public key: leftmost 160 bits of SHA-256 of the subjectPublicKey BIT
 * STRING contents (RFC 7093 method 1; no SHA-1 anywhere).
 */
export function keyIdentifier(spki: Buffer): Buffer {
  const info = pkijs.PublicKeyInfo.fromBER(toArrayBuffer(spki));
  const key = Buffer.from(info.subjectPublicKey.valueBlock.valueHexView);
  return createHash('sha256').update(key).digest().subarray(0, 20);
}

/** Non-critical subjectKeyIdentifier of the certified key (keyIdentifier). */
export function subjectKeyIdentifier(spki: Buffer): pkijs.Extension {
  return ext(OID.subjectKeyIdentifier, false, new asn1js.OctetString({ valueHex: keyIdentifier(spki) }));
}

/** Non-critical authorityKeyIdentifier: keyIdentifier of the issuer's key. */
export function authorityKeyIdentifier(issuerSpki: Buffer): pkijs.Extension {
  const akid = new pkijs.AuthorityKeyIdentifier({ keyIdentifier: new asn1js.OctetString({ valueHex: keyIdentifier(issuerSpki) }) });
  return ext(OID.authorityKeyIdentifier, false, akid.toSchema());
}

/** Non-critical extendedKeyUsage naming the project's key purposes (packages/core/src/pki/oids.ts). */
export function extKeyUsage(purposes: string[]): pkijs.Extension {
  return ext(OID.extKeyUsage, false, new pkijs.ExtKeyUsage({ keyPurposes: purposes }).toSchema());
}

/** SHA-256 over the DER SubjectPublicKeyInfo: the value the rollover extension publishes. */
export function spkiHash(spki: Buffer): Buffer {
  return createHash('sha256').update(spki).digest();
}

/**
 * The CA-rollover commitment (docs/pki.md), non-critical so that other software ignores it:
 *
 *   id-vbi-nextCaKeyHash  EXTENSION ::= { SYNTAX NextCaKeyHash IDENTIFIED BY <VBI_ARC>.1.1 }
 *   NextCaKeyHash ::= SEQUENCE {
 *     hashAlgorithm  AlgorithmIdentifier,  -- id-sha256, parameters absent
 *     keyHash        OCTET STRING }        -- SHA-256 of the DER SubjectPublicKeyInfo of the next CA key
 */
export function nextCaKeyHash(nextSpki: Buffer): pkijs.Extension {
  const value = new asn1js.Sequence({
    value: [
      new pkijs.AlgorithmIdentifier({ algorithmId: OID.sha256 }).toSchema(),
      new asn1js.OctetString({ valueHex: spkiHash(nextSpki) }),
    ],
  });
  return ext(OID.nextCaKeyHash, false, value);
}

/** The published next-key hash of a CA certificate, or null when it has none (or it is malformed). */
export function readNextCaKeyHash(cert: pkijs.Certificate): Buffer | null {
  const e = findExtension(cert, OID.nextCaKeyHash);
  if (!e) return null;
  const parsed = asn1js.fromBER(e.extnValue.valueBlock.valueHexView);
  const seq = parsed.result;
  if (parsed.offset === -1 || !(seq instanceof asn1js.Sequence) || seq.valueBlock.value.length !== 2) return null;
  const [alg, hash] = seq.valueBlock.value;
  try {
    if (new pkijs.AlgorithmIdentifier({ schema: alg }).algorithmId !== OID.sha256) return null;
  } catch {
    return null;
  }
  if (!(hash instanceof asn1js.OctetString) || hash.valueBlock.valueHexView.byteLength !== 32) return null;
  return Buffer.from(hash.valueBlock.valueHexView);
}

/** The extension with `oid`, however asn1js spelled the parsed OID. */
export function findExtension(cert: pkijs.Certificate, oid: string): pkijs.Extension | undefined {
  return (cert.extensions ?? []).find((e) => oidIs(e.extnID, oid));
}
