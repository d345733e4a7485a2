import { createHash, KeyObject, verify, X509Certificate } from 'node:crypto';
import { vbiError } from '@vbi/core/errors';
import { hasPurpose } from '@vbi/core/pki/cert-info';
import { OID } from '@vbi/core/pki/oids';
import { verifyPath } from '@vbi/core/pki/path';
import { fromPem, fromPemAll } from '@vbi/core/pki/pem';
import { Receipt, receiptSignedBytes, registrationChallengeBytes } from '@vbi/core/protocol/messages';
import { batchRootSync, receiptBatchSignedBytes, receiptLeafInput } from '@vbi/core/protocol/receipt-batch';
import type { KnownModule } from './client-state';

/** The OU of every module identity certificate (docs/pki.md, certifyModuleIdentity). */
export const MODULE_IDENTITY_OU = 'module-identity';

/** What registration step 1b answered, plus what the client sent and trusts. */
export interface ModuleProof {
  rootCertPem: string;
  meterId: string;
  moduleSerial: string;
  /** base64, as sent in 1b. */
  clientNonce: string;
  /** base64 SPKI DER, as answered. */
  transportKey: string;
  /** PEM, identity certificate first. */
  certificateChain: string[];
  /** base64 raw r||s. */
  signature: string;
  at: Date;
}

/**
 * Registration step 1b: the module proves itself. Throws CERT_INVALID unless the identity
 * certificate chains to the client's root, is valid at `at`, names the module (CN = serial,
 * OU = module-identity, extendedKeyUsage id-vbi-kp-moduleIdentity) and its key signed
 * registrationChallengeBytes over our nonce and the announced transport key (ECDSA P-256,
 * SHA-256, raw r||s, checked with dsaEncoding 'ieee-p1363').
 */
export function verifyModuleProof(p: ModuleProof): void {
  const identityKey = checkModuleCertificate({ rootCertPem: p.rootCertPem, moduleSerial: p.moduleSerial, certificateChain: p.certificateChain, at: p.at });
  const signed = registrationChallengeBytes({ meterId: p.meterId, clientNonce: p.clientNonce, transportKeySpki: p.transportKey });
  let ok = false;
  try {
    ok = verify('sha256', signed, { key: identityKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(p.signature, 'base64'));
  } catch {
    ok = false;
  }
  if (!ok) throw vbiError('CERT_INVALID', `module ${p.moduleSerial} did not sign our registration challenge with its identity key`);
}

/**
 * A module identity certificate chain (PEM, leaf first) against the client's root: the
 * profile of docs/pki.md (not a CA, OU = module-identity, CN = module serial,
 * extendedKeyUsage id-vbi-kp-moduleIdentity, digitalSignature) and the path, validated by
 * packages/core/src/pki/path.ts and again by OpenSSL. Returns the identity public key; throws CERT_INVALID.
 */
export function checkModuleCertificate(req: { rootCertPem: string; moduleSerial: string; certificateChain: string[]; at: Date }): KeyObject {
  if (!Array.isArray(req.certificateChain) || req.certificateChain.length === 0) {
    throw vbiError('CERT_INVALID', `module ${req.moduleSerial} sent no certificate chain`);
  }
  const ders = req.certificateChain.map((pem) => {
    try {
      return fromPem('CERTIFICATE', pem);
    } catch {
      throw vbiError('CERT_INVALID', `module ${req.moduleSerial}: certificate chain is not PEM`);
    }
  });
  const anchors = anchorsOf(req.rootCertPem);
  const [leaf] = verifyPath({ leaf: ders[0], intermediates: ders.slice(1), anchors, at: req.at });
  const name = `'${leaf.subject?.organizationalUnit ?? '?'}/${leaf.subject?.commonName ?? '?'}'`;
  if (leaf.subject?.organizationalUnit !== MODULE_IDENTITY_OU || leaf.subject.commonName !== req.moduleSerial) {
    throw vbiError('CERT_INVALID', `certificate names ${name}, expected '${MODULE_IDENTITY_OU}/${req.moduleSerial}'`);
  }
  if (leaf.isCa || !hasPurpose(leaf, OID.kpModuleIdentity)) throw vbiError('CERT_INVALID', `certificate ${name} is not a module identity certificate`);
  if (leaf.keyUsage && !leaf.keyUsage.has('digitalSignature')) throw vbiError('CERT_INVALID', `certificate ${name} does not allow digital signatures`);
  checkPathWithOpenSsl(ders, anchors, req.at);
  return new X509Certificate(ders[0]).publicKey;
}

/** The trust anchors in a PEM text (one root, or a bundle during a CA rollover). */
export function anchorsOf(rootCertPem: string): Buffer[] {
  const all = fromPemAll('CERTIFICATE', rootCertPem);
  if (all.length === 0) throw vbiError('CERT_INVALID', 'the root certificate file holds no PEM certificate');
  return all;
}

/**
 * The same path walked with OpenSSL (X509Certificate.checkIssued + verify): each certificate
 * issued and signed by the next, the last one by an anchor, every one valid at `at`.
 */
function checkPathWithOpenSsl(ders: Buffer[], anchors: Buffer[], at: Date): void {
  const chain = ders.map((d) => new X509Certificate(d));
  const roots = anchors.map((d) => new X509Certificate(d));
  const valid = (c: X509Certificate) => at >= new Date(c.validFrom) && at <= new Date(c.validTo);
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i];
    if (!valid(cert)) throw vbiError('CERT_INVALID', `certificate '${cert.subject.replace(/\n/g, ', ')}' is not valid at ${at.toISOString()}`);
    const root = roots.find((r) => cert.checkIssued(r) && cert.verify(r.publicKey));
    if (root) {
      if (!valid(root)) throw vbiError('CERT_INVALID', `root '${root.subject.replace(/\n/g, ', ')}' is not valid at ${at.toISOString()}`);
      return;
    }
    const next = chain[i + 1];
    if (!next || !cert.checkIssued(next) || !cert.verify(next.publicKey) || !next.ca) {
      throw vbiError('CERT_INVALID', `certificate '${cert.subject.replace(/\n/g, ', ')}' is not issued by the next certificate of the chain or the root`);
    }
  }
  throw vbiError('CERT_INVALID', 'certificate chain does not end at the trusted root');
}

