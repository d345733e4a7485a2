import type { Knex } from 'knex';

/** The certificates table: indicium key certificates by serial. */
export interface CertificateRow {
  serial_hex: string;
  meter_id: string;
  certificate_der: Buffer;
  not_before: Date;
  not_after: Date;
}

/** The DER of the certificate with this serial, if any. */
export async function certificateDerOf(db: Knex, serialHex: string): Promise<{ certificate_der: Buffer } | undefined> {
  return db('certificates').where({ serial_hex: serialHex }).first('certificate_der');
}

export async function insertCertificate(db: Knex, row: CertificateRow): Promise<void> {
  await db('certificates').insert({
    serial_hex: row.serial_hex, meter_id: row.meter_id, certificate_der: row.certificate_der,
    not_before: row.not_before, not_after: row.not_after,
  });
}

export async function certificateBySerial(db: Knex, serialHex: string): Promise<CertificateRow | undefined> {
  return db('certificates').where({ serial_hex: serialHex }).first();
}

/** The meter's certificates, oldest first. */
export async function certificatesOfMeter(db: Knex, meterId: string): Promise<CertificateRow[]> {
  return db('certificates').where({ meter_id: meterId }).orderBy('not_before');
}
