import {
  AuthorizeRequest,
  AuthorizeResponse,
  Checkout,
  PaymentLinkError,
  PaymentMethod,
  PaymentProvider,
  PaymentStatus,
  PollResponse,
} from './payment-provider';

/** The documented magic tokens of SandboxPaymentProvider. */
export const SANDBOX_TOKENS = ['tok_approve', 'tok_decline', 'tok_invalid', 'tok_pending', 'tok_bounce', 'tok_linkfail_1', 'tok_linkfail_3', 'tok_lost_response', 'tok_capture_linkfail'] as const;

/** What the sandbox remembers about one payment (for assertions). */
export interface SandboxPayment {
  paymentId: string;
  providerRef: string;
  amount: number;
  method: PaymentMethod;
  status: PaymentStatus;
  reason?: string;
  /** authorize() calls for this paymentId, failed ones included. */
  authorizeCalls: number;
  polls: number;
  /** Cancelled by void(): the mailer is not charged. */
  voided?: boolean;
  /** Captured after its download: the mailer is charged. */
  captured?: boolean;
  captureCalls: number;
  /** Paid back to the method by refund(), mills in all. */
  refunded: number;
}

interface Plan {
  linkFailures: number;
  /** capture() calls that throw PaymentLinkError before one succeeds. */
  captureLinkFailures?: number;
  loseFirstAnswer: boolean;
  initial: { status: PaymentStatus; reason?: string };
  /** For pending payments: what the clearing poll turns them into. */
  settlesTo?: { status: PaymentStatus; reason?: string };
}

function plan(method: PaymentMethod): Plan {
  const base = { linkFailures: 0, loseFirstAnswer: false };
  const approved: Plan['initial'] = method.kind === 'check' ? { status: 'pending' } : { status: 'approved' };
  const settlesTo = { status: 'approved' as const };
  const link = /^tok_linkfail_([1-9])$/.exec(method.token);
  if (link) return { ...base, linkFailures: Number(link[1]), initial: approved, settlesTo };
  switch (method.token) {
    case 'tok_approve':
      return { ...base, initial: approved, settlesTo };
    case 'tok_decline':
      return { ...base, initial: { status: 'declined', reason: 'credit_denied' } };
    case 'tok_invalid':
      return { ...base, initial: { status: 'declined', reason: 'card_invalid' } };
    case 'tok_pending':
      return { ...base, initial: { status: 'pending' }, settlesTo };
    case 'tok_bounce':
      return { ...base, initial: { status: 'pending' }, settlesTo: { status: 'declined', reason: 'check_returned' } };
    case 'tok_lost_response':
      return { ...base, loseFirstAnswer: true, initial: approved, settlesTo };
    case 'tok_capture_linkfail':
      return { ...base, captureLinkFailures: 1, initial: approved, settlesTo };
    default:
      return { ...base, initial: { status: 'declined', reason: 'unknown_token' } };
  }
}

/**
 * The sandbox processor for development, tests and demos: no network, deterministic, the
 * outcome chosen by the method token. The magic tokens:
 *
 * | token              | outcome |
 * | ---                | --- |
 * | `tok_approve`      | approved (card, ACH); a **check** is pending and clears on poll: checks never clear at once |
 * | `tok_decline`      | declined, reason `credit_denied` (WO 99/41690 "Credit Denied") |
 * | `tok_invalid`      | declined, reason `card_invalid` (WO 99/41690 "Incorrect Credit Card Information") |
 * | `tok_pending`      | pending; approved on the `clearAfterPolls`-th poll (default 2) or at once after `clear(ref)` |
 * | `tok_bounce`       | pending; declined (`check_returned`) on the `clearAfterPolls`-th poll |
 * | `tok_linkfail_N`   | N = 1..9: the first N authorize calls for the payment throw PaymentLinkError, later ones approve (`tok_linkfail_1`, `tok_linkfail_3`) |
 * | `tok_lost_response`| approved and recorded, but the first answer is lost (PaymentLinkError); a retry returns the same authorization: one charge |
 * | `tok_capture_linkfail` | approved; the first capture() call throws PaymentLinkError, a later one captures |
 * | anything else      | declined, reason `unknown_token` |
 *
 * As the PaymentProvider contract requires, authorize() is idempotent per paymentId.
 */
export class SandboxPaymentProvider implements PaymentProvider {
  readonly name = 'sandbox';
  readonly unitMills = 1;
  /** Magic tokens of every kind, typed on the buy page (no processor's script). */
  readonly checkout: Checkout = { methods: ['card', 'ach', 'check'] };
  private readonly byId = new Map<string, SandboxPayment & { plan: Plan }>();
  private readonly byRef = new Map<string, SandboxPayment & { plan: Plan }>();
  private readonly attempts = new Map<string, number>();
  private readonly refunds = new Map<string, { providerRef: string; amount: number; refundRef: string }>();
  private next = 1;

  /** `clearAfterPolls`: the poll on which a pending payment settles (default 2). */
  constructor(private readonly opts: { clearAfterPolls?: number } = {}) {}

