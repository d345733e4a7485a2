import { parseBatchList } from '@vbi/client/client/batch-list';
import { formatMills } from '@vbi/client/client/money';
import type { PrintItemRequest } from '@vbi/client/client/print-item';
import { computePostage, rateTableAt } from '@vbi/core/rates/postage';
import type { WebPrintedItem } from '@vbi/client/web/client/web-client';
import { field, h, onSubmit, outcome, table } from '../dom';
import { labelView } from '../label-view';
import type { Meter } from '../meter';

/** Print one label (address form, rate from the rate table, preview) or a batch from a CSV mailing list. */
export function printPage(view: HTMLElement, meter: Meter): void {
  const rates = rateTableAt(new Date());
  const out = outcome();
  const to = h('textarea', { name: 'to', rows: 4, required: true });
  const zip = h('input', { name: 'zip', required: true, inputmode: 'numeric', pattern: '\\d{5}(\\d{4}(\\d{2})?)?', maxlength: 11 });
  const mailClass = h('select', { name: 'class' }, ...rates.classes.map((c) => h('option', { value: c.class }, c.description)));
  const weight = h('input', { name: 'weight', required: true, inputmode: 'decimal', value: '1' });
  const zone = h('input', { name: 'zone', inputmode: 'numeric', pattern: '[1-9]', maxlength: 1 });
  const quote = h('p', { id: 'quote', 'aria-live': 'polite' });
  const labels = h('section', { id: 'labels', 'aria-label': 'Printed labels' });
  const item = (): PrintItemRequest => {
    const z = zone.value.trim();
    return { destinationZip: zip.value.replace(/-/g, '').trim(), rate: { mailClass: mailClass.value, weightOz: Number(weight.value), ...(z ? { zone: Number(z) } : {}) } };
  };
  const requote = () => {
    try {
      const r = item().rate!;
      const q = computePostage({ mailClass: r.mailClass, weightOz: r.weightOz, zone: r.zone });
      quote.textContent = `Postage: ${formatMills(q.postage)} (${q.class}, rate table ${q.rateTableName})`;
    } catch (e) {
      quote.textContent = `No rate: ${(e as Error).message}`;
    }
  };
  for (const el of [mailClass, weight, zone]) el.addEventListener('input', requote);
  requote();
  const form = h('form', { id: 'print-form', 'aria-labelledby': 'one-h' },
    h('h3', { id: 'one-h' }, 'One label'),
    field('Delivery address', to, 'one line per row, at most 6 rows of 40 characters'),
    field('Destination ZIP (5, 9 or 11 digits)', zip), field('Mail class', mailClass), field('Weight (ounces)', weight), field('Zone (zoned classes only)', zone),
    quote, h('button', { type: 'submit' }, 'Print label'));
  onSubmit(form, out, async () => {
    const deliveryAddress = to.value.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
    await meter.session();
    const r = await meter.require().print([item()]);
    await show(r.items, [deliveryAddress], ['label']);
  });

  const csv = h('input', { type: 'file', name: 'csv', accept: '.csv,text/csv', required: true });
  const progress = h('progress', { id: 'batch-progress', max: 1, value: 0, 'aria-label': 'Batch progress' });
  const progressText = h('span', { id: 'batch-progress-text', 'aria-live': 'polite' });
  const batchOut = outcome();
  const batch = h('form', { id: 'batch-form', 'aria-labelledby': 'batch-h' },
    h('h3', { id: 'batch-h' }, 'A batch from a mailing list'),
    field('Mailing list (CSV)', csv, 'columns as for vbi print-batch: to (lines separated by |), zip, weight, class, zone, postage, file'),
    h('button', { type: 'submit' }, 'Print batch'), h('div', {}, progress, ' ', progressText));
  onSubmit(batch, batchOut, async () => {
    const c = meter.require();
    const rows = parseBatchList(await csv.files![0].text(), { mailClass: c.state.defaults.mailClass });
    progress.max = rows.length;
    progress.value = 0;
    progressText.textContent = `0 of ${rows.length}: sending`;
    await meter.session();
    const r = await c.print(rows.map((x) => x.item));
    await show(r.items, rows.map((x) => x.deliveryAddress), rows.map((x) => x.file), (done) => {
      progress.value = done;
      progressText.textContent = `${done} of ${rows.length} labels drawn`;
    });
    const count = (s: string) => r.items.filter((i) => i.status === s).length;
    batchOut.ok(`Batch ${r.batchId ?? ''}: ${count('printed')} printed, ${count('voided')} voided, ${count('failed')} failed.`);
  });

  async function show(items: WebPrintedItem[], addresses: string[][], names: string[], onDone?: (n: number) => void): Promise<void> {
    const c = meter.require();
    labels.replaceChildren();
    const problems: Array<[number, string, string]> = [];
    let done = 0;
    for (const it of items) {
      if (it.printed) labels.append(await labelView({ item: it.printed, deliveryAddress: addresses[it.index], state: c.state, name: names[it.index] ?? `label-${it.index + 1}` }));
      else problems.push([it.index + 1, it.status, it.reason ?? '']);
      onDone?.(++done);
    }
    if (problems.length) labels.prepend(table('Items not printed (nothing was debited for them)', ['Item', 'Status', 'Code'], problems.map((p) => [p[0], p[1], h('code', {}, p[2])])));
    if (items.length === 1 && items[0].printed) out.ok(`Printed: ${formatMills(items[0].printed.receipt.amount)}, ${formatMills(items[0].printed.receipt.descendingRegister)} left.`);
    if (items.length === 1 && !items[0].printed) out.error(Object.assign(new Error(`item ${items[0].status}`), { code: items[0].reason ?? items[0].status }));
  }

  view.append(form, out.el, batch, batchOut.el, labels);
}
