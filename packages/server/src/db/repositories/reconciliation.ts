import type { Knex } from 'knex';

/**
 * The reconciliation report's reads (packages/server/src/reports/reconciliation.ts) over journal, indicia,
 * payments, refunds, refund_payouts, pool_purchases, pool and meters: one day [from, to).
 */

export interface PrintAgainstIndiciaRow { meter_id: string; module_serial: string; checkpoint_seq: number; amount: number; postage: string | null; n: string | null }

/** The day's print records (indicium, correction) with their indicium rows' postage and count. */
export async function printRecordsWithIndicia(db: Knex, from: Date, to: Date): Promise<PrintAgainstIndiciaRow[]> {
  return db('journal as j').whereIn('j.tx_type', ['indicium', 'correction']).andWhere('j.created_at', '>=', from).andWhere('j.created_at', '<', to)
    .leftJoin(db('indicia').select('module_serial', 'checkpoint_seq').sum({ postage: 'postage' }).count({ n: '*' }).groupBy('module_serial', 'checkpoint_seq').as('i'),
      function join() { this.on('i.module_serial', 'j.module_serial').andOn('i.checkpoint_seq', 'j.checkpoint_seq'); })
    .select('j.meter_id', 'j.module_serial', 'j.checkpoint_seq', 'j.amount', 'i.postage', 'i.n');
}

export interface PvdRecordRow { meter_id: string; module_serial: string; checkpoint_seq: number; amount: number }

/** The day's PVD records. */
export async function pvdRecords(db: Knex, from: Date, to: Date): Promise<PvdRecordRow[]> {
  return db('journal').where({ tx_type: 'pvd' }).andWhere('created_at', '>=', from).andWhere('created_at', '<', to)
    .select('meter_id', 'module_serial', 'checkpoint_seq', 'amount');
}

export interface AppliedPaymentRow { payment_id: number; meter_id: string; amount: number; applied_checkpoint_seq: number; updated_at: Date }

/** Every applied payment with the sequence of the PVD that applied it. */
export async function appliedPayments(db: Knex): Promise<AppliedPaymentRow[]> {
  return db('payments').where({ status: 'applied' }).whereNotNull('applied_checkpoint_seq').select('payment_id', 'meter_id', 'amount', 'applied_checkpoint_seq', 'updated_at');
}

/** Payments applied in [from, to) and not captured yet. */
export async function uncapturedPayments(db: Knex, from: Date, to: Date): Promise<Array<{ payment_id: number; meter_id: string; amount: number }>> {
  return db('payments').where({ status: 'applied' }).whereNull('captured_at').andWhere('updated_at', '>=', from).andWhere('updated_at', '<', to).select('payment_id', 'meter_id', 'amount');
}

/** The meter's PVD record of sequence `seq`, if any. */
export async function pvdRecordOf(db: Knex, meterId: string, seq: number): Promise<{ created_at: Date } | undefined> {
  return db('journal').where({ meter_id: meterId, tx_type: 'pvd', checkpoint_seq: seq }).first('created_at');
}

export interface UnpaidRefundRow { refund_id: number; meter_id: string; amount: number; payout_status: string; paid: string }

/** The day's refunds (amount > 0) not paid, with what their payouts paid through the processor. */
export async function unpaidRefunds(db: Knex, from: Date, to: Date): Promise<UnpaidRefundRow[]> {
  return db('refunds as r').whereNot('r.payout_status', 'paid').andWhere('r.created_at', '>=', from).andWhere('r.created_at', '<', to).andWhere('r.amount', '>', 0)
    .select('r.refund_id', 'r.meter_id', 'r.amount', 'r.payout_status',
      db.raw('(SELECT coalesce(sum(o.amount), 0) FROM refund_payouts o WHERE o.refund_id = r.refund_id AND o.payout_ref IS NOT NULL) AS paid'));
}

/** Per meter (but '' and `exceptMeterId`), downloaded and refunded by its records before `to`. */
export async function meterMovementsBefore(db: Knex, to: Date, exceptMeterId: string): Promise<Array<{ meter_id: string; downloaded: string; refunded: string }>> {
  return db('journal').where('created_at', '<', to).whereNotIn('meter_id', ['', exceptMeterId]).groupBy('meter_id').select('meter_id')
    .sum({ downloaded: db.raw("CASE WHEN tx_type = 'pvd' THEN amount ELSE 0 END") })
    .sum({ refunded: db.raw("CASE WHEN tx_type = 'refund' THEN amount ELSE 0 END") }) as never;
}

export interface NewestRecordRow { meter_id: string; ascending_register: string; descending_register: string; module_serial: string; checkpoint_seq: string }

/** Each meter's (and the master PSD's) newest record before `to`. */
export async function newestRecordsBefore(db: Knex, to: Date): Promise<NewestRecordRow[]> {
  const newest = await db.raw(
    `SELECT DISTINCT ON (meter_id) meter_id, ascending_register, descending_register, module_serial, checkpoint_seq
       FROM journal WHERE created_at < ? AND meter_id <> '' ORDER BY meter_id, created_at DESC, checkpoint_seq DESC`, [to]);
  return newest.rows;
}

const sumOfAmount = async (q: Knex.QueryBuilder): Promise<unknown> => (await q.sum({ s: 'amount' }).first())?.s;

/** The stock bought from the post before `to` (all of it without `to`). */
export async function purchasesSum(db: Knex, to?: Date): Promise<unknown> {
  return sumOfAmount(to ? db('pool_purchases').where('created_at', '<', to) : db('pool_purchases'));
}

/** What PVD records downloaded before `to`. */
export async function downloadsSum(db: Knex, to: Date): Promise<unknown> {
  return sumOfAmount(db('journal').where({ tx_type: 'pvd' }).andWhere('created_at', '<', to));
}

/** What refunds of `kind` refunded before `to`. */
export async function refundsSum(db: Knex, kind: 'partial' | 'full', to: Date): Promise<unknown> {
  return sumOfAmount(db('refunds').where({ kind }).andWhere('created_at', '<', to));
}

/** The postage of the indicia written in [from, to). */
export async function postagePrinted(db: Knex, from: Date, to: Date): Promise<unknown> {
  return (await db('indicia').where('created_at', '>=', from).andWhere('created_at', '<', to).sum({ s: 'postage' }).first())?.s;
}

/** The pool row (pool_id 1), every column. */
export async function poolRow(db: Knex): Promise<Record<string, unknown>> {
  return db('pool').where({ pool_id: 1 }).first();
}

export interface MeterDriftRow { meter_id: string; ascending_register: string; descending_register: string; jar: string; jdr: string }

/** Meter rows whose registers differ from the meter's newest journal record's. */
export async function meterRowDrift(db: Knex): Promise<MeterDriftRow[]> {
  const drift = await db.raw(
    `SELECT m.meter_id, m.ascending_register, m.descending_register, j.ascending_register AS jar, j.descending_register AS jdr
       FROM meters m JOIN LATERAL (SELECT ascending_register, descending_register FROM journal WHERE meter_id = m.meter_id ORDER BY journal_id DESC LIMIT 1) j ON true
      WHERE m.ascending_register <> j.ascending_register OR m.descending_register <> j.descending_register`);
  return drift.rows;
}
