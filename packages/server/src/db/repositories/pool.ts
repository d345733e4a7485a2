import type { Knex } from 'knex';

/** The pool table: the vendor's postage pool registers (one row, pool_id 1), in mills. */
export interface PoolRegistersRow {
  purchased: number | string;
  available: number | string;
  refunds_paid: number | string;
  updated_at: Date;
}

export async function readPoolRegisters(db: Knex): Promise<PoolRegistersRow> {
  return db('pool').where({ pool_id: 1 }).first('purchased', 'available', 'refunds_paid', 'updated_at');
}

/** What the pool can supply now. */
export async function poolAvailable(db: Knex): Promise<{ available: number } | undefined> {
  return db('pool').where({ pool_id: 1 }).first('available');
}

/** The pool row (pool_id 1), every column. */
export async function poolRowAll(db: Knex): Promise<{ purchased: number; available: number; refunds_paid: number; [column: string]: unknown }> {
  return db('pool').where({ pool_id: 1 }).first();
}

/** The stock purchase entered with the post's `reference`, if any. */
export async function purchaseByReference(db: Knex, reference: string): Promise<{ purchase_id: number | string; amount: number | string } | undefined> {
  return db('pool_purchases').where({ reference }).first('purchase_id', 'amount');
}

/** A stock purchase, in the master PSD command's transaction; its id. */
export async function insertPoolPurchase(trx: Knex.Transaction, row: { amount: number; reference: string; enteredBy: string | null }): Promise<number | string> {
  const [inserted] = await trx('pool_purchases').insert({ amount: row.amount, reference: row.reference, entered_by: row.enteredBy }).returning('purchase_id');
  return inserted.purchase_id;
}

/** The pool row (the master PSD `masterId`) with its newest journal record's checkpoint; the row locked (FOR UPDATE OF p). */
export async function lockPoolWithNewestCheckpoint(trx: Knex.Transaction, masterId: string): Promise<{
  package: Buffer | null; purchased: number | string; available: number | string; refunds_paid: number | string; newest_checkpoint: Buffer | null;
} | undefined> {
  return (await trx.raw(
    `SELECT p.package, p.purchased, p.available, p.refunds_paid,
            (SELECT j.checkpoint FROM journal j WHERE j.meter_id = ? ORDER BY j.journal_id DESC LIMIT 1) AS newest_checkpoint
       FROM pool p WHERE p.pool_id = 1 FOR UPDATE OF p`, [masterId])).rows[0];
}
