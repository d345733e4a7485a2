import { vbiError } from '@vbi/core/errors';
import { HsmModule } from '../hsm/hsm-module';
import { CaClient } from './ca-client';
import { hasPurpose } from '@vbi/core/pki/cert-info';
import { buildCsr } from './csr';
import { rawToDer } from '@vbi/core/pki/ecdsa-signature';
import { verifyIssuedCertificate } from './issued-certificate';
import { OID } from '@vbi/core/pki/oids';
import { verifyPath } from '@vbi/core/pki/path';
import { rawEcdsaSigner } from '@vbi/core/pki/signer';
import { verifySignature } from '@vbi/core/pki/verify-signature';
import { RequestCountersigner } from './vendor-ra';

/** A module's identity certificate and the path clients need with it. */
export interface ModuleCertificate {
  moduleSerial: string;
  serialHex: string;
  certificateDer: Buffer;
  /** Issuing CA first, trust anchor excluded: what the service hands to clients with the certificate. */
  chain: Buffer[];
  notAfter: number;
}

/**
 * Certifies a module's identity key (CryptoModule.identityPublicKey / identitySign) with the
 * same postal CA and RA as the meters: request CN = token serial, OU = module-identity, signed
 * by the identity key inside the token, countersigned by the RA, verified on return.
 */
export async function certifyModuleIdentity(req: {
  module: HsmModule; ca: CaClient; ra: RequestCountersigner; trustRoot: Buffer; organization?: string; clock?: () => number;
}): Promise<ModuleCertificate> {
  const spki = req.module.identityPublicKey();
  const moduleSerial = req.module.serial;
  const requestDer = await buildCsr({
    subject: { organization: req.organization, organizationalUnit: 'module-identity', commonName: moduleSerial },
    publicKeySpki: spki,
    signer: rawEcdsaSigner((data) => req.module.identitySign(data)),
  });
  const answer = await req.ca.requestCertificate({ csr: requestDer, raKeyId: req.ra.raKeyId, raSignature: await req.ra.countersign(requestDer) });
  const { leaf, path } = verifyIssuedCertificate({
    certificateDer: answer.certificate, chain: answer.chain, anchors: [req.trustRoot],
    expectedSpki: spki, expectedCommonName: moduleSerial, at: new Date((req.clock ?? Date.now)()),
  });
  return {
    moduleSerial, serialHex: leaf.serialHex, certificateDer: leaf.der,
    chain: path.slice(1, -1).map((c) => c.der), notAfter: leaf.notAfter.getTime(),
  };
}

/**
 * A client's check of a module's challenge signature (raw r||s over SHA-256(challenge), as
 * identitySign makes it): the certificate must chain to one of the client's anchors, be a
 * module-identity certificate (extendedKeyUsage id-vbi-kp-moduleIdentity, so no indicium
 * certificate of the same root passes), name `expectedModuleSerial` when given, and its key
 * must verify the signature. Throws CERT_INVALID for a bad certificate; false for a bad signature.
 */
export function verifyModuleSignature(req: {
  challenge: Buffer; signature: Buffer; certificateDer: Buffer; chain: Buffer[]; anchors: Buffer[];
  expectedModuleSerial?: string; at?: Date;
}): boolean {
  const [leaf] = verifyPath({ leaf: req.certificateDer, intermediates: req.chain, anchors: req.anchors, at: req.at ?? new Date() });
  if (leaf.isCa || !hasPurpose(leaf, OID.kpModuleIdentity)) throw vbiError('CERT_INVALID', `certificate ${leaf.serialHex} is not a module identity certificate`);
  if (leaf.keyUsage && !leaf.keyUsage.has('digitalSignature')) throw vbiError('CERT_INVALID', `certificate ${leaf.serialHex} does not allow digital signatures`);
  if (req.expectedModuleSerial !== undefined && leaf.subject?.commonName !== req.expectedModuleSerial) {
    throw vbiError('CERT_INVALID', `certificate names module '${leaf.subject?.commonName ?? '?'}', expected '${req.expectedModuleSerial}'`);
  }
  if (req.signature.length !== 64) return false;
  return verifySignature({ spki: leaf.spki, algorithm: 'ecdsa-sha256', data: req.challenge, signature: rawToDer(req.signature) });
}
