import { createPublicKey, KeyObject } from 'node:crypto';
import * as graphene from 'graphene-pk11';

/** DER SubjectPublicKeyInfo of a P-256 public key object (CKA_EC_POINT is a DER OCTET STRING). */
export function ecPublicKeySpki(key: graphene.PublicKey): Buffer {
  const point = decodeEcPoint(key.getAttribute({ pointEC: null }).pointEC as Buffer);
  if (point.length !== 65 || point[0] !== 0x04) throw new Error('expected an uncompressed P-256 point');
  return spkiFromJwk({ kty: 'EC', crv: 'P-256', x: b64u(point.subarray(1, 33)), y: b64u(point.subarray(33)) });
}

/** DER SubjectPublicKeyInfo of an RSA public key object. */
export function rsaPublicKeySpki(key: graphene.PublicKey): Buffer {
  const a = key.getAttribute({ modulus: null, publicExponent: null });
  return spkiFromJwk({ kty: 'RSA', n: b64u(a.modulus as Buffer), e: b64u(a.publicExponent as Buffer) });
}

/** Some tokens return the raw point, most the DER OCTET STRING around it. */
function decodeEcPoint(v: Buffer): Buffer {
  if (v[0] === 0x04 && v.length === 65) return v;
  if (v[0] === 0x04 && v[1] === 0x41) return v.subarray(2);
  if (v[0] === 0x04 && v[1] === 0x81 && v[2] === 0x41) return v.subarray(3);
  throw new Error('unrecognised CKA_EC_POINT encoding');
}

function b64u(b: Buffer): string {
  return b.toString('base64url');
}

function spkiFromJwk(jwk: Record<string, string>): Buffer {
  return createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' }) as Buffer;
}

export function spkiToKeyObject(spki: Buffer): KeyObject {
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}
