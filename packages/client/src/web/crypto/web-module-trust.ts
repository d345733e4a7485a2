import * as pkijs from 'pkijs';
import { vbiError } from '@vbi/core/errors';
import { hasPurpose, readCertInfo } from '@vbi/core/pki/cert-info';
import { OID } from '@vbi/core/pki/oids';
import { fromPem, fromPemAll } from '@vbi/core/pki/pem';
import { MODULE_IDENTITY_OU } from '../../client/module-trust';
import type { KnownModule } from '../../client/client-state';
import { Receipt, receiptSignedBytes, registrationChallengeBytes } from '@vbi/core/protocol/messages';
import { bytes, sha256, sha256Hex, verifyEcdsaP256 } from './web-crypto';
import { batchRoot, receiptBatchSignedBytes, receiptLeafInput } from '@vbi/core/protocol/receipt-batch';

/** A module identity as the register page shows it, after its chain checked out. */
export interface ModuleIdentity {
  serial: string;
  subject: string;
  issuer: string;
  notAfter: string;
  /** SHA-256 of the identity certificate DER, hex. */
  fingerprint: string;
  /** SHA-256 of the trusted root that anchors it, hex. */
  rootFingerprint: string;
  /** The identity public key, SPKI DER. */
  spki: Buffer;
}

/**
 * The SDK's checkModuleCertificate in the browser: the chain (leaf first) must validate to one
 * of the user's roots (signatures by pkijs on WebCrypto), every certificate of the path valid at
 * `at` and every issuer a CA,
 * and the leaf must carry the module identity profile (OU = module-identity, CN = serial,
 * extendedKeyUsage id-vbi-kp-moduleIdentity, not a CA). CERT_INVALID otherwise.
 */
export async function checkModuleCertificateWeb(req: { rootCertPem: string; moduleSerial: string; certificateChain: string[]; at: Date }): Promise<ModuleIdentity> {
  if (!Array.isArray(req.certificateChain) || req.certificateChain.length === 0) throw vbiError('CERT_INVALID', `module ${req.moduleSerial} sent no certificate chain`);
  const ders = req.certificateChain.map((pem) => {
    try {
      return fromPem('CERTIFICATE', pem);
    } catch {
      throw vbiError('CERT_INVALID', `module ${req.moduleSerial}: certificate chain is not PEM`);
    }
  });
  let anchors: Buffer[];
  try {
    anchors = fromPemAll('CERTIFICATE', req.rootCertPem);
  } catch {
    anchors = [];
  }
  if (anchors.length === 0) throw vbiError('CERT_INVALID', 'the root certificate file holds no PEM certificate');
  const toPkijs = (der: Buffer) => pkijs.Certificate.fromBER(bytes(der));
  const engine = new pkijs.CertificateChainValidationEngine({ trustedCerts: anchors.map(toPkijs), certs: ders.map(toPkijs), checkDate: req.at });
  const result = await engine.verify();
  if (!result.result) throw vbiError('CERT_INVALID', `module ${req.moduleSerial}: certificate chain does not validate to the trusted root (${result.resultMessage})`);
  // the path: the chain as sent, then the anchor that issued its last certificate
  const sent = ders.map((d) => readCertInfo(d));
  const anchor = anchors.map((d) => readCertInfo(d)).find((a) => a.subjectDer.equals(sent[sent.length - 1].issuerDer));
  if (!anchor) throw vbiError('CERT_INVALID', `module ${req.moduleSerial}: certificate chain does not end at the trusted root`);
  const path = [...sent, anchor];
  for (const [i, info] of path.entries()) {
    if (i + 1 < path.length && !info.issuerDer.equals(path[i + 1].subjectDer)) {
      throw vbiError('CERT_INVALID', `certificate '${info.subject?.commonName ?? '?'}' is not issued by the next certificate of the chain`);
    }
    // checked here, not left to pkijs's engine, which was seen to accept an expired leaf
    if (req.at < info.notBefore || req.at > info.notAfter) throw vbiError('CERT_INVALID', `certificate '${info.subject?.commonName ?? '?'}' is not valid at ${req.at.toISOString()}`);
    if (i > 0 && !info.isCa) throw vbiError('CERT_INVALID', `certificate '${info.subject?.commonName ?? '?'}' issues the module certificate but is not a CA`);
    // as packages/core/src/pki/path.ts: an extension marked critical that this code does not process is refused
    if (info.unknownCritical.length > 0) throw vbiError('CERT_INVALID', `certificate '${info.subject?.commonName ?? '?'}' has unknown critical extensions ${info.unknownCritical.join(', ')}`);
  }
  const leaf = sent[0];
  const name = `'${leaf.subject?.organizationalUnit ?? '?'}/${leaf.subject?.commonName ?? '?'}'`;
  if (leaf.subject?.organizationalUnit !== MODULE_IDENTITY_OU || leaf.subject.commonName !== req.moduleSerial) {
    throw vbiError('CERT_INVALID', `certificate names ${name}, expected '${MODULE_IDENTITY_OU}/${req.moduleSerial}'`);
  }
  if (leaf.isCa || !hasPurpose(leaf, OID.kpModuleIdentity)) throw vbiError('CERT_INVALID', `certificate ${name} is not a module identity certificate`);
  if (leaf.keyUsage && !leaf.keyUsage.has('digitalSignature')) throw vbiError('CERT_INVALID', `certificate ${name} does not allow digital signatures`);
  const issuerCert = sent.length > 1 ? sent[1] : anchor;
  return {
    serial: req.moduleSerial,
    subject: nameText(leaf.subject),
    issuer: nameText(issuerCert.subject),
    notAfter: leaf.notAfter.toISOString(),
    fingerprint: await sha256Hex(ders[0]),
    rootFingerprint: await sha256Hex(anchor.der),
    spki: leaf.spki,
  };
}

