import { formatMills, parseMills } from '@vbi/client/client/money';
import { field, h, onSubmit, outcome, table } from '../dom';
import { labelView } from '../label-view';
import type { Meter } from '../meter';

/** History, the module's signed receipts, reprint (committed indicia fetched again) and refunds. */
export async function historyPage(view: HTMLElement, meter: Meter): Promise<void> {
  const out = outcome();
  const list = h('section', { id: 'history' });
  const receipts = h('section', { id: 'receipts' });
  const loadHistory = async () => {
    const entries = await meter.require().history(50);
    list.replaceChildren(table('Newest movements', ['Time', 'Type', 'Amount', 'Used (AR)', 'Available (DR)'],
      entries.map((e) => [e.time, e.type, formatMills(e.amount), formatMills(e.ascending), formatMills(e.descending)])));
  };
  const loadReceipts = async () => {
    const txs = await meter.require().transactions(0);
    receipts.replaceChildren(table('Transactions with the module\'s receipts', ['Sequence', 'Type', 'Amount', 'Module', 'Receipt signature', 'Indicia (number on the label)'],
      txs.map((t) => [t.sequence, t.type, formatMills(t.amount), t.receipt?.moduleSerial ?? '—',
        t.receipt ? (t.receiptVerified ? 'verified' : 'DOES NOT VERIFY') : '—',
        h('span', {}, ...(t.indicia ?? []).map((i) => h('button', {
          type: 'button', class: 'secondary', 'data-indicium-sequence': i.sequence,
          onclick: () => {
            from.value = String(i.sequence);
            to.value = String(i.sequence);
            from.focus();
          },
        }, `Reprint no. ${i.sequence}`)))])));
  };
  view.append(
    h('div', { class: 'noprint' },
      h('button', { type: 'button', onclick: () => void loadHistory().catch((e: unknown) => out.error(e)) }, 'Refresh history'), ' ',
      h('button', { type: 'button', id: 'load-receipts', onclick: () => void loadReceipts().catch((e: unknown) => out.error(e)) }, 'Show receipts')),
    out.el, list, receipts);

  // reprint
  const from = h('input', { name: 'from', required: true, inputmode: 'numeric' });
  const to = h('input', { name: 'to', required: true, inputmode: 'numeric' });
  const addr = h('textarea', { name: 'to-address', rows: 3, required: true });
  const reprints = h('section', { id: 'reprints' });
  const reprintOut = outcome();
  const reprint = h('form', { id: 'reprint-form', 'aria-labelledby': 'reprint-h' },
    h('h3', { id: 'reprint-h' }, 'Reprint'),
    h('p', { class: 'note' }, 'Fetches committed indicia again (the same signed bytes) by their numbers (NO. on the label), as vbi reprint --from --to does.'),
    field('From indicium number', from), field('To indicium number', to), field('Delivery address on the labels', addr),
    h('button', { type: 'submit' }, 'Reprint'));
  onSubmit(reprint, reprintOut, async () => {
    await meter.session();
    const items = await meter.require().redeliver({ fromSequence: Number(from.value), toSequence: Number(to.value) });
    const deliveryAddress = addr.value.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
    reprints.replaceChildren();
    for (const it of items) reprints.append(await labelView({ item: it, deliveryAddress, state: meter.require().state, name: `reprint-${it.indiciumId}` }));
    reprintOut.ok(`${items.length === 1 ? '1 indicium' : `${items.length} indicia`} fetched again.`);
  });

  // refund
  const kind = h('select', { name: 'kind' }, h('option', { value: 'partial' }, 'Part of the available postage (spoiled labels)'), h('option', { value: 'full' }, 'All available postage (close out)'));
  const amount = h('input', { name: 'amount', inputmode: 'decimal' });
  const reason = h('input', { name: 'reason', required: true, maxlength: 200 });
  const refundOut = outcome();
  const refund = h('form', { id: 'refund-form', 'aria-labelledby': 'refund-h' },
    h('h3', { id: 'refund-h' }, 'Ask for a refund'), field('Refund', kind), field('Amount (dollars, partial refunds)', amount), field('Reason', reason),
    h('button', { type: 'submit' }, 'Ask for refund'));
  onSubmit(refund, refundOut, async () => {
    const r = kind.value === 'full'
      ? await meter.require().refund({ kind: 'full', reason: reason.value })
      : await meter.require().refund({ kind: 'partial', amount: parseMills(amount.value.trim()), reason: reason.value });
    refundOut.ok(`Refunded ${formatMills(r.refunded)}: ${formatMills(r.receipt.descendingRegister)} available (receipt ${r.receipt.sequence}).`);
  });
  view.append(reprint, reprintOut.el, reprints, refund, refundOut.el);
  await loadHistory().catch((e: unknown) => out.error(e));
}
