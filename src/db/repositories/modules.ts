import type { Knex } from 'knex';

/** The modules table: one row per module (token). */

/** The module's identity certificate (DER), if it has a row. */
export async function identityCertificateOf(db: Knex, moduleSerial: string): Promise<{ identity_certificate: Buffer | null } | undefined> {
  return db('modules').where({ module_serial: moduleSerial }).first('identity_certificate');
}
