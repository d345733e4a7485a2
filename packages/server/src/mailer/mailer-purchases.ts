import { isVbiError, vbiError } from '@vbi/core/errors';
import { assertMills } from '@vbi/core/protocol/amounts';
import { recordRefund } from '../ledger/refund-rows';
import { postageValueDownload } from '../module/commands/postage-value-download';
import { purchase, refundOperation } from '../module/commands/mailer-operations';
import type { IdempotencyContext } from './idempotency-context';
import type { PurchaseBody, RefundBody, SettleBody } from '@vbi/core/protocol/bodies';
import type { OperationalRequest, OperationalResponse } from '@vbi/core/protocol/messages';
import { assertChargeable, chargeWithRetry } from '../payments/charge';
import { payDueRefunds, payRefund } from './refund-payout';
import { MailerCore } from './mailer-core';
import {
  appliedPaymentCapture, insertPendingPayment, lockPaymentStatus, markApplied, markCaptured, paymentOfMeter, paymentOfRequest, recordCharge, setPaymentStatus, uncapturedPaymentIds,
} from '../db/repositories/payments';
import { poolAvailable } from '../db/repositories/pool';

/**
 * Purchases and refunds (docs/protocol.md 3): a payment charged, then downloaded into the meter
 * in one dispatch; pending payments settled; refunds recorded with the dispatch and paid back
 * through the processor.
 */
export class MailerPurchases {
  constructor(private readonly core: MailerCore) {}

  /**
   * Purchase (PVD paid by the mailer): the payment is charged first (three attempts on a link
   * failure); a decline changes nothing; an approved payment becomes a PVD in the same dispatch
   * that answers the request; a check stays pending until `settle` finds it cleared.
   *
   * Behind an Idempotency-Key the payment carries the key, and the answer is kept on it in the
   * download's own transaction: a retry after a crash continues the same payment (charged again
   * under the same payment id, which the processor answers without a second charge), never a new
   * one, and is answered from the payment if the download committed (once its checkpoint is in
   * the ring).
   */
  async purchase(env: OperationalRequest<PurchaseBody>, idem?: IdempotencyContext): Promise<OperationalResponse> {
    const amount = assertChargeable(this.core.opts.payments, env.body.amount);
    const prior = idem ? await paymentOfRequest(this.core.db, env.meterId, idem.key, idem.since) : undefined;
    let paymentId: number;
    let processorKey: string;
    if (prior) {
      paymentId = prior.payment_id;
      processorKey = processorKeyOf(prior);
      if (prior.status === 'applied') {
        if (!prior.answer) throw vbiError('BAD_REQUEST', `payment ${paymentId} is already applied`);
        const answer = prior.answer as OperationalResponse;
        await this.core.ledger.ensureCheckpointed(answer.receipt.moduleSerial, answer.receipt.checkpointSeq);
        await this.capturePayment(paymentId);
        return answer;
      }
      if (prior.status === 'declined') throw vbiError('PAYMENT_DECLINED', `payment ${paymentId} was declined`);
      if (prior.status === 'voided') throw vbiError('BAD_REQUEST', `payment ${paymentId} was voided: its download was refused`);
      if (prior.provider_ref) return this.applyCharged(env, { paymentId, amount: prior.amount, providerRef: prior.provider_ref, status: prior.status as 'approved' | 'pending' }, idem);
    } else {
      // Nobody is charged for a message that would not pass the module's checks, nor for a
      // download the meter or the pool would refuse: the same download rules, run on the package
      // as it is now, and the pool row's copy of the master PSD's DR (the dispatch that follows
      // checks everything again, the pool on the sealed master PSD).
      const pkg = await this.core.preauthenticate(env);
      await postageValueDownload({ amount })(pkg);
      const pool = await poolAvailable(this.core.db);
      if (!pool || pool.available < amount) throw vbiError('POOL_EXHAUSTED', `the pool cannot supply ${amount} mills now`);
      const row = await insertPendingPayment(this.core.db, {
        meterId: env.meterId, amount, provider: this.core.opts.payments.name, methodKind: env.body.payment.kind, idempotencyKey: idem?.key ?? null,
      });
      paymentId = row.payment_id;
      processorKey = processorKeyOf(row);
    }
    let charge;
    try {
      charge = await chargeWithRetry(this.core.opts.payments, { paymentId: processorKey, amount, method: env.body.payment }, { attempts: 3, backoffMs: this.core.opts.paymentBackoffMs ?? 250 });
    } catch (e) {
      await setPaymentStatus(this.core.db, paymentId, 'declined');
      throw e;
    }
    await recordCharge(this.core.db, paymentId, charge.providerRef, charge.status);
    return this.applyCharged(env, { paymentId, amount, providerRef: charge.providerRef, status: charge.status }, idem);
  }

