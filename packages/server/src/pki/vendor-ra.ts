import { TokenSigner, SigningKeyRef } from '../hsm/token-signer';
import { rawToDer } from '@vbi/core/pki/ecdsa-signature';
import { verifySignature } from '@vbi/core/pki/verify-signature';

/** Countersigns certificate requests so that the CA can tell they come from the vendor. */
export interface RequestCountersigner {
  /** The id under which the CA registered this RA's public key. */
  readonly raKeyId: string;
  /** DER ECDSA-Sig-Value, SHA-256 over the DER CSR bytes. */
  countersign(csrDer: Buffer): Promise<Buffer>;
}

/**
 * The vendor RA: its key lives in the vendor token (it plays the part of a USPS-issued smartcard), role
 * `vendor-ra`; the token computes the ECDSA signature, this converts r||s to DER.
 */
export class VendorRa implements RequestCountersigner {
  constructor(private readonly signer: TokenSigner, readonly raKeyId: string, private readonly key: SigningKeyRef = { role: 'vendor-ra', generation: 1 }) {}

  async countersign(csrDer: Buffer): Promise<Buffer> {
    return rawToDer(await this.signer.sign({ key: this.key, data: csrDer }));
  }

  publicKeySpki(): Promise<Buffer> {
    return this.signer.publicKeySpki(this.key);
  }
}

/** The CA's check of a countersignature against the RA public key it registered. */
export function countersignatureValid(req: { raSpki: Buffer; csrDer: Buffer; raSignature: Buffer }): boolean {
  return verifySignature({ spki: req.raSpki, algorithm: 'ecdsa-sha256', data: req.csrDer, signature: req.raSignature });
}
