import { vbiError } from '@vbi/core/errors';
import { assertMills } from '@vbi/core/protocol/amounts';
import { AuthorizeRequest, isPaymentLinkError, PaymentProvider } from './payment-provider';

/**
 * How often and how patiently to try the processor. WO 99/41690: the credit authorization server
 * reports "credit link is down" only after 3 attempts; a declined card is never retried.
 */
export interface RetryPolicy {
  /** Authorize calls in all (default 3). */
  attempts?: number;
  /** Wait before the second attempt; doubled before each later one (default 250 ms). */
  backoffMs?: number;
  /** Injected in tests to record the waits instead of sleeping. */
  sleep?: (ms: number) => Promise<void>;
}

/** A payment the purchase may proceed on: approved now, or pending (a check that clears later). */
export interface ChargeResult {
  status: 'approved' | 'pending';
  providerRef: string;
  /** Authorize calls it took (1 unless the link failed). */
  attempts: number;
}

const PAYMENT_ID = /^[\x21-\x7E]{1,128}$/;
const KINDS = new Set(['card', 'ach', 'check']);

/**
 * `amount` (mills) as the processor can charge it: a valid amount and a whole number of its units
 * (a processor that charges US cents cannot take 12,345 mills), else INVALID_AMOUNT before anything
 * is stored or sent.
 */
export function assertChargeable(provider: Pick<PaymentProvider, 'name' | 'unitMills'>, amount: unknown): number {
  const mills = assertMills(amount);
  if (mills % provider.unitMills !== 0) {
    throw vbiError('INVALID_AMOUNT', `the payment processor (${provider.name}) charges whole units of ${provider.unitMills} mills; ${mills} mills is not one`);
  }
  return mills;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Authorizes a payment, retrying link failures (PaymentLinkError) with exponential backoff up to
 * `attempts` calls, always with the same paymentId so the processor charges at most once.
 * - approved / pending → returned (pending: hold the postage until poll() says approved);
 * - declined → 402 PAYMENT_DECLINED, `details: { reason, providerRef }`, never retried;
 * - link down on every attempt → 502 PAYMENT_LINK_FAILED, `details: { attempts, paymentId }`;
 * - any other exception propagates unchanged (a bug, not a link failure).
 */
export async function chargeWithRetry(provider: PaymentProvider, req: AuthorizeRequest, policy: RetryPolicy = {}): Promise<ChargeResult> {
  const amount = assertChargeable(provider, req.amount);
  if (typeof req.paymentId !== 'string' || !PAYMENT_ID.test(req.paymentId)) throw vbiError('BAD_REQUEST', 'paymentId must be 1 to 128 printable ASCII characters');
  if (!req.method || !KINDS.has(req.method.kind)) throw vbiError('BAD_REQUEST', "payment method kind must be 'card', 'ach' or 'check'");
  if (typeof req.method.token !== 'string' || req.method.token.length === 0) throw vbiError('BAD_REQUEST', 'payment method token is required');
  const attempts = policy.attempts ?? 3;
  if (!Number.isSafeInteger(attempts) || attempts < 1) throw new Error('chargeWithRetry: attempts must be a positive integer');
  const backoffMs = policy.backoffMs ?? 250;
  const sleep = policy.sleep ?? realSleep;

  let lastFailure: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    let res;
    try {
      res = await provider.authorize({ paymentId: req.paymentId, amount, method: { kind: req.method.kind, token: req.method.token } });
    } catch (e) {
      if (!isPaymentLinkError(e)) throw e;
      lastFailure = e;
      if (attempt < attempts) await sleep(backoffMs * 2 ** (attempt - 1));
      continue;
    }
    if (res.status === 'declined') {
      const reason = res.reason ?? 'declined';
      throw vbiError('PAYMENT_DECLINED', `the payment was declined: ${reason}`, { reason, providerRef: res.providerRef });
    }
    return { status: res.status, providerRef: res.providerRef, attempts: attempt };
  }
  throw vbiError(
    'PAYMENT_LINK_FAILED',
    `the payment processor could not be reached after ${attempts} attempts: ${(lastFailure as Error).message}`,
    { attempts, paymentId: req.paymentId },
  );
}
