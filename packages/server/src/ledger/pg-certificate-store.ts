import type { Knex } from 'knex';
import { CertificateRecord, CertificateStore } from '../pki/certificate-store';
import { certificateBySerial, certificateDerOf, certificatesOfMeter, insertCertificate, type CertificateRow } from '../db/repositories/certificates';

/** Indicium key certificates by serial, on PostgreSQL (the verifier's lookup, MeterGen's store). */
export class PgCertificateStore implements CertificateStore {
  constructor(private readonly db: Knex) {}

  async put(rec: CertificateRecord, trx: Knex = this.db): Promise<void> {
    const existing = await certificateDerOf(trx, rec.serialHex);
    if (existing) {
      if (!existing.certificate_der.equals(rec.certificateDer)) throw new Error(`serial ${rec.serialHex} already names another certificate`);
      return;
    }
    await insertCertificate(trx, {
      serial_hex: rec.serialHex, meter_id: rec.meterId, certificate_der: rec.certificateDer,
      not_before: new Date(rec.notBefore), not_after: new Date(rec.notAfter),
    });
  }

  async getBySerial(serialHex: string): Promise<CertificateRecord | undefined> {
    const r = await certificateBySerial(this.db, serialHex);
    return r ? toRecord(r) : undefined;
  }

  async listByMeter(meterId: string): Promise<CertificateRecord[]> {
    return (await certificatesOfMeter(this.db, meterId)).map(toRecord);
  }
}

function toRecord(r: CertificateRow): CertificateRecord {
  return { serialHex: r.serial_hex, meterId: r.meter_id, certificateDer: r.certificate_der, notBefore: r.not_before.getTime(), notAfter: r.not_after.getTime() };
}
