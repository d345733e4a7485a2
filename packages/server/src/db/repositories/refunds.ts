import type { Knex } from 'knex';

/** The refunds table and the refund_payouts that pay a refund back against the meter's payments. */

/** The refund row, locked (FOR UPDATE). */
export async function lockRefund(trx: Knex.Transaction, refundId: number): Promise<{ meter_id: string; amount: number | string; payout_status: string } | undefined> {
  return trx('refunds').where({ refund_id: refundId }).forUpdate().first('meter_id', 'amount', 'payout_status');
}

export interface RefundPayoutPart { payment_id: number; amount: number; payout_ref: string | null; provider_ref: string }

/** The refund's payout parts, with the processor's reference of each payment. */
export async function payoutParts(trx: Knex.Transaction, refundId: number): Promise<RefundPayoutPart[]> {
  return trx('refund_payouts as o')
    .join('payments as p', 'p.payment_id', 'o.payment_id').where('o.refund_id', refundId)
    .select('o.payment_id', 'o.amount', 'o.payout_ref', 'p.provider_ref');
}

/** The meter's captured payments, newest first, locked, with what refunds took from each so far. */
export async function capturedPaymentsForRefund(trx: Knex.Transaction, meterId: string): Promise<Array<{ payment_id: number; amount: number | string; provider_ref: string; refunded: number | string }>> {
  return trx('payments as p').where({ 'p.meter_id': meterId, 'p.status': 'applied' }).whereNotNull('p.captured_at')
    .orderBy('p.payment_id', 'desc').forUpdate()
    .select('p.payment_id', 'p.amount', 'p.provider_ref',
      trx.raw('(SELECT coalesce(sum(o.amount), 0) FROM refund_payouts o WHERE o.payment_id = p.payment_id) AS refunded'));
}

export async function insertPayoutPart(trx: Knex.Transaction, refundId: number, paymentId: number, amount: number): Promise<void> {
  await trx('refund_payouts').insert({ refund_id: refundId, payment_id: paymentId, amount });
}

export async function notePayoutRef(db: Knex, refundId: number, paymentId: number, payoutRef: string): Promise<void> {
  await db('refund_payouts').where({ refund_id: refundId, payment_id: paymentId }).update({ payout_ref: payoutRef });
}

/** A due refund's payout outcome; paid_at set now when paid. */
export async function settleRefundPayout(db: Knex, refundId: number, status: 'paid' | 'unpaid'): Promise<void> {
  await db('refunds').where({ refund_id: refundId, payout_status: 'due' }).update({ payout_status: status, paid_at: status === 'paid' ? db.fn.now() : null });
}

/** The refunds still due, oldest first, at most `limit`. */
export async function dueRefundIds(db: Knex, limit: number): Promise<Array<{ refund_id: number | string }>> {
  return db('refunds').where({ payout_status: 'due' }).orderBy('refund_id').limit(limit).select('refund_id');
}

/** A refund's row, written in the refund command's transaction; its id. */
export async function insertRefund(trx: Knex.Transaction, r: {
  meterId: string; kind: 'partial' | 'full'; amount: number; reason: string; moduleSerial: string; seq: number; at: Date;
}): Promise<number | string> {
  const [row] = await trx('refunds').insert({
    meter_id: r.meterId, kind: r.kind, amount: r.amount, reason: r.reason,
    module_serial: r.moduleSerial, checkpoint_seq: r.seq, created_at: r.at,
  }).returning('refund_id');
  return row.refund_id;
}

/** What the meter's refunds add up to. */
export async function refundedSum(db: Knex, meterId: string): Promise<{ s?: number | string | null } | undefined> {
  return db('refunds').where({ meter_id: meterId }).sum({ s: 'amount' }).first();
}
