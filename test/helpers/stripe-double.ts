import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A local stand-in for the part of Stripe's API that packages/server/src/payments/stripe-provider.ts uses
 * (PaymentIntents create / retrieve / capture / cancel, Refunds create / list), as Stripe documents
 * it: form-encoded requests, Bearer secret key, Idempotency-Key replay (and its 400 on other
 * parameters), 402 card errors that name the PaymentIntent, and Stripe's test PaymentMethods:
 * `pm_card_visa` (approved), `pm_card_chargeDeclined` (generic_decline),
 * `pm_card_chargeDeclinedInsufficientFunds` (insufficient_funds), `pm_card_authenticationRequired`
 * (requires_action). Faults on demand: HTTP errors, an answer lost after the work was done, a
 * request never answered. Not Stripe: the adapter has not been run against Stripe itself here.
 */
export interface DoubleIntent {
  id: string;
  status: string;
  amount: number;
  amount_received: number;
  currency: string;
  capture_method: string;
  /** The PaymentMethod id the intent was created with. */
  payment_method: string;
  metadata: Record<string, string>;
  last_payment_error: { code: string; decline_code?: string } | null;
}

export interface DoubleRefund {
  id: string;
  payment_intent: string;
  amount: number;
  status: string;
  metadata: Record<string, string>;
}

type Fault = { kind: 'status'; status: number } | { kind: 'lose' } | { kind: 'hang' };

export class StripeDouble {
  readonly intents = new Map<string, DoubleIntent>();
  readonly refunds: DoubleRefund[] = [];
  /** Every request, in order: method, path (without the query) and Idempotency-Key. */
  readonly requests: Array<{ method: string; path: string; key?: string }> = [];
  private readonly keys = new Map<string, { params: string; status: number; body: unknown }>();
  private readonly faults: Fault[] = [];
  private readonly sockets = new Set<Socket>();
  private nextIntent = 1;
  private nextRefund = 1;
  private server!: Server;
  url = '';

  constructor(readonly secretKey = 'sk_test_vbidouble0000000000') {}

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The next requests meet these faults, one each, in order. */
  fault(...f: Fault[]): void {
    this.faults.push(...f);
  }

  /** Stripe forgets idempotency keys after 24 hours: so does the double, on demand. */
  forgetKeys(): void {
    this.keys.clear();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://double');
    const key = req.headers['idempotency-key'] as string | undefined;
    this.requests.push({ method: req.method ?? '', path: url.pathname, key });
    const fault = this.faults.shift();
    if (fault?.kind === 'hang') return; // never answered (the adapter's timeout ends it)
    if (fault?.kind === 'status') return send(res, fault.status, { error: { type: 'api_error', message: 'injected' } });
    if (req.headers.authorization !== `Bearer ${this.secretKey}`) {
      return send(res, 401, { error: { type: 'invalid_request_error', message: 'Invalid API Key provided' } });
    }
    const params = new URLSearchParams(raw);
    let answer: { status: number; body: unknown };
    if (req.method === 'POST' && key && this.keys.has(key)) {
      const kept = this.keys.get(key)!;
      answer = kept.params === raw
        ? { status: kept.status, body: kept.body }
        : { status: 400, body: { error: { type: 'idempotency_error', message: 'Keys for idempotent requests can only be used with the same parameters they were first used with.' } } };
    } else {
      answer = this.route(req.method ?? '', url, params);
      if (req.method === 'POST' && key && answer.status !== 409 && answer.status < 500) this.keys.set(key, { params: raw, ...answer });
    }
    if (fault?.kind === 'lose') {
      req.socket.destroy(); // done, but the answer never arrives
      return;
    }
    send(res, answer.status, answer.body);
  }

