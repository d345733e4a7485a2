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

/** The module's row, every column, locked (FOR UPDATE). */
export async function lockModuleRow(trx: Knex.Transaction, moduleSerial: string): Promise<{ checkpoint: Buffer | null; [column: string]: unknown } | undefined> {
  return trx('modules').where({ module_serial: moduleSerial }).forUpdate().first();
}

export async function insertModuleRow(trx: Knex.Transaction, moduleSerial: string, tokenLabel: string): Promise<void> {
  await trx('modules').insert({ module_serial: moduleSerial, token_label: tokenLabel });
}

/** The module's checkpoint row as a reinstatement leaves it: back in rotation. */
export async function storeReinstatedCheckpoint(trx: Knex.Transaction, moduleSerial: string, r: { checkpoint: Buffer; seq: number; at: Date }): Promise<void> {
  await trx('modules').where({ module_serial: moduleSerial }).update({
    checkpoint: r.checkpoint, checkpoint_seq: r.seq, last_tx_at: r.at, last_tx_type: 'reinstate', last_tx_amount: 0,
    in_rotation: true, out_reason: null, updated_at: r.at,
  });
}

/** The module's row, made when missing (no checkpoint yet). */
export async function ensureModuleRow(db: Knex, moduleSerial: string, tokenLabel: string): Promise<void> {
  await db('modules').insert({ module_serial: moduleSerial, token_label: tokenLabel }).onConflict('module_serial').ignore();
}

/** The module's checkpoint as its row holds it. */
export async function moduleCheckpoint(db: Knex, moduleSerial: string): Promise<{ checkpoint: Buffer | null } | undefined> {
  return db('modules').where({ module_serial: moduleSerial }).first('checkpoint');
}

/** The module back in the rotation (`reason` null) or out of it, with why. */
export async function setModuleInRotation(db: Knex, moduleSerial: string, inRotation: boolean, reason: string | null): Promise<void> {
  await db('modules').where({ module_serial: moduleSerial }).update({ in_rotation: inRotation, out_reason: reason, updated_at: db.fn.now() });
}

/** The module's checkpoint and its sequence number as its row holds them. */
export async function moduleCheckpointAndSeq(db: Knex, moduleSerial: string): Promise<{ checkpoint: Buffer | null; checkpoint_seq: number | string | null } | undefined> {
  return db('modules').where({ module_serial: moduleSerial }).first('checkpoint', 'checkpoint_seq');
}

/** The module's checkpoint row after one of its records. */
export async function storeModuleCheckpoint(trx: Knex.Transaction, moduleSerial: string, r: { checkpoint: Buffer; seq: number; type: string; amount: number; at: Date }): Promise<void> {
  await trx('modules').where({ module_serial: moduleSerial }).update({
    checkpoint: r.checkpoint, checkpoint_seq: r.seq, last_tx_at: r.at, last_tx_type: r.type, last_tx_amount: r.amount, updated_at: r.at,
  });
}
