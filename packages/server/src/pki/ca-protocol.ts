import { vbiError } from '@vbi/core/errors';

/**
 * The certificate request protocol between MeterGen and a postal CA (docs/pki.md):
 *
 *   POST {CA_URL}/v1/certificates     Content-Type: application/json
 *   { "csr": base64(DER PKCS#10), "raKeyId": "vendor-1", "raSignature": base64(DER ECDSA-Sig-Value) }
 *
 *   201 { "certificate": base64(DER X.509), "chain": [base64(DER X.509), ...] }   issuing CA first
 *   4xx/5xx { "code": "CA_REQUEST_REFUSED", "message": "..." }
 *
 * raSignature: the vendor RA key's ECDSA P-256 signature with SHA-256 over the DER CSR bytes.
 */
export interface CertificateRequestMessage {
  csr: Buffer;
  raKeyId: string;
  raSignature: Buffer;
}

/** A CA's answer: the certificate and path-building help. */
export interface CertificateResponseMessage {
  certificate: Buffer;
  /** Certificates that may help build the path (issuing CA first); never trusted as anchors. */
  chain: Buffer[];
}

/** Path of the request endpoint, relative to CA_URL. */
export const CA_REQUEST_PATH = '/v1/certificates';
const B64 = /^[A-Za-z0-9+/]+={0,2}$/;
const RA_KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;
const MAX_B64 = 16_384;

/** The JSON body of a request (base64 fields). */
export function encodeRequest(m: CertificateRequestMessage): Record<string, string> {
  return { csr: m.csr.toString('base64'), raKeyId: m.raKeyId, raSignature: m.raSignature.toString('base64') };
}

/** Validates the JSON shape of a request; BAD_REQUEST names the bad field. */
export function decodeRequest(body: unknown): CertificateRequestMessage {
  const o = (body ?? {}) as Record<string, unknown>;
  const b64 = (field: string): Buffer => {
    const v = o[field];
    if (typeof v !== 'string' || v.length === 0 || v.length > MAX_B64 || !B64.test(v)) {
      throw vbiError('BAD_REQUEST', `${field} must be a non-empty base64 string`);
    }
    return Buffer.from(v, 'base64');
  };
  if (typeof o.raKeyId !== 'string' || !RA_KEY_ID.test(o.raKeyId)) throw vbiError('BAD_REQUEST', 'raKeyId must be 1-64 characters [A-Za-z0-9._-]');
  return { csr: b64('csr'), raKeyId: o.raKeyId, raSignature: b64('raSignature') };
}

/** The JSON body of a 201 answer. */
export function encodeResponse(m: CertificateResponseMessage): Record<string, unknown> {
  return { certificate: m.certificate.toString('base64'), chain: m.chain.map((c) => c.toString('base64')) };
}

/** Validates the JSON shape of a response; CA_UNAVAILABLE when it is not one. */
export function decodeResponse(body: unknown): CertificateResponseMessage {
  const o = (body ?? {}) as Record<string, unknown>;
  const ok = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && B64.test(v);
  if (!ok(o.certificate) || !Array.isArray(o.chain) || !o.chain.every(ok)) {
    throw vbiError('CA_UNAVAILABLE', 'CA answered with a body that is not a certificate response');
  }
  return { certificate: Buffer.from(o.certificate, 'base64'), chain: (o.chain as string[]).map((c) => Buffer.from(c, 'base64')) };
}
