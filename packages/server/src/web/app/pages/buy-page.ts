import { formatMills, parseMills } from '@vbi/client/client/money';
import type { Payment } from '@vbi/core/protocol/bodies';
import { field, h, onSubmit, outcome } from '../dom';
import type { Meter } from '../meter';
import { api } from '../service-api';
import { stripeCard } from '../stripe-card';

/** What the service's payment processor takes (GET /v1/payment-methods). */
interface PaymentMethods {
  provider: string;
  unitMills: number;
  methods: Array<Payment['kind']>;
  stripe?: { publishableKey: string };
}

/**
 * Buy postage (a postage value download). The form follows the service's processor: with Stripe,
 * a card in Stripe's own field (Stripe.js turns it into a PaymentMethod id; the card number never
 * reaches this page's code or the service); with the sandbox, card, ACH or check by magic token.
 * A pending payment (a check) gets a Settle button.
 */
export function buyPage(view: HTMLElement, meter: Meter): void {
  const out = outcome();
  const pending = h('section', { id: 'pending', 'aria-live': 'polite' });
  view.append(out.el, pending);
  api.get<PaymentMethods>('/v1/payment-methods')
    .then(async (pm) => out.el.before(await buyForm(pm, meter, out, pending)))
    .catch((e: unknown) => out.error(e));
}

async function buyForm(pm: PaymentMethods, meter: Meter, out: ReturnType<typeof outcome>, pending: HTMLElement): Promise<HTMLElement> {
  const unit = pm.unitMills === 10 ? 'dollars and cents' : 'dollars, up to 3 decimals';
  const amount = h('input', { name: 'amount', required: true, inputmode: 'decimal', placeholder: '20.00' });
  let method: () => Promise<Payment>;
  let fields: HTMLElement[];
  if (pm.provider === 'stripe') {
    if (!pm.stripe) {
      return h('p', { id: 'buy-unavailable', class: 'error' },
        'This service takes cards through Stripe, but no publishable key is configured for the web page (VBI_STRIPE_PUBLISHABLE_KEY): buy with the vbi CLI or the SDK.');
    }
    const cardBox = h('div', { id: 'card-element', class: 'card-element' });
    const card = await stripeCard(pm.stripe.publishableKey, cardBox);
    method = async () => ({ kind: 'card', token: await card.paymentMethod() });
    fields = [h('div', { class: 'field' }, h('span', {}, 'Card (through Stripe)'), cardBox)];
  } else {
    const kind = h('select', { name: 'kind' }, ...pm.methods.map((k) => h('option', { value: k }, k === 'ach' ? 'ACH' : k[0].toUpperCase() + k.slice(1))));
    const token = h('input', { name: 'token', required: true, value: 'tok_approve' });
    method = async () => ({ kind: kind.value as Payment['kind'], token: token.value.trim() });
    fields = [field('Payment', kind), field('Payment token', token, 'sandbox: tok_approve, tok_decline, tok_pending (a check that clears later)')];
  }
  const form = h('form', { id: 'buy-form', 'data-provider': pm.provider },
    field(`Amount (${unit})`, amount),
    ...fields,
    h('button', { type: 'submit' }, 'Buy postage'));
  onSubmit(form, out, async () => {
    const mills = parseMills(amount.value.trim());
    const payment = await method();
    const r = await meter.require().buy({ amount: mills, payment });
    if (r.status === 'pending') {
      out.ok(`Payment ${r.paymentId} is pending: the postage is downloaded when it clears.`);
      const settle = h('button', { type: 'button', id: 'settle', 'data-payment': r.paymentId }, `Settle payment ${r.paymentId}`);
      const settleOut = outcome();
      settle.addEventListener('click', () => {
        settleOut.clear();
        meter.require().settle(r.paymentId)
          .then((s) => settleOut.ok(s.status === 'approved' ? `Payment ${r.paymentId} cleared: ${formatMills(s.amount ?? s.receipt.amount)} downloaded, ${formatMills(s.receipt.descendingRegister)} available.` : `Payment ${r.paymentId} is still ${s.status}.`))
          .catch((e: unknown) => settleOut.error(e));
      });
      pending.replaceChildren(settle, settleOut.el);
    } else {
      pending.replaceChildren();
      out.ok(`Bought ${formatMills(r.receipt.amount)}: ${formatMills(r.receipt.descendingRegister)} available (receipt ${r.receipt.sequence}, signed by module ${r.receipt.moduleSerial}).`);
    }
  });
  return form;
}
