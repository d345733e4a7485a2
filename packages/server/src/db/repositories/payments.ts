import type { Knex } from 'knex';

/** The payments table: a mailer's purchases, charged at the processor and downloaded into the meter. */
export type PaymentStatus = 'pending' | 'approved' | 'declined' | 'applied' | 'voided';

export interface PaymentRow {
  payment_id: number;
  meter_id: string;
  amount: number;
  provider: string;
  provider_ref: string | null;
  status: PaymentStatus;
  created_at: Date;
  updated_at: Date;
  method_kind: string | null;
  applied_checkpoint_seq: number | null;
  idempotency_key: string | null;
  answer: unknown;
  captured_at: Date | null;
  processor_key: string | null;
}

/** The newest payment of the meter's request with this Idempotency-Key, created at or after `since`. */
export async function paymentOfRequest(db: Knex, meterId: string, idempotencyKey: string, since: Date): Promise<PaymentRow | undefined> {
  return db('payments').where({ meter_id: meterId, idempotency_key: idempotencyKey }).where('created_at', '>=', since).orderBy('payment_id', 'desc').first();
}

/** A new pending payment; its id and processor key. */
export async function insertPendingPayment(db: Knex, row: { meterId: string; amount: number; provider: string; methodKind: string; idempotencyKey: string | null }): Promise<{ payment_id: number; processor_key: string | null }> {
  const [inserted] = await db('payments').insert({
    meter_id: row.meterId, amount: row.amount, provider: row.provider, status: 'pending', method_kind: row.methodKind, idempotency_key: row.idempotencyKey,
  }).returning(['payment_id', 'processor_key']);
  return inserted;
}

/** The payment's status (and updated_at now). */
export async function setPaymentStatus(db: Knex, paymentId: number, status: 'declined' | 'voided'): Promise<void> {
  await db('payments').where({ payment_id: paymentId }).update({ status, updated_at: db.fn.now() });
}

/** The processor's answer to the charge. */
export async function recordCharge(db: Knex, paymentId: number, providerRef: string, status: 'approved' | 'pending'): Promise<void> {
  await db('payments').where({ payment_id: paymentId }).update({ provider_ref: providerRef, status, updated_at: db.fn.now() });
}

/** An applied payment's reference at the processor, amount and capture time. */
export async function appliedPaymentCapture(db: Knex, paymentId: number): Promise<{ provider_ref: string | null; amount: number; captured_at: Date | null } | undefined> {
  return db('payments').where({ payment_id: paymentId, status: 'applied' }).first('provider_ref', 'amount', 'captured_at');
}

export async function markCaptured(db: Knex, paymentId: number): Promise<void> {
  await db('payments').where({ payment_id: paymentId }).whereNull('captured_at').update({ captured_at: db.fn.now() });
}

/** Applied payments not captured yet, oldest first, at most `limit`. */
export async function uncapturedPaymentIds(db: Knex, limit: number): Promise<Array<{ payment_id: number | string }>> {
  return db('payments').where({ status: 'applied' }).whereNull('captured_at').whereNotNull('provider_ref').orderBy('payment_id').limit(limit).select('payment_id');
}

/** The meter's payment, every column. */
export async function paymentOfMeter(db: Knex, paymentId: number, meterId: string): Promise<PaymentRow | undefined> {
  return db('payments').where({ payment_id: paymentId, meter_id: meterId }).first();
}

/** The payment's status, the row locked (FOR UPDATE). */
export async function lockPaymentStatus(trx: Knex.Transaction, paymentId: number): Promise<{ status: PaymentStatus }> {
  return trx('payments').where({ payment_id: paymentId }).forUpdate().first('status');
}

/** The payment applied by the download of record `seq`, with the answer kept for a retry (or null). */
export async function markApplied(trx: Knex.Transaction, paymentId: number, seq: number, answer: string | null): Promise<void> {
  await trx('payments').where({ payment_id: paymentId }).update({
    status: 'applied', applied_checkpoint_seq: seq, answer, updated_at: trx.fn.now(),
  });
}
