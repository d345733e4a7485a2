import { formatMills, parseMills } from '../../../client/money';
import type { Payment } from '../../../client/wire';
import { field, h, onSubmit, outcome } from '../dom';
import type { Meter } from '../meter';

/** Buy postage (a postage value download) with the sandbox card, ACH or check; settle a pending one. */
export function buyPage(view: HTMLElement, meter: Meter): void {
  const out = outcome();
  const amount = h('input', { name: 'amount', required: true, inputmode: 'decimal', placeholder: '20.00' });
  const kind = h('select', { name: 'kind' }, h('option', { value: 'card' }, 'Card'), h('option', { value: 'ach' }, 'ACH'), h('option', { value: 'check' }, 'Check'));
  const token = h('input', { name: 'token', required: true, value: 'tok_approve' });
  const pending = h('section', { id: 'pending', 'aria-live': 'polite' });
  const form = h('form', { id: 'buy-form' },
    field('Amount (dollars, up to 3 decimals)', amount),
    field('Payment', kind),
    field('Payment token', token, 'sandbox: tok_approve, tok_decline, tok_pending (a check that clears later)'),
    h('button', { type: 'submit' }, 'Buy postage'));
  onSubmit(form, out, async () => {
    const payment: Payment = { kind: kind.value as Payment['kind'], token: token.value.trim() };
    const r = await meter.require().buy({ amount: parseMills(amount.value.trim()), payment });
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
  view.append(form, out.el, pending);
}
