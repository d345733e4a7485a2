import { randomUUID } from 'node:crypto';
import { vbiError } from '@vbi/core/errors';
import type { IndiciumKeyAlgorithm } from '@vbi/core/indicium/key-algorithm';
import { openPackage } from '../module/package-seal';
import { createUncertifiedMeter } from '../module/commands/metergen-create';
import { certifyMeterKey } from '../module/commands/metergen-certify';
import { renewMeterKey } from '../module/commands/key-renewal';
import { signRequestWithKey, signRequestWithPackageKey } from '../module/commands/certification-request';
import { certificateRecord } from '../pki/certificate-store';
import {
  CertifyMeterRequest, CreateMeterRequest, CreatedMeter, KeyRenewalStore, MeterGenStore, PendingRenewal,
} from '../pki/meter-store';
import { Ledger } from './ledger';
import { PgCertificateStore } from './pg-certificate-store';
import { deleteKeyRenewal, deleteMeterKeyRenewal, insertKeyRenewal, keyRenewalOf } from '../db/repositories/key-renewals';
import { deleteUncertifiedMeter, meterPackage, meterRow } from '../db/repositories/meters';

/**
 * MeterGen's storage ports on the transaction engine: every package change is one module
 * dispatch in one PostgreSQL transaction, and a certificate becomes findable by serial in the
 * same transaction that stores it in the package.
 */
export class PgMeterStore implements MeterGenStore, KeyRenewalStore {
  readonly certificates: PgCertificateStore;

  constructor(private readonly ledger: Ledger) {
    this.certificates = new PgCertificateStore(ledger.db);
  }

  async createUncertifiedMeter(req: CreateMeterRequest): Promise<CreatedMeter> {
    const out = await this.ledger.run({
      meterId: req.meterId, creates: true, type: 'meter-create',
      execute: createUncertifiedMeter(req),
      details: () => ({ algorithm: req.algorithm, maxDescendingRegister: req.maxDescendingRegister, licensingZip: req.licensingZip ?? '' }),
    });
    return { meterId: req.meterId, publicKeySpki: out.result.publicKeySpki, algorithm: out.result.algorithm };
  }

  async signCertificationRequest(req: { meterId: string; requestInfo: Buffer }): Promise<Buffer> {
    const row = await this.meterRow(req.meterId);
    return signRequestWithPackageKey(this.ledger.anyModule(), { meterId: req.meterId, sealedPackage: row.package, requestInfo: req.requestInfo });
  }

  async certifyMeter(req: CertifyMeterRequest): Promise<void> {
    await this.ledger.run({
      meterId: req.meterId, type: 'meter-certify', execute: certifyMeterKey(req),
      details: () => ({ serialHex: req.serialHex, notAfter: req.notAfter }),
      after: (trx) => this.certificates.put(certificateRecord(req.meterId, req.certificateDer), trx),
    });
  }

  async discardMeter(meterId: string): Promise<void> {
    const row = await meterRow(this.ledger.db, meterId);
    if (!row) return;
    const pkg = await openPackage(this.ledger.anyModule(), row.package, meterId);
    if (pkg.indiciumCertSerial !== '' || pkg.state !== 'unassigned') throw vbiError('METER_ALREADY_CERTIFIED', `meter ${meterId} is certified; it cannot be discarded`);
    // The journal keeps the meter-create record; the meter itself never held value.
    await deleteUncertifiedMeter(this.ledger.db, meterId);
  }

  async beginKeyRenewal(req: { meterId: string; algorithm: IndiciumKeyAlgorithm }): Promise<PendingRenewal> {
    await this.meterRow(req.meterId);
    const key = await this.ledger.anyModule().generateIndiciumKey({ algorithm: req.algorithm });
    const renewalId = randomUUID();
    await insertKeyRenewal(this.ledger.db, { renewalId, meterId: req.meterId, algorithm: req.algorithm, wrappedKey: key.wrappedKey });
    return { meterId: req.meterId, renewalId, publicKeySpki: key.publicKeySpki, algorithm: req.algorithm };
  }

  async signRenewalRequest(req: { meterId: string; renewalId: string; requestInfo: Buffer }): Promise<Buffer> {
    const r = await this.renewal(req.meterId, req.renewalId);
    return signRequestWithKey(this.ledger.anyModule(), { meterId: req.meterId, wrappedKey: r.wrapped_key, algorithm: r.algorithm, requestInfo: req.requestInfo });
  }

  async commitKeyRenewal(req: CertifyMeterRequest & { renewalId: string }): Promise<{ previousSerialHex: string }> {
    const r = await this.renewal(req.meterId, req.renewalId);
    const out = await this.ledger.run({
      meterId: req.meterId, type: 'key-renewal',
      execute: renewMeterKey({ ...req, newWrappedKey: r.wrapped_key, algorithm: r.algorithm }),
      details: (o) => ({ previousSerialHex: o.result.previousSerialHex, serialHex: req.serialHex, notAfter: req.notAfter }),
      after: async (trx) => {
        await this.certificates.put(certificateRecord(req.meterId, req.certificateDer), trx);
        await deleteKeyRenewal(trx, req.renewalId);
      },
    });
    return { previousSerialHex: out.result.previousSerialHex };
  }

  async abandonKeyRenewal(req: { meterId: string; renewalId: string }): Promise<void> {
    await deleteMeterKeyRenewal(this.ledger.db, req.renewalId, req.meterId);
  }

  private async meterRow(meterId: string): Promise<{ package: Buffer }> {
    const row = await meterPackage(this.ledger.db, meterId);
    if (!row) throw vbiError('UNKNOWN_METER', `no meter ${meterId}`);
    return row;
  }

  private async renewal(meterId: string, renewalId: string): Promise<{ wrapped_key: Buffer; algorithm: IndiciumKeyAlgorithm }> {
    const r = await keyRenewalOf(this.ledger.db, renewalId, meterId);
    if (!r) throw vbiError('RENEWAL_NOT_FOUND', `no pending renewal ${renewalId} for meter ${meterId}`);
    return { wrapped_key: r.wrapped_key, algorithm: r.algorithm as IndiciumKeyAlgorithm };
  }
}