  private route(method: string, url: URL, p: URLSearchParams): { status: number; body: unknown } {
    const path = url.pathname;
    let m: RegExpExecArray | null;
    if (method === 'POST' && path === '/v1/payment_intents') return this.create(p);
    if (method === 'GET' && (m = /^\/v1\/payment_intents\/([^/]+)$/.exec(path))) return this.found(m[1], (pi) => ok(pi));
    if (method === 'POST' && (m = /^\/v1\/payment_intents\/([^/]+)\/capture$/.exec(path))) {
      return this.found(m[1], (pi) => {
        if (pi.status !== 'requires_capture') return unexpected(pi);
        const amount = p.has('amount_to_capture') ? Number(p.get('amount_to_capture')) : pi.amount;
        if (amount > pi.amount) return invalid('amount_to_capture is greater than the amount capturable');
        Object.assign(pi, { status: 'succeeded', amount_received: amount });
        return ok(pi);
      });
    }
    if (method === 'POST' && (m = /^\/v1\/payment_intents\/([^/]+)\/cancel$/.exec(path))) {
      return this.found(m[1], (pi) => {
        if (!['requires_payment_method', 'requires_capture', 'requires_confirmation', 'requires_action'].includes(pi.status)) return unexpected(pi);
        pi.status = 'canceled';
        return ok(pi);
      });
    }
    if (method === 'GET' && path === '/v1/refunds') {
      const of = url.searchParams.get('payment_intent');
      return ok({ object: 'list', data: this.refunds.filter((r) => r.payment_intent === of).reverse(), has_more: false });
    }
    if (method === 'POST' && path === '/v1/refunds') {
      return this.found(p.get('payment_intent') ?? '', (pi) => {
        if (pi.status !== 'succeeded') return invalid(`PaymentIntent ${pi.id} has no charge to refund`);
        const left = pi.amount_received - this.refunds.filter((r) => r.payment_intent === pi.id).reduce((s, r) => s + r.amount, 0);
        const amount = p.has('amount') ? Number(p.get('amount')) : left;
        if (amount <= 0 || amount > left) return invalid(`Refund amount (${amount}) is greater than unrefunded amount on charge (${left})`, 'amount_too_large');
        const refund = { id: `re_${this.nextRefund++}`, payment_intent: pi.id, amount, status: 'succeeded', metadata: metadataOf(p) };
        this.refunds.push(refund);
        return ok(refund);
      });
    }
    return { status: 404, body: { error: { type: 'invalid_request_error', message: `Unrecognized request URL (${method}: ${path})` } } };
  }

  private create(p: URLSearchParams): { status: number; body: unknown } {
    const amount = Number(p.get('amount'));
    if (!Number.isSafeInteger(amount) || amount < 50) return invalid('Amount must be at least $0.50 usd', 'amount_too_small', 'amount');
    const outcomes: Record<string, { status: string; decline?: string }> = {
      pm_card_visa: { status: 'requires_capture' },
      pm_card_chargeDeclined: { status: 'requires_payment_method', decline: 'generic_decline' },
      pm_card_chargeDeclinedInsufficientFunds: { status: 'requires_payment_method', decline: 'insufficient_funds' },
      pm_card_authenticationRequired: { status: 'requires_action' },
    };
    const outcome = outcomes[p.get('payment_method') ?? ''];
    if (!outcome) return invalid(`No such PaymentMethod: '${p.get('payment_method')}'`, 'resource_missing', 'payment_method');
    const pi: DoubleIntent = {
      id: `pi_${this.nextIntent++}`, status: outcome.status, amount, amount_received: 0, currency: p.get('currency') ?? '',
      capture_method: p.get('capture_method') ?? 'automatic', payment_method: p.get('payment_method') ?? '', metadata: metadataOf(p),
      last_payment_error: outcome.decline ? { code: 'card_declined', decline_code: outcome.decline } : null,
    };
    this.intents.set(pi.id, pi);
    if (outcome.decline) {
      return { status: 402, body: { error: { type: 'card_error', code: 'card_declined', decline_code: outcome.decline, message: 'Your card was declined.', payment_intent: pi } } };
    }
    return ok(pi);
  }

  private found(id: string, then: (pi: DoubleIntent) => { status: number; body: unknown }): { status: number; body: unknown } {
    const pi = this.intents.get(id);
    return pi ? then(pi) : { status: 404, body: { error: { type: 'invalid_request_error', code: 'resource_missing', message: `No such payment_intent: '${id}'` } } };
  }
}

function metadataOf(p: URLSearchParams): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of p) {
    const m = /^metadata\[(.+)\]$/.exec(k);
    if (m) out[m[1]] = v;
  }
  return out;
}

const ok = (body: unknown) => ({ status: 200, body: structuredClone(body) });
const invalid = (message: string, code?: string, param?: string) => ({ status: 400, body: { error: { type: 'invalid_request_error', code, param, message } } });
const unexpected = (pi: DoubleIntent) => ({
  status: 400,
  body: { error: { type: 'invalid_request_error', code: 'payment_intent_unexpected_state', message: `This PaymentIntent's status is ${pi.status}.`, payment_intent: structuredClone(pi) } },
});

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
