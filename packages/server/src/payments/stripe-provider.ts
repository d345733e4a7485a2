import {
  AuthorizeRequest,
  AuthorizeResponse,
  Checkout,
  PaymentLinkError,
  PaymentProvider,
  PaymentStatus,
  PollResponse,
} from './payment-provider';

/**
 * Card payments through Stripe's PaymentIntents API (docs/payments.md): authorise with
 * `capture_method=manual`, capture once the download is in the meter, cancel a refused one, pay
 * refunds back with the Refunds API. Stripe charges US cents, so `unitMills` is 10.
 *
 * How the PaymentProvider contract is kept:
 * - authorize() sends `Idempotency-Key: <prefix>-authorize-<paymentId>`: a retry within Stripe's
 *   idempotency window (24 hours) answers the first PaymentIntent, never a second charge.
 * - capture() and void() read the PaymentIntent first and act only from a state that allows it, so
 *   a second call changes nothing.
 * - refund() first looks for a refund of the PaymentIntent carrying the same `vbi_refund_key`
 *   metadata, so it stays idempotent after the idempotency window (the payout pass may ask again
 *   days later).
 * - A timeout, a refused connection, 409 (a concurrent request with the same key), 429 and 5xx are
 *   PaymentLinkError (no answer: retry with the same key); 402 is a decline, and so is a 400 about
 *   the mailer's part (an unknown method token, an amount outside Stripe's limits); any other
 *   answer is a bug or a configuration error, thrown as such. The secret key never appears in a
 *   message.
 *
 * Only cards: `ach` and `check` payments are declined (`method_not_supported`) without a request.
 */
export interface StripeOptions {
  /** `sk_live_…`, `sk_test_…` or a restricted `rk_…` key. */
  secretKey: string;
  /** Default https://api.stripe.com. */
  apiBase?: string;
  /** Per request; default 10 s. */
  timeoutMs?: number;
  /** Starts every idempotency key (default `vbi`); a deployment sharing a Stripe account with another sets its own. */
  keyPrefix?: string;
  /** `pk_live_…` or `pk_test_…`: the web app's buy page takes cards with Stripe.js under it; without one it takes none. */
  publishableKey?: string;
}

/** The API version the adapter is written against (Stripe-Version header). */
export const STRIPE_API_VERSION = '2024-06-20';

/** What the adapter reads of a PaymentIntent. */
interface Intent {
  id: string;
  status: string;
  amount: number;
  amount_received?: number;
  last_payment_error?: { code?: string; decline_code?: string } | null;
}

interface StripeErrorBody {
  error?: { type?: string; code?: string; decline_code?: string; param?: string; message?: string; payment_intent?: Intent };
}

export class StripePaymentProvider implements PaymentProvider {
  readonly name = 'stripe';
  readonly unitMills = 10;
  readonly checkout: Checkout;
  private readonly apiBase: string;
  private readonly timeoutMs: number;
  private readonly keyPrefix: string;

  constructor(private readonly opts: StripeOptions) {
    this.apiBase = (opts.apiBase ?? 'https://api.stripe.com').replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.keyPrefix = opts.keyPrefix ?? 'vbi';
    this.checkout = { methods: ['card'], ...(opts.publishableKey ? { stripePublishableKey: opts.publishableKey } : {}) };
  }

