import { formatMills } from '@vbi/client/client/money';
import { fieldList, h, outcome } from '../dom';
import type { Meter } from '../meter';

/** The meter's registers as the module reports them (HMAC-checked, receipt verified). */
export async function balancePage(view: HTMLElement, meter: Meter): Promise<void> {
  const out = outcome();
  const box = h('div', { id: 'balance' });
  const load = async () => {
    out.clear();
    try {
      const b = await meter.require().balance();
      box.replaceChildren(fieldList([
        ['Postage available (descending register)', formatMills(b.descending)],
        ['Postage used (ascending register)', formatMills(b.ascending)],
        ['Refunded (refund register)', formatMills(b.refundRegister)],
        ['Total downloaded (AR + DR)', formatMills(b.ascending + b.descending)],
        ['Meter state', b.state],
      ]));
    } catch (e) {
      out.error(e);
    }
  };
  view.append(h('button', { type: 'button', onclick: () => void load() }, 'Refresh'), box, out.el);
  await load();
}
