import * as asn1js from 'asn1js';

/**
 * ECDSA signature encodings. PKCS#11 CKM_ECDSA returns raw r||s (64 bytes for P-256); X.509,
 * PKCS#10 and OpenSSL want DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`.
 */
export function rawToDer(raw: Buffer, fieldBytes = 32): Buffer {
  if (raw.length !== 2 * fieldBytes) throw new Error(`raw ECDSA signature must be ${2 * fieldBytes} bytes, got ${raw.length}`);
  const seq = new asn1js.Sequence({
    value: [
      new asn1js.Integer({ valueHex: minimalUnsigned(raw.subarray(0, fieldBytes)) }),
      new asn1js.Integer({ valueHex: minimalUnsigned(raw.subarray(fieldBytes)) }),
    ],
  });
  return Buffer.from(seq.toBER());
}

/** DER ECDSA-Sig-Value to raw r||s, each left-padded to `fieldBytes`. */
export function derToRaw(der: Buffer, fieldBytes = 32): Buffer {
  const parsed = asn1js.fromBER(der);
  const seq = parsed.result;
  if (parsed.offset !== der.length || !(seq instanceof asn1js.Sequence) || seq.valueBlock.value.length !== 2) {
    throw new Error('not a DER ECDSA-Sig-Value');
  }
  const parts = seq.valueBlock.value.map((v) => {
    if (!(v instanceof asn1js.Integer)) throw new Error('not a DER ECDSA-Sig-Value');
    let b = Buffer.from(v.valueBlock.valueHexView);
    while (b.length > fieldBytes && b[0] === 0) b = b.subarray(1);
    if (b.length > fieldBytes) throw new Error('ECDSA integer too long');
    return Buffer.concat([Buffer.alloc(fieldBytes - b.length), b]);
  });
  return Buffer.concat(parts);
}

/**
 * Two's-complement content octets of a non-negative integer: no redundant leading zeros, and
 * one 0x00 in front when the top bit is set (else DER would read it as negative).
 */
export function minimalUnsigned(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const b = magnitude.subarray(i);
  return b[0] & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : Buffer.from(b);
}
