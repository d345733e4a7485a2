import type { Knex } from 'knex';

/** The key_renewals table: a meter's new indicium key (wrapped) while its certificate is requested. */
export interface KeyRenewalRow { renewal_id: string; meter_id: string; algorithm: string; wrapped_key: Buffer; [column: string]: unknown }

export async function insertKeyRenewal(db: Knex, row: { renewalId: string; meterId: string; algorithm: string; wrappedKey: Buffer }): Promise<void> {
  await db('key_renewals').insert({ renewal_id: row.renewalId, meter_id: row.meterId, algorithm: row.algorithm, wrapped_key: row.wrappedKey });
}

export async function deleteKeyRenewal(db: Knex, renewalId: string): Promise<void> {
  await db('key_renewals').where({ renewal_id: renewalId }).del();
}

export async function deleteMeterKeyRenewal(db: Knex, renewalId: string, meterId: string): Promise<void> {
  await db('key_renewals').where({ renewal_id: renewalId, meter_id: meterId }).del();
}

/** The meter's pending renewal, every column. */
export async function keyRenewalOf(db: Knex, renewalId: string, meterId: string): Promise<KeyRenewalRow | undefined> {
  return db('key_renewals').where({ renewal_id: renewalId, meter_id: meterId }).first();
}
