import { randomUUID } from 'node:crypto';
import { vbiError } from '@vbi/core/errors';
import type { OperationalResponse, Receipt } from '@vbi/core/protocol/messages';
import type { Payment } from '@vbi/core/protocol/bodies';
import type { ClientCore } from './client-core';
import { dropPending, sendPending } from './pending-requests';
import type { PurchaseResult } from './wire';

/** A refund request (docs/protocol.md 2). */
export type RefundRequest = { kind: 'partial'; amount: number; reason: string } | { kind: 'full'; reason: string };

/** VbiClient.buy: saved before it is sent (./pending-requests.ts), so recover() can finish it. */
export async function buy(core: ClientCore, req: { amount: number; payment: Payment; idempotencyKey?: string }): Promise<PurchaseResult & { receipt: Receipt }> {
  const r = await core.serial(async () => {
    await core.recoverPending();
    return sendPending<OperationalResponse<PurchaseResult>>(core, 'purchase', '/v1/purchases', { amount: req.amount, payment: req.payment }, req.idempotencyKey ?? randomUUID(), async (p, raw) => {
      const response = await core.accept<PurchaseResult>(raw, 'purchase');
      await dropPending(core, p);
      return response;
    });
  });
  return { ...r.result, receipt: r.receipt };
}

/** VbiClient.settle: a pending (check) purchase downloaded once it cleared. */
export async function settle(core: ClientCore, paymentId: number): Promise<PurchaseResult & { receipt: Receipt }> {
  if (!Number.isSafeInteger(paymentId) || paymentId < 1) throw vbiError('BAD_REQUEST', 'paymentId must be a positive integer', { field: 'paymentId' });
  const r = await core.operate<PurchaseResult>('purchase', `/v1/purchases/${paymentId}/settle`, { paymentId }, {
    // a lost answer: the download committed if the meter's journal shows a PVD for this payment's amount since
    lostAnswer: (rs) => rs.transactions.find((t) => t.type === 'pvd' && t.receipt?.op === 'purchase')?.receipt,
    result: (receipt) => ({ paymentId, status: 'approved', amount: receipt.amount }),
  });
  return { ...r.result, receipt: r.receipt };
}

/** VbiClient.refund: part of the descending register, or all of it. */
export async function refund(core: ClientCore, req: RefundRequest): Promise<{ refunded: number; receipt: Receipt }> {
  const r = await core.operate<{ refunded: number }>('refund', '/v1/refunds', req, {
    lostAnswer: (rs) => rs.transactions.find((t) => t.receipt?.op === 'refund')?.receipt,
    result: (receipt) => ({ refunded: receipt.amount }),
  });
  return { ...r.result, receipt: r.receipt };
}