/**
 * Receipt signatures (WO 99/41690): ECDSA P-256 / SHA-256 by the module identity key, raw r||s,
 * over receiptSignedBytes (a single receipt) or over its batch's root (a print or correction
 * item's receipt, packages/core/src/protocol/receipt-batch.ts). Public keys are taken from the certificates
 * verified at registration and cached; so are the last batch roots found signed, so the items of
 * one answer cost one signature check.
 */
export class ReceiptVerifier {
  private readonly keys = new Map<string, KeyObject>();
  private readonly signedRoots = new Set<string>();

  constructor(private readonly modules: readonly KnownModule[]) {}

  /** True when the signature verifies; false for a bad one; CERT_INVALID for a module never verified. */
  verify(receipt: Receipt): boolean {
    const key = this.keyOf(receipt.moduleSerial);
    const { signature, batch, ...unsigned } = receipt;
    if (typeof signature !== 'string') return false;
    try {
      if (batch === undefined) return verify('sha256', receiptSignedBytes(unsigned), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64'));
      const root = batchRootSync(sha256(receiptLeafInput(unsigned)), batch, sha256);
      if (!root) return false;
      // the root, its size, the signer and the signature: all of what was checked
      const seen = `${receipt.moduleSerial}\n${batch.size}\n${root.toString('base64')}\n${signature}`;
      if (this.signedRoots.has(seen)) return true;
      const ok = verify('sha256', receiptBatchSignedBytes({ root, size: batch.size }), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64'));
      if (ok) {
        if (this.signedRoots.size >= SIGNED_ROOTS_KEPT) this.signedRoots.delete(this.signedRoots.values().next().value!);
        this.signedRoots.add(seen);
      }
      return ok;
    } catch {
      return false;
    }
  }

  private keyOf(serial: string): KeyObject {
    let key = this.keys.get(serial);
    if (!key) {
      const m = this.modules.find((x) => x.serial === serial);
      if (!m) throw vbiError('CERT_INVALID', `receipt signed by module '${serial}', which this client has not verified (known: ${this.modules.map((x) => x.serial).join(', ')})`);
      key = new X509Certificate(m.certificateChain[0]).publicKey;
      this.keys.set(serial, key);
    }
    return key;
  }
}

/** Batch roots a ReceiptVerifier remembers as signed (the oldest goes first). */
const SIGNED_ROOTS_KEPT = 64;

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}
