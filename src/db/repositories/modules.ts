import type { Knex } from 'knex';

/** The modules table: one row per module (token). */

/** The module's identity certificate (DER), if it has a row. */
export async function identityCertificateOf(db: Knex, moduleSerial: string): Promise<{ identity_certificate: Buffer | null } | undefined> {
  return db('modules').where({ module_serial: moduleSerial }).first('identity_certificate');
}

/** The module's identity certificate and the chain above it (DER), if it has a row. */
export async function identityOf(db: Knex, moduleSerial: string): Promise<{ identity_certificate: Buffer | null; identity_chain: Buffer[] | null } | undefined> {
  return db('modules').where({ module_serial: moduleSerial }).first('identity_certificate', 'identity_chain');
}

export async function storeIdentityCertificate(db: Knex, moduleSerial: string, certificateDer: Buffer, chain: Buffer[]): Promise<void> {
  await db('modules').where({ module_serial: moduleSerial }).update({ identity_certificate: certificateDer, identity_chain: chain });
}
