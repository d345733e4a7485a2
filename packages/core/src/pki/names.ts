import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { OID } from './oids';

/**
 * Distinguished names as this project writes them: O (optional), OU (optional), CN, each a
 * single-valued RDN with a UTF8String (RFC 5280 4.1.2.4), in that order.
 */
export interface NameFields {
  commonName: string;
  organizationalUnit?: string;
  organization?: string;
}

/** A name of single-valued RDNs, O, OU, CN in that order, each a UTF8String. */
export function buildName(f: NameFields): pkijs.RelativeDistinguishedNames {
  const rdns: asn1js.Set[] = [];
  const add = (type: string, value: string | undefined) => {
    if (value === undefined) return;
    const atv = new pkijs.AttributeTypeAndValue({ type, value: new asn1js.Utf8String({ value }) });
    rdns.push(new asn1js.Set({ value: [atv.toSchema()] }));
  };
  add(OID.organization, f.organization);
  add(OID.organizationalUnit, f.organizationalUnit);
  add(OID.commonName, f.commonName);
  // pkijs would put every attribute into one multi-valued RDN: encode the sequence here and
  // parse it back, so the object keeps (and re-emits) exactly these bytes.
  return pkijs.RelativeDistinguishedNames.fromBER(new asn1js.Sequence({ value: rdns }).toBER());
}

/**
 * The fields of a name. Strict (what the CA accepts in a request): null when the name has an
 * attribute other than O/OU/CN, a repeated one, or no CN, so nothing is half understood.
 * Lenient (reading a certificate from any CA): other attributes are ignored, but a repeated
 * O/OU/CN or a missing CN still gives null.
 */
export function readName(name: pkijs.RelativeDistinguishedNames, strict = true): NameFields | null {
  const known = [OID.commonName, OID.organizationalUnit, OID.organization] as string[];
  const seen = new Map<string, string>();
  for (const tv of name.typesAndValues) {
    if (!known.includes(tv.type)) {
      if (strict) return null;
      continue;
    }
    if (seen.has(tv.type)) return null;
    const v = tv.value as asn1js.BaseStringBlock;
    const text = v?.valueBlock && 'value' in v.valueBlock ? String(v.valueBlock.value) : undefined;
    if (text === undefined) return null;
    seen.set(tv.type, text);
  }
  const cn = seen.get(OID.commonName);
  if (cn === undefined) return null;
  const out: NameFields = { commonName: cn };
  if (seen.has(OID.organizationalUnit)) out.organizationalUnit = seen.get(OID.organizationalUnit);
  if (seen.has(OID.organization)) out.organization = seen.get(OID.organization);
  return out;
}

/** DER of a name, for byte comparison of issuer and subject (RFC 5280 7.1). */
export function nameDer(name: pkijs.RelativeDistinguishedNames): Buffer {
  return Buffer.from(name.toSchema().toBER());
}