  /**
   * Captures an applied payment at the processor (authorise, download, then capture). Best
   * effort: the download is in the meter either way, and a payment left uncaptured (a link failure,
   * a crash before this) is captured by the next capturePayments() pass. Returns whether it is captured.
   */
  async capturePayment(paymentId: number): Promise<boolean> {
    const p = await appliedPaymentCapture(this.core.db, paymentId);
    if (!p || !p.provider_ref) return false;
    if (p.captured_at) return true;
    try {
      await this.core.opts.payments.capture(p.provider_ref, Number(p.amount));
    } catch (e) {
      this.core.opts.log?.(`payment ${paymentId}: capture failed, left for the next capture pass: ${(e as Error).message}`);
      return false;
    }
    await markCaptured(this.core.db, paymentId);
    return true;
  }

  /** The capture pass: every applied payment not yet captured (oldest first, at most `limit`). */
  async capturePayments(limit = 500): Promise<{ captured: number; failed: number }> {
    const rows = await uncapturedPaymentIds(this.core.db, limit);
    let captured = 0;
    for (const r of rows) if (await this.capturePayment(Number(r.payment_id))) captured++;
    return { captured, failed: rows.length - captured };
  }

  /** The download of a charged payment; a refusal voids the charge. */
  private async applyCharged(env: OperationalRequest, pay: { paymentId: number; amount: number; providerRef: string; status: 'approved' | 'pending' }, idem?: IdempotencyContext): Promise<OperationalResponse> {
    try {
      const answer = await this.applyPayment(env, { paymentId: pay.paymentId, amount: pay.amount, status: pay.status }, idem);
      if (pay.status === 'approved') await this.capturePayment(pay.paymentId);
      return answer;
    } catch (e) {
      // The download was refused (a concurrent request took the challenge or the funds): nothing
      // was stored, so the charge is voided at the processor and the payment recorded as voided.
      if (isVbiError(e) && e.kind === 'user') {
        await this.core.opts.payments.void(pay.providerRef);
        await setPaymentStatus(this.core.db, pay.paymentId, 'voided');
      }
      throw e;
    }
  }

  /**
   * A payment that is not yet in the meter: a pending check is polled, and once approved (or an
   * approved payment whose download failed, e.g. on a concurrent request) its value is downloaded.
   */
  async settle(env: OperationalRequest<SettleBody>): Promise<OperationalResponse> {
    // only the meter's owner learns anything about its payments or makes the provider be asked
    await this.core.authenticate(env);
    const p = await paymentOfMeter(this.core.db, env.body.paymentId, env.meterId);
    if (!p) throw vbiError('BAD_REQUEST', `no payment ${env.body.paymentId} for meter ${env.meterId}`);
    if (p.status === 'applied') throw vbiError('BAD_REQUEST', `payment ${p.payment_id} is already applied`);
    if (p.status === 'declined') throw vbiError('PAYMENT_DECLINED', `payment ${p.payment_id} was declined`);
    if (p.status === 'voided') throw vbiError('BAD_REQUEST', `payment ${p.payment_id} was voided`);
    if (p.status === 'pending' && !p.provider_ref) throw vbiError('BAD_REQUEST', `payment ${p.payment_id} is still being charged`);
    const polled = p.status === 'approved' ? { status: 'approved' as const } : await this.core.opts.payments.poll(p.provider_ref as string);
    if (polled.status === 'declined') {
      await setPaymentStatus(this.core.db, p.payment_id, 'declined');
      throw vbiError('PAYMENT_DECLINED', `payment ${p.payment_id} was declined (returned check)`);
    }
    const answer = await this.applyPayment(env, { paymentId: p.payment_id, amount: p.amount, status: polled.status });
    if (polled.status === 'approved') await this.capturePayment(p.payment_id);
    return answer;
  }