  async authorize(req: AuthorizeRequest): Promise<AuthorizeResponse> {
    const calls = (this.attempts.get(req.paymentId) ?? 0) + 1;
    this.attempts.set(req.paymentId, calls);
    const existing = this.byId.get(req.paymentId);
    if (existing) {
      existing.authorizeCalls = calls;
      if (existing.amount !== req.amount || existing.method.token !== req.method.token || existing.method.kind !== req.method.kind) {
        throw new Error(`sandbox: payment ${req.paymentId} was authorized with another amount or method`);
      }
      return this.answer(existing);
    }
    const p = plan(req.method);
    if (calls <= p.linkFailures) throw new PaymentLinkError(`sandbox: link to the processor failed (attempt ${calls} of ${p.linkFailures} planned failures)`);
    const payment = {
      paymentId: req.paymentId,
      providerRef: `sbx_${String(this.next++).padStart(6, '0')}`,
      amount: req.amount,
      method: { ...req.method },
      ...p.initial,
      authorizeCalls: calls,
      polls: 0,
      captureCalls: 0,
      refunded: 0,
      plan: p,
    };
    this.byId.set(req.paymentId, payment);
    this.byRef.set(payment.providerRef, payment);
    if (p.loseFirstAnswer) throw new PaymentLinkError('sandbox: the processor answered but the answer was lost');
    return this.answer(payment);
  }

  async poll(providerRef: string): Promise<PollResponse> {
    const p = this.get(providerRef);
    if (p.status === 'pending' && !p.voided) {
      p.polls += 1;
      if (p.polls >= (this.opts.clearAfterPolls ?? 2)) this.settle(p);
    }
    return p.reason ? { status: p.status, reason: p.reason } : { status: p.status };
  }

  /**
   * The sandbox keeps its authorizations in the service's memory, so a restarted service has
   * forgotten those of the process before: voiding one of them is accepted and changes nothing,
   * as a processor accepts the void of an authorization it already released.
   */
  async void(providerRef: string): Promise<void> {
    const p = this.byRef.get(providerRef);
    if (p) Object.assign(p, { status: 'declined', reason: 'voided', voided: true });
  }

  /** Charges an approved authorization (idempotent); one this process never saw is accepted, as void() is. */
  async capture(providerRef: string, amount: number): Promise<void> {
    const p = this.byRef.get(providerRef);
    if (!p) return;
    p.captureCalls += 1;
    if (p.voided) throw new Error(`sandbox: ${providerRef} was voided and cannot be captured`);
    if (p.status !== 'approved') throw new Error(`sandbox: ${providerRef} is ${p.status}, not approved`);
    if (amount !== p.amount) throw new Error(`sandbox: ${providerRef} was authorized for ${p.amount}, not ${amount}`);
    if (p.captureCalls <= (p.plan.captureLinkFailures ?? 0)) throw new PaymentLinkError('sandbox: link to the processor failed during capture');
    p.captured = true;
  }

  /** Pays back part or all of a captured payment, once per refundKey. */
  async refund(req: { refundKey: string; providerRef: string; amount: number }): Promise<{ refundRef: string }> {
    const done = this.refunds.get(req.refundKey);
    if (done) {
      if (done.providerRef !== req.providerRef || done.amount !== req.amount) throw new Error(`sandbox: refund ${req.refundKey} was made with another payment or amount`);
      return { refundRef: done.refundRef };
    }
    const p = this.get(req.providerRef);
    if (!p.captured) throw new Error(`sandbox: ${req.providerRef} is not captured`);
    if (!Number.isSafeInteger(req.amount) || req.amount <= 0 || p.refunded + req.amount > p.amount) {
      throw new Error(`sandbox: ${req.providerRef} captured ${p.amount}, refunded ${p.refunded}: cannot refund ${req.amount} more`);
    }
    p.refunded += req.amount;
    const refundRef = `sbr_${String(this.refunds.size + 1).padStart(6, '0')}`;
    this.refunds.set(req.refundKey, { providerRef: req.providerRef, amount: req.amount, refundRef });
    return { refundRef };
  }

  /** The lockbox reports the check cleared: a pending payment is approved at the next poll. */
  clear(providerRef: string): void {
    const p = this.get(providerRef);
    if (p.status === 'pending') Object.assign(p, { status: 'approved', reason: undefined });
  }

  /** The check was returned: a pending payment is declined (`check_returned`). */
  bounce(providerRef: string): void {
    const p = this.get(providerRef);
    if (p.status === 'pending') Object.assign(p, { status: 'declined', reason: 'check_returned' });
  }

  /** Everything authorized so far, oldest first (copies). */
  payments(): SandboxPayment[] {
    return [...this.byId.values()].map(({ plan: _plan, ...rest }) => ({ ...rest, method: { ...rest.method } }));
  }

  private settle(p: SandboxPayment & { plan: Plan }): void {
    const to = p.plan.settlesTo ?? { status: 'approved' };
    Object.assign(p, { status: to.status, reason: to.reason });
  }

  private answer(p: SandboxPayment): AuthorizeResponse {
    return p.reason ? { status: p.status, providerRef: p.providerRef, reason: p.reason } : { status: p.status, providerRef: p.providerRef };
  }

  private get(providerRef: string): SandboxPayment & { plan: Plan } {
    const p = this.byRef.get(providerRef);
    if (!p) throw new Error(`sandbox: no payment with reference ${providerRef}`);
    return p;
  }
}
