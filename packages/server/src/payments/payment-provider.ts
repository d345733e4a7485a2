/**
 * The boundary to the payment processor (WO 99/41690: credit card through the credit
 * authorization server, ACH debit, checks through a lockbox that clear later). One narrow
 * interface; the sandbox (./sandbox-provider.ts) and real processors live behind it.
 *
 * Contract every provider keeps:
 * - `paymentId` is the idempotency key at the processor: authorize() called again with the same
 *   paymentId (a retry after a link failure whose answer was lost) must not charge twice; it
 *   answers with the first authorization's providerRef and status.
 * - A declined payment is an answer (`status: 'declined'`), not an exception.
 * - An exception that is a PaymentLinkError means "no answer": the request may or may not have
 *   reached the processor, and retrying with the same paymentId is safe. Any other exception is
 *   a bug and is not retried.
 */

/** How the mailer pays: `token` stands for the card, bank account or check (never the raw numbers). */
export interface PaymentMethod {
  kind: 'card' | 'ach' | 'check';
  token: string;
}

/** Where a payment stands at the processor. */
export type PaymentStatus = 'approved' | 'declined' | 'pending';

/**
 * How a mailer's browser gets a method token for the processor: the kinds it takes and, for
 * Stripe, the publishable key that Stripe.js turns card details into a PaymentMethod id with (the
 * card number never reaches this service).
 */
export interface Checkout {
  methods: Array<PaymentMethod['kind']>;
  stripePublishableKey?: string;
}

/** One authorization: the amount of a purchase, charged to one payment method. */
export interface AuthorizeRequest {
  /** Our id of this payment, never used for another one (the payment's processor key, docs/payments.md); the processor's idempotency key. */
  paymentId: string;
  /** Mills, a positive integer. */
  amount: number;
  method: PaymentMethod;
}

/** The processor's answer to authorize(). */
export interface AuthorizeResponse {
  /** approved: funds secured; pending: a check or debit that clears later (poll); declined: refused. */
  status: PaymentStatus;
  /** The processor's reference, for poll() and reconciliation. */
  providerRef: string;
  /** Why it was declined, e.g. 'credit_denied', 'card_invalid'. */
  reason?: string;
}

/** The processor's answer to poll(). */
export interface PollResponse {
  status: PaymentStatus;
  reason?: string;
}

/** A payment processor (sandbox, card acquirer, ACH originator, lockbox). */
export interface PaymentProvider {
  /** Short name, stored with each payment ('sandbox', 'stripe'). */
  readonly name: string;
  /**
   * The smallest amount it moves, in mills (1 for the sandbox; 10 for a processor that charges
   * and refunds whole US cents). Purchases must be a multiple of it; a refund pays back whole
   * units and leaves the rest to the operator (packages/server/src/mailer/refund-payout.ts).
   */
  readonly unitMills: number;
  /** What a browser needs to take a payment method for it (`GET /v1/payment-methods`; docs/payments.md). */
  readonly checkout: Checkout;
  authorize(req: AuthorizeRequest): Promise<AuthorizeResponse>;
  /** The current status of a pending payment (a check clears or is returned). */
  poll(providerRef: string): Promise<PollResponse>;
  /** Cancels an authorization whose purchase was refused after it (nothing was downloaded). Idempotent. */
  void(providerRef: string): Promise<void>;
  /**
   * Captures an authorization once its download is in the meter (authorise, download, then
   * capture: a refused download is voided and never charged). Idempotent: a second capture of the
   * same reference changes nothing.
   */
  capture(providerRef: string, amount: number): Promise<void>;
  /**
   * Pays `amount` back to the method of a captured payment (`providerRef`), e.g. a refund of
   * unused or spoiled postage. Idempotent per `refundKey`: called again, it answers the first
   * refund. Never more in all than the payment captured.
   */
  refund(req: { refundKey: string; providerRef: string; amount: number }): Promise<{ refundRef: string }>;
}

/** The link to the processor failed (timeout, connection refused, 5xx): no answer, retry is safe. */
export class PaymentLinkError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PaymentLinkError';
  }
}

/** True for the one kind of failure chargeWithRetry retries. */
export function isPaymentLinkError(e: unknown): e is PaymentLinkError {
  return e instanceof PaymentLinkError;
}
