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
export async function poolRowAll(db: Knex): Promise<{
  purchased: number; available: number; refunds_paid: number; package: Buffer | null; purchased_unsigned: number | string; [column: string]: unknown;
}> {
  return db('pool').where({ pool_id: 1 }).first();
}

/** The pool row's sealed package (the master PSD's, once it is sealed). */
export async function poolPackage(db: Knex): Promise<{ package: Buffer | null } | undefined> {
  return db('pool').where({ pool_id: 1 }).first('package');
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

/** The amount of the stock purchase entered with the post's `reference`, if any. */
export async function purchaseAmountOf(db: Knex, reference: string): Promise<{ amount: number | string } | undefined> {
  return db('pool_purchases').where({ reference }).first('amount');
}

/** Stock bought from the post entered into a pool row not yet sealed: the purchase, and the pool's bought and available registers raised. */
export async function enterStock(trx: Knex.Transaction, p: { amount: number; reference: string; enteredBy: string }): Promise<void> {
  await trx('pool_purchases').insert({ amount: p.amount, reference: p.reference, entered_by: p.enteredBy });
  await trx.raw('UPDATE pool SET purchased = purchased + ?, available = available + ?, updated_at = now() WHERE pool_id = 1', [p.amount, p.amount]);
}

/** A master PSD purchase record's purchase put back, unless its reference is there. */
export async function putBackPurchase(trx: Knex.Transaction, p: { amount: number; reference: string; enteredBy: unknown; at: Date }): Promise<void> {
  await trx('pool_purchases').insert({ amount: p.amount, reference: p.reference, entered_by: p.enteredBy, created_at: p.at })
    .onConflict('reference').ignore();
}

/** The pool row as the master PSD's package and its register copies. */
export async function storeMasterPsd(trx: Knex.Transaction, row: {
  package: Buffer; record_counter: number; purchased: number; available: number; refunds_paid: number; updated_at: Date;
}): Promise<void> {
  await trx('pool').where({ pool_id: 1 }).update(row);
}

/** What the pool can supply, the row locked (FOR UPDATE). */
export async function lockPoolAvailable(trx: Knex.Transaction): Promise<{ available: number | string }> {
  return trx('pool').where({ pool_id: 1 }).forUpdate().first('available');
}

/** A download from a pool row not yet sealed. */
export async function takeFromPool(trx: Knex.Transaction, amount: number): Promise<void> {
  await trx.raw('UPDATE pool SET available = available - ?, updated_at = now() WHERE pool_id = 1', [amount]);
}

/** A refund into a pool row not yet sealed: a partial refund is paid out, a full one's postage goes back to the pool. */
export async function refundIntoPool(trx: Knex.Transaction, kind: unknown, amount: number): Promise<void> {
  await trx.raw(kind === 'partial' ? 'UPDATE pool SET refunds_paid = refunds_paid + ? WHERE pool_id = 1' : 'UPDATE pool SET available = available + ? WHERE pool_id = 1', [amount]);
}