/** Registration step 1b in the browser: the module's identity key signed our nonce and its transport key. */
export async function verifyModuleProofWeb(p: { identity: ModuleIdentity; meterId: string; clientNonce: string; transportKey: string; signature: string }): Promise<void> {
  const signed = registrationChallengeBytes({ meterId: p.meterId, clientNonce: p.clientNonce, transportKeySpki: p.transportKey });
  if (!(await verifyEcdsaP256(p.identity.spki, signed, p.signature))) {
    throw vbiError('CERT_INVALID', `module ${p.identity.serial} did not sign our registration challenge with its identity key`);
  }
}

/** Receipt signatures by module identity keys (the SDK's ReceiptVerifier on WebCrypto). */
export class WebReceiptVerifier {
  private readonly keys = new Map<string, Buffer>();

  constructor(private readonly modules: () => readonly KnownModule[]) {}

  /**
   * True when the module's signature verifies, over the receipt (a single one) or over its batch's
   * root (a print or correction item's, packages/core/src/protocol/receipt-batch.ts); CERT_INVALID for a module
   * this client never verified.
   */
  async verify(receipt: Receipt): Promise<boolean> {
    const key = this.keyOf(receipt.moduleSerial);
    const { signature, batch, ...unsigned } = receipt;
    if (batch === undefined) return verifyEcdsaP256(key, receiptSignedBytes(unsigned), signature);
    const root = await batchRoot(await sha256(receiptLeafInput(unsigned)), batch, sha256);
    return root !== null && verifyEcdsaP256(key, receiptBatchSignedBytes({ root, size: batch.size }), signature);
  }

  /** The SPKI of a verified module's identity key. */
  keyOf(serial: string): Buffer {
    let key = this.keys.get(serial);
    if (!key) {
      const m = this.modules().find((x) => x.serial === serial);
      if (!m) throw vbiError('CERT_INVALID', `signed by module '${serial}', which this client has not verified`);
      key = readCertInfo(fromPem('CERTIFICATE', m.certificateChain[0])).spki;
      this.keys.set(serial, key);
    }
    return key;
  }
}

function nameText(n: { organization?: string; organizationalUnit?: string; commonName?: string } | null): string {
  return [n?.organization, n?.organizationalUnit, n?.commonName].filter((x) => x).join(' / ');
}
