import type { Knex } from 'knex';

/**
 * The non-secret rows a journal record's command wrote beside it (indicia, refunds, payments,
 * certificates, the account a meter was assigned to), as the journal export reads them and a
 * journal replay puts them back; and the id sequences after a replay wrote explicit ids.
 */

/** A row as the database returns it (export) or takes it (replay), every column. */
export type RecordRow = Record<string, unknown>;

/** The journal record a row names. */
export interface RecordKey { module_serial: string; checkpoint_seq: number | string }

/** The indicia the record wrote, by id. */
export async function indiciaOfRecord(db: Knex, key: RecordKey): Promise<RecordRow[]> {
  return db('indicia').where(key).orderBy('indicium_id');
}

/** The refunds the record wrote, by id. */
export async function refundsOfRecord(db: Knex, key: RecordKey): Promise<RecordRow[]> {
  return db('refunds').where(key).orderBy('refund_id');
}

/** The payments a PVD record applied: its meter, its sequence number and its amount. */
export async function paymentsAppliedBy(db: Knex, r: { meterId: string; seq: number | string; amount: number | string }): Promise<RecordRow[]> {
  return db('payments').where({ meter_id: r.meterId, applied_checkpoint_seq: r.seq, amount: r.amount }).orderBy('payment_id');
}

/** The meter's certificates, by serial. */
export async function certificatesOfMeterBySerial(db: Knex, meterId: string): Promise<RecordRow[]> {
  return db('certificates').where({ meter_id: meterId }).orderBy('serial_hex');
}

/** The account's row (none or one), every column. */
export async function accountRows(db: Knex, accountId: unknown): Promise<RecordRow[]> {
  return db('accounts').where({ account_id: accountId });
}

/** An exported account row put back, unless its id is there. */
export async function putBackAccount(trx: Knex.Transaction, row: RecordRow): Promise<void> {
  await trx('accounts').insert(row).onConflict('account_id').ignore();
}

/** An exported refund row put back, unless its id is there. */
export async function putBackRefund(trx: Knex.Transaction, row: RecordRow): Promise<void> {
  await trx('refunds').insert(row).onConflict('refund_id').ignore();
}

/** An exported payment row put back; a payment with its id already there takes its status, applying record and time. */
export async function putBackPayment(trx: Knex.Transaction, row: RecordRow): Promise<void> {
  await trx('payments').insert(row).onConflict('payment_id').merge(['status', 'applied_checkpoint_seq', 'updated_at']);
}

/** An exported certificate row put back, unless its serial is there. */
export async function putBackCertificate(trx: Knex.Transaction, row: RecordRow): Promise<void> {
  await trx('certificates').insert(row).onConflict('serial_hex').ignore();
}

/** An exported indicium row put back, unless its id is there. */
export async function putBackIndicium(trx: Knex.Transaction, row: RecordRow): Promise<void> {
  await trx('indicia').insert(row).onConflict('indicium_id').ignore();
}

/** After rows were written with explicit ids: each table's id sequence goes on after its highest id. */
export async function continueIdSequences(trx: Knex.Transaction): Promise<void> {
  for (const [table, id] of [['indicia', 'indicium_id'], ['refunds', 'refund_id'], ['payments', 'payment_id'], ['accounts', 'account_id']]) {
    await trx.raw(`SELECT setval(pg_get_serial_sequence(?, ?), GREATEST((SELECT max(${id}) FROM ${table}), 1))`, [table, id]);
  }
}
