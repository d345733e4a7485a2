import * as asn1js from 'asn1js';

/**
 * Object identifiers used by the PKI code.
 *
 * The project's private arc is a UUID OID (ITU-T X.667, `2.25.<UUID as integer>`), which
 * anyone may mint without registration. UUID 1026661e-302d-44b0-a1b4-dbfcdc5f11ff:
 *
 *   2.25.21467026410717431827165635986342220287        vbi arc
 *     .1      certificate extensions
 *       .1.1  id-vbi-nextCaKeyHash   (docs/pki.md "CA rollover")
 *     .2      key purposes (extendedKeyUsage)
 *       .2.1  id-vbi-kp-indicium         indicium signing keys of meters
 *       .2.2  id-vbi-kp-moduleIdentity   identity keys of cryptographic modules
 *
 * Persisted in every certificate the dev/test CA issues: never renumber.
 */
export const VBI_ARC = '2.25.21467026410717431827165635986342220287';
/** Every OID the PKI code writes or checks. */
export const OID = {
  nextCaKeyHash: `${VBI_ARC}.1.1`,
  kpIndicium: `${VBI_ARC}.2.1`,
  kpModuleIdentity: `${VBI_ARC}.2.2`,

  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  sha256: '2.16.840.1.101.3.4.2.1',
  ecPublicKey: '1.2.840.10045.2.1',
  prime256v1: '1.2.840.10045.3.1.7',
  rsaEncryption: '1.2.840.113549.1.1.1',

  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  organizationalUnit: '2.5.4.11',

  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
} as const;

/**
 * asn1js spells a sub-identifier wider than 53 bits as `{hex}` when it decodes one, so a
 * parsed OID under the UUID arc never equals its dotted form. Compare through this: it gives
 * the spelling asn1js produces for `dotted`.
 */
export function parsedOidSpelling(dotted: string): string {
  const der = new asn1js.ObjectIdentifier({ value: dotted }).toBER();
  return (asn1js.fromBER(der).result as asn1js.ObjectIdentifier).valueBlock.toString();
}

/** True when an OID string from a parsed structure names `dotted`. */
export function oidIs(parsed: string, dotted: string): boolean {
  return parsed === dotted || parsed === parsedOidSpelling(dotted);
}