  private async applyPayment(env: OperationalRequest, pay: { paymentId: number; amount: number; status: 'approved' | 'pending' }, idem?: IdempotencyContext): Promise<OperationalResponse> {
    const done = await this.core.operate(env, {
      type: pay.status === 'approved' ? 'pvd' : 'inquiry', details: () => ({ paymentId: pay.paymentId, amount: pay.amount, status: pay.status }),
      operation: () => purchase(pay),
      before: async (trx) => {
        const p = await lockPaymentStatus(trx, pay.paymentId);
        if (p.status === 'applied') throw vbiError('BAD_REQUEST', `payment ${pay.paymentId} is already applied`);
      },
      pool: () => (pay.status === 'approved' ? { kind: 'download', amount: pay.amount, meterId: env.meterId } : null),
      after: async (trx, { record, response }) => {
        if (pay.status !== 'approved') return;
        // the answer is kept with the download, for a retry after a crash (never released before the ring append)
        await markApplied(trx, pay.paymentId, record.seq, idem ? JSON.stringify(response) : null);
      },
    });
    return done.response;
  }


  async refund(env: OperationalRequest<RefundBody>): Promise<OperationalResponse> {
    const { kind, reason } = env.body;
    const amount = kind === 'partial' ? assertMills(env.body.amount) : undefined;
    if (kind === 'full' && env.body.amount !== undefined) throw vbiError('BAD_REQUEST', 'a full refund takes no amount');
    const { response, stored: refundId } = await this.core.operate(env, {
      type: 'refund', details: () => ({ kind, reason }),
      operation: () => refundOperation({ kind, amount, spoilageLimitBps: this.core.opts.spoilageLimitBps }),
      pool: (_kept, r) => ({ kind: kind === 'partial' ? 'payout' : 'return', amount: refunded(r), meterId: env.meterId }),
      after: (trx, { at, record, response: r }) => recordRefund(trx, { meterId: env.meterId, kind, amount: refunded(r), reason, record, at }),
    });
    // paid back through the processor now; if that fails, by the next payout pass
    await payRefund(this.core.db, this.core.opts.payments, refundId).catch((e) => this.core.opts.log?.(`refund ${refundId}: payout failed, left for the next pass: ${(e as Error).message}`));
    return response;
  }

  /** An operator's refund-and-close (Ledger.refundAndClose), then its payout to the mailer. */
  async refundAndClose(req: { meterId: string; operator: string; reason: string }): Promise<Record<string, unknown>> {
    const out = await this.core.ledger.refundAndClose(req);
    const payout = await payRefund(this.core.db, this.core.opts.payments, out.refundId).catch(() => 'failed' as const);
    return { ...out, payout: payout === 'done' ? 'paid' : payout === 'failed' ? 'due' : payout };
  }

  /** The payout pass (packages/server/src/mailer/refund-payout.ts): refunds still due are paid back through the processor. */
  payRefunds(): Promise<{ paid: number; unpaid: number; failed: number }> {
    return payDueRefunds(this.core.db, this.core.opts.payments);
  }
}

/** What a refund's response says it refunded, mills. */
function refunded(response: OperationalResponse): number {
  return response.result.refunded as number;
}

/**
 * The id a payment has at the processor, its idempotency key there: `<payment id>.<random>`
 * (sql/0220), so a payment id issued again after a restore of the database is a new payment at the
 * processor; a payment from before that column has its plain id.
 */
function processorKeyOf(row: { payment_id: number | string; processor_key: string | null }): string {
  return row.processor_key ? `${row.payment_id}.${row.processor_key}` : String(row.payment_id);
}
