import type { Knex } from 'knex';
import { PaymentProvider } from '../payments/payment-provider';
import {
  capturedPaymentsForRefund, dueRefundIds, insertPayoutPart, lockRefund, notePayoutRef, payoutParts, settleRefundPayout, type RefundPayoutPart,
} from '../db/repositories/refunds';

/**
 * Refunds paid back to the mailer through the processor (docs/api-conventions.md, Payments).
 * A refund command moves the registers; its row is then `due`. The payout spreads the amount over
 * the meter's captured payments, newest first, never more against a payment than it captured
 * less what earlier refunds took from it, and in whole units of the processor
 * (PaymentProvider.unitMills); the split is stored before the processor is asked (so a retry
 * after a crash asks for exactly the same refunds, each idempotent by its key), then each part is
 * refunded. What the payments cannot cover (postage the vendor downloaded, payments already
 * refunded, less than one unit of the processor) leaves the row `unpaid`, for the operator to pay
 * by hand; the reconciliation lists it.
 */
export async function payRefund(db: Knex, provider: PaymentProvider, refundId: number): Promise<'paid' | 'unpaid' | 'failed' | 'done'> {
  const plan = await db.transaction(async (trx) => {
    const r = await lockRefund(trx, refundId);
    if (!r || r.payout_status !== 'due') return null;
    let parts: RefundPayoutPart[] = await payoutParts(trx, refundId);
    if (parts.length === 0 && Number(r.amount) > 0) {
      // the meter's captured payments, newest first, with what earlier refunds left of each
      const payments = await capturedPaymentsForRefund(trx, r.meter_id);
      let left = Number(r.amount);
      for (const p of payments) {
        // whole units of the processor only (a card is paid back in cents): a remainder below one unit stays unpaid
        const take = Math.floor(Math.min(left, Number(p.amount) - Number(p.refunded)) / provider.unitMills) * provider.unitMills;
        if (take <= 0) continue;
        await insertPayoutPart(trx, refundId, p.payment_id, take);
        parts.push({ payment_id: Number(p.payment_id), amount: take, payout_ref: null, provider_ref: p.provider_ref });
        left -= take;
        if (left === 0) break;
      }
    }
    parts = parts.map((p) => ({ ...p, payment_id: Number(p.payment_id), amount: Number(p.amount) }));
    return { amount: Number(r.amount), parts };
  });
  if (!plan) return 'done';
  for (const part of plan.parts) {
    if (part.payout_ref) continue;
    try {
      const { refundRef } = await provider.refund({ refundKey: `refund-${refundId}-payment-${part.payment_id}`, providerRef: part.provider_ref, amount: part.amount });
      await notePayoutRef(db, refundId, part.payment_id, refundRef);
    } catch {
      return 'failed'; // left due: the next payout pass asks again with the same keys
    }
  }
  const paid = plan.parts.reduce((s, p) => s + p.amount, 0);
  const status = paid === plan.amount ? 'paid' : 'unpaid';
  await settleRefundPayout(db, refundId, status);
  return status;
}

/** The payout pass: every refund still due, oldest first (at most `limit`). */
export async function payDueRefunds(db: Knex, provider: PaymentProvider, limit = 500): Promise<{ paid: number; unpaid: number; failed: number }> {
  const out = { paid: 0, unpaid: 0, failed: 0 };
  for (const r of await dueRefundIds(db, limit)) {
    const s = await payRefund(db, provider, Number(r.refund_id));
    if (s !== 'done') out[s]++;
  }
  return out;
}