  async authorize(req: AuthorizeRequest): Promise<AuthorizeResponse> {
    if (req.method.kind !== 'card') return { status: 'declined', providerRef: '', reason: 'method_not_supported' };
    if (req.amount % this.unitMills !== 0) return { status: 'declined', providerRef: '', reason: 'amount_not_whole_cents' };
    const r = await this.call('POST', '/v1/payment_intents', {
      amount: String(req.amount / this.unitMills),
      currency: 'usd',
      payment_method: req.method.token,
      'payment_method_types[]': 'card',
      capture_method: 'manual',
      confirm: 'true',
      'metadata[vbi_payment_id]': req.paymentId,
    }, `authorize-${req.paymentId}`);
    if (r.status === 402) {
      // a decline: Stripe names the PaymentIntent it left in requires_payment_method, if it made one
      const e = (r.body as StripeErrorBody).error ?? {};
      return { status: 'declined', providerRef: e.payment_intent?.id ?? '', reason: e.decline_code ?? e.code ?? 'card_declined' };
    }
    if (r.status === 400) {
      // the mailer's part of the request refused (a method token Stripe does not know, an amount
      // below Stripe's minimum): the mailer's answer, not the adapter's failure
      const e = (r.body as StripeErrorBody).error ?? {};
      if (e.param === 'payment_method') return { status: 'declined', providerRef: '', reason: 'invalid_payment_method' };
      if (e.code === 'amount_too_small' || e.code === 'amount_too_large') return { status: 'declined', providerRef: '', reason: e.code };
    }
    const intent = this.ok(r, 'create a PaymentIntent') as Intent;
    const answer = statusOf(intent);
    if (intent.status === 'requires_action' || intent.status === 'requires_confirmation') {
      // 3-D Secure and the like need the cardholder, whom a postage purchase cannot ask: release the hold
      await this.cancel(intent.id).catch(() => undefined);
    }
    return { providerRef: intent.id, ...answer };
  }

  async poll(providerRef: string): Promise<PollResponse> {
    return statusOf(await this.intent(providerRef));
  }

  async void(providerRef: string): Promise<void> {
    if (!providerRef) return; // declined before Stripe made a PaymentIntent: nothing to release
    const intent = await this.intent(providerRef);
    switch (intent.status) {
      case 'canceled':
        return;
      case 'succeeded':
        // already charged (captured before the void was asked): pay all of it back instead
        await this.refundOnce(providerRef, `void-${providerRef}`, null);
        return;
      case 'processing':
        throw new PaymentLinkError(`stripe: ${providerRef} is still processing and cannot be cancelled yet`);
      default:
        await this.cancel(providerRef);
    }
  }

  async capture(providerRef: string, amount: number): Promise<void> {
    const cents = this.cents(amount);
    const intent = await this.intent(providerRef);
    if (intent.status === 'succeeded') {
      if (intent.amount_received !== cents) throw new Error(`stripe: ${providerRef} captured ${intent.amount_received} cents, not ${cents}`);
      return;
    }
    if (intent.status !== 'requires_capture') throw new Error(`stripe: ${providerRef} is ${intent.status} and cannot be captured`);
    const captured = this.ok(await this.call('POST', `/v1/payment_intents/${encodeURIComponent(providerRef)}/capture`,
      { amount_to_capture: String(cents) }, `capture-${providerRef}`), 'capture') as Intent;
    if (captured.status !== 'succeeded') throw new Error(`stripe: the capture of ${providerRef} left it ${captured.status}`);
  }

  async refund(req: { refundKey: string; providerRef: string; amount: number }): Promise<{ refundRef: string }> {
    return { refundRef: await this.refundOnce(req.providerRef, req.refundKey, this.cents(req.amount)) };
  }

  /** A refund of `providerRef` tagged `key` (null amount: all that is left), made at most once. */
  private async refundOnce(providerRef: string, key: string, cents: number | null): Promise<string> {
    const listed = this.ok(await this.call('GET', `/v1/refunds?payment_intent=${encodeURIComponent(providerRef)}&limit=100`), 'list refunds') as {
      data: Array<{ id: string; amount: number; status: string; metadata?: Record<string, string> }>; has_more?: boolean;
    };
    const done = listed.data.find((x) => x.metadata?.vbi_refund_key === key);
    if (done) {
      if (cents !== null && done.amount !== cents) throw new Error(`stripe: refund ${key} of ${providerRef} was made for ${done.amount} cents, not ${cents}`);
      return done.id;
    }
    if (listed.has_more) throw new Error(`stripe: ${providerRef} has more than 100 refunds; refund ${key} cannot be checked for`);
    const body: Record<string, string> = { payment_intent: providerRef, 'metadata[vbi_refund_key]': key };
    if (cents !== null) body.amount = String(cents);
    const made = this.ok(await this.call('POST', '/v1/refunds', body, `refund-${key}`), 'refund') as { id: string; status: string };
    if (made.status === 'failed' || made.status === 'canceled') throw new Error(`stripe: refund ${made.id} of ${providerRef} is ${made.status}`);
    return made.id;
  }

