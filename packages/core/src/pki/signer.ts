import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { OID } from './oids';
import { rawToDer } from './ecdsa-signature';

/** The signature algorithms the PKI code produces and accepts: SHA-256 only. */
export type SignatureAlgorithm = 'ecdsa-sha256' | 'rsa-pkcs1-sha256';

/**
 * Signs the to-be-signed bytes of a certificate or request wherever the key lives (a CA or RA
 * token, a wrapped meter key, a module identity key). Returns the signature as X.509 carries it
 * in the BIT STRING: DER ECDSA-Sig-Value for ECDSA, the plain PKCS#1 v1.5 block for RSA.
 */
export interface X509Signer {
  readonly algorithm: SignatureAlgorithm;
  sign(tbs: Buffer): Promise<Buffer>;
}

/** A signer over a function returning raw ECDSA r||s over SHA-256(data) (PKCS#11 CKM_ECDSA). */
export function rawEcdsaSigner(signRaw: (data: Buffer) => Promise<Buffer>): X509Signer {
  return { algorithm: 'ecdsa-sha256', sign: async (tbs) => rawToDer(await signRaw(tbs)) };
}

/** A signer over a function returning an RSA PKCS#1 v1.5 SHA-256 signature (CKM_SHA256_RSA_PKCS). */
export function rsaSigner(sign: (data: Buffer) => Promise<Buffer>): X509Signer {
  return { algorithm: 'rsa-pkcs1-sha256', sign };
}

/**
 * AlgorithmIdentifier of a signature algorithm: ecdsa-with-SHA256 without parameters
 * (RFC 5758 3.2), sha256WithRSAEncryption with NULL parameters (RFC 4055 5).
 */
export function signatureAlgorithmIdentifier(alg: SignatureAlgorithm): pkijs.AlgorithmIdentifier {
  return alg === 'ecdsa-sha256'
    ? new pkijs.AlgorithmIdentifier({ algorithmId: OID.ecdsaWithSha256 })
    : new pkijs.AlgorithmIdentifier({ algorithmId: OID.sha256WithRsa, algorithmParams: new asn1js.Null() });
}

/** The algorithm an AlgorithmIdentifier names, or null for anything but the two above. */
export function signatureAlgorithmOf(id: pkijs.AlgorithmIdentifier): SignatureAlgorithm | null {
  if (id.algorithmId === OID.ecdsaWithSha256 && id.algorithmParams === undefined) return 'ecdsa-sha256';
  if (id.algorithmId === OID.sha256WithRsa) return 'rsa-pkcs1-sha256';
  return null;
}
