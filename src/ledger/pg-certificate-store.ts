import type { Knex } from 'knex';
import { CertificateRecord, CertificateStore } from '../pki/certificate-store';

/** Indicium key certificates by serial, on PostgreSQL (the verifier's lookup, MeterGen's store). */
export class PgCertificateStore implements CertificateStore {
  constructor(private readonly db: Knex) {}

  async put(rec: CertificateRecord, trx: Knex = this.db): Promise<void> {
    const existing = await trx('certificates').where({ serial_hex: rec.serialHex }).first('certificate_der');
    if (existing) {
      if (!(existing.certificate_der as Buffer).equals(rec.certificateDer)) throw new Error(`serial ${rec.serialHex} already names another certificate`);
      return;
    }
    await trx('certificates').insert({
      serial_hex: rec.serialHex, meter_id: rec.meterId, certificate_der: rec.certificateDer,
      not_before: new Date(rec.notBefore), not_after: new Date(rec.notAfter),
    });
  }

  async getBySerial(serialHex: string): Promise<CertificateRecord | undefined> {
    const r = await this.db('certificates').where({ serial_hex: serialHex }).first();
    return r ? toRecord(r) : undefined;
  }

  async listByMeter(meterId: string): Promise<CertificateRecord[]> {
    return (await this.db('certificates').where({ meter_id: meterId }).orderBy('not_before')).map(toRecord);
  }
}

function toRecord(r: { serial_hex: string; meter_id: string; certificate_der: Buffer; not_before: Date; not_after: Date }): CertificateRecord {
  return { serialHex: r.serial_hex, meterId: r.meter_id, certificateDer: r.certificate_der, notBefore: r.not_before.getTime(), notAfter: r.not_after.getTime() };
}