  private async intent(providerRef: string): Promise<Intent> {
    return this.ok(await this.call('GET', `/v1/payment_intents/${encodeURIComponent(providerRef)}`), 'read a PaymentIntent') as Intent;
  }

  private async cancel(providerRef: string): Promise<void> {
    const r = await this.call('POST', `/v1/payment_intents/${encodeURIComponent(providerRef)}/cancel`, {}, `void-${providerRef}`);
    if (r.status === 400 && (await this.intent(providerRef)).status === 'canceled') return; // cancelled in between
    this.ok(r, 'cancel');
  }

  private cents(amount: number): number {
    if (!Number.isSafeInteger(amount) || amount <= 0 || amount % this.unitMills !== 0) throw new Error(`stripe: ${amount} mills is not a whole number of cents`);
    return amount / this.unitMills;
  }

  /** The body of a 2xx answer; anything else thrown (PaymentLinkError where a retry may help). */
  private ok(r: { status: number; body: unknown }, what: string): unknown {
    if (r.status >= 200 && r.status < 300) return r.body;
    const e = (r.body as StripeErrorBody).error ?? {};
    const said = `stripe: ${what}: HTTP ${r.status}${e.code ? ` ${e.code}` : ''}${e.message ? `: ${e.message}` : ''}`;
    if (r.status === 409 || r.status === 429 || r.status >= 500) throw new PaymentLinkError(said);
    if (r.status === 401 || r.status === 403) throw new Error(`${said} (check the configured secret key)`);
    throw new Error(said);
  }

  private async call(method: 'GET' | 'POST', path: string, form?: Record<string, string>, key?: string): Promise<{ status: number; body: unknown }> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.opts.secretKey}`,
      'stripe-version': STRIPE_API_VERSION,
    };
    if (method === 'POST') {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      if (key) headers['idempotency-key'] = `${this.keyPrefix}-${key}`;
    }
    let res: Response;
    let text: string;
    try {
      res = await fetch(this.apiBase + path, {
        method, headers, body: method === 'POST' ? new URLSearchParams(form).toString() : undefined, signal: AbortSignal.timeout(this.timeoutMs),
      });
      text = await res.text();
    } catch (e) {
      // no answer (timeout, refused or reset connection): the request may or may not have been done
      throw new PaymentLinkError(`stripe: ${method} ${path.split('?')[0]}: ${(e as Error).name === 'TimeoutError' ? `no answer in ${this.timeoutMs} ms` : (e as Error).message}`, { cause: e });
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      if (res.status >= 500) return { status: res.status, body: {} };
      throw new PaymentLinkError(`stripe: ${method} ${path.split('?')[0]}: HTTP ${res.status} with a body that is not JSON`);
    }
    return { status: res.status, body: body ?? {} };
  }
}

/** A PaymentIntent's status as the PaymentProvider contract names it. */
function statusOf(intent: Intent): { status: PaymentStatus; reason?: string } {
  switch (intent.status) {
    case 'requires_capture':
    case 'succeeded':
      return { status: 'approved' };
    case 'processing':
      return { status: 'pending' };
    case 'requires_action':
    case 'requires_confirmation':
      return { status: 'declined', reason: 'authentication_required' };
    case 'canceled':
      return { status: 'declined', reason: 'canceled' };
    default: {
      const e = intent.last_payment_error;
      return { status: 'declined', reason: e?.decline_code ?? e?.code ?? intent.status };
    }
  }
}
