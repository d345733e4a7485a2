import { vbiError } from '@vbi/core/errors';
import type { IndiciumKeyAlgorithm } from '@vbi/core/indicium/key-algorithm';
import { CaClient } from './ca-client';
import { buildCsr } from './csr';
import { verifyIssuedCertificate } from './issued-certificate';
import { KeyRenewalStore, MeterGenStore } from './meter-store';
import { SignatureAlgorithm, X509Signer } from '@vbi/core/pki/signer';
import { TrustStore } from './trust-store';
import { RequestCountersigner } from './vendor-ra';

/** MeterGen's dependencies, injected (composition root: createMeterGen). */
export interface MeterGenOptions {
  store: MeterGenStore & KeyRenewalStore;
  /** The postal CA (HttpCaClient at CA_URL in production). */
  ca: CaClient;
  /** The vendor RA that countersigns every request. */
  ra: RequestCountersigner;
  /** The requester's own trust anchors (the postal root from certs/). */
  trust: TrustStore;
  /** Optional O of the request subject (the vendor's name). */
  organization?: string;
  /** Upper bound of an indicium key's life, ms; the certificate's notAfter bounds it too. */
  keyLifetimeMs?: number;
  clock?: () => number;
}

/** One meter to create. */
export interface NewMeterRequest {
  meterId: string;
  /** Default EC P-256. */
  algorithm?: IndiciumKeyAlgorithm;
  maxDescendingRegister: number;
  licensingZip?: string;
}

/** A certified indicium key, as stored in the package. */
export interface CertifiedKey {
  meterId: string;
  algorithm: IndiciumKeyAlgorithm;
  serialHex: string;
  certificateDer: Buffer;
  /** The path the certificate was verified with, issuing CA first (trust anchor excluded). */
  chain: Buffer[];
  /** The PKCS#10 request sent (for the MeterGen log). */
  requestDer: Buffer;
  /** Expiry of the key as stored in the package, ms since epoch. */
  keyExpiry: number;
}

/**
 * MeterGen (WO 01/29778): creates meters whose indicium keys are certified by the postal CA.
 *  1. the module generates the key pair and seals an unassigned package (store);
 *  2. a PKCS#10 request with CN = meter ID is signed by the new key (proof of possession);
 *  3. the vendor RA countersigns it;
 *  4. the CA's answer is verified against the trust anchor (signature, validity, subject, key),
 *     and the module stores serial and expiry in the package.
 * A failure at any step discards the meter; even if the discard fails, the package is unusable
 * (state 'unassigned', no serial) until it is certified.
 */
export class MeterGen {
  private readonly clock: () => number;

  constructor(private readonly opts: MeterGenOptions) {
    this.clock = opts.clock ?? Date.now;
  }

  async createMeter(req: NewMeterRequest): Promise<CertifiedKey> {
    const { store } = this.opts;
    const created = await store.createUncertifiedMeter({ ...req, algorithm: req.algorithm ?? 'ec-p256' });
    try {
      const issued = await this.certify({
        meterId: req.meterId, algorithm: created.algorithm, spki: created.publicKeySpki,
        sign: (requestInfo) => store.signCertificationRequest({ meterId: req.meterId, requestInfo }),
      });
      await store.certifyMeter({ meterId: req.meterId, certificateDer: issued.certificateDer, serialHex: issued.serialHex, notAfter: issued.keyExpiry });
      return issued;
    } catch (e) {
      await store.discardMeter(req.meterId).catch(() => undefined);
      throw e;
    }
  }

  /** MeterGen for several meters, one after the other; stops at the first failure. */
  async createMeters(reqs: NewMeterRequest[]): Promise<CertifiedKey[]> {
    const out: CertifiedKey[] = [];
    for (const r of reqs) out.push(await this.createMeter(r));
    return out;
  }

  /**
   * Renews a meter's indicium key: new key pair in the module, certified like a new meter, then
   * swapped into the package atomically. The old certificate stays in the certificate store.
   */
  async renewKey(req: { meterId: string; algorithm?: IndiciumKeyAlgorithm }): Promise<CertifiedKey & { previousSerialHex: string }> {
    const { store } = this.opts;
    const pending = await store.beginKeyRenewal({ meterId: req.meterId, algorithm: req.algorithm ?? 'ec-p256' });
    try {
      const issued = await this.certify({
        meterId: req.meterId, algorithm: pending.algorithm, spki: pending.publicKeySpki,
        sign: (requestInfo) => store.signRenewalRequest({ meterId: req.meterId, renewalId: pending.renewalId, requestInfo }),
      });
      const r = await store.commitKeyRenewal({
        meterId: req.meterId, renewalId: pending.renewalId, certificateDer: issued.certificateDer, serialHex: issued.serialHex, notAfter: issued.keyExpiry,
      });
      return { ...issued, previousSerialHex: r.previousSerialHex };
    } catch (e) {
      await store.abandonKeyRenewal({ meterId: req.meterId, renewalId: pending.renewalId }).catch(() => undefined);
      throw e;
    }
  }

  /** True when a key expiring at `keyExpiry` should be renewed now (within `renewBeforeMs` of expiry). */
  renewalDue(keyExpiry: number, renewBeforeMs: number): boolean {
    return keyExpiry !== 0 && keyExpiry - renewBeforeMs <= this.clock();
  }

  /** Steps 2-4 for one key: request, countersignature, CA, verification. */
  private async certify(req: { meterId: string; algorithm: IndiciumKeyAlgorithm; spki: Buffer; sign: (requestInfo: Buffer) => Promise<Buffer> }): Promise<CertifiedKey> {
    const algorithm: SignatureAlgorithm = req.algorithm === 'ec-p256' ? 'ecdsa-sha256' : 'rsa-pkcs1-sha256';
    const signer: X509Signer = { algorithm, sign: req.sign };
    const requestDer = await buildCsr({
      subject: { organization: this.opts.organization, organizationalUnit: 'indicium', commonName: req.meterId },
      publicKeySpki: req.spki,
      signer,
    });
    const raSignature = await this.opts.ra.countersign(requestDer);
    const answer = await this.opts.ca.requestCertificate({ csr: requestDer, raKeyId: this.opts.ra.raKeyId, raSignature });
    const now = this.clock();
    const { leaf, path } = verifyIssuedCertificate({
      certificateDer: answer.certificate, chain: answer.chain, anchors: [this.opts.trust.current()],
      expectedSpki: req.spki, expectedCommonName: req.meterId, at: new Date(now),
    });
    const limit = this.opts.keyLifetimeMs !== undefined ? now + this.opts.keyLifetimeMs : Infinity;
    const keyExpiry = Math.min(leaf.notAfter.getTime(), limit);
    if (keyExpiry <= now) throw vbiError('CERT_INVALID', `certificate ${leaf.serialHex} leaves the key no lifetime`);
    return {
      meterId: req.meterId, algorithm: req.algorithm, serialHex: leaf.serialHex, certificateDer: answer.certificate,
      chain: path.slice(1, -1).map((c) => c.der), requestDer, keyExpiry,
    };
  }
}
