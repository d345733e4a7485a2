import { formatMills } from '@vbi/client/client/money';
import { field, fieldList, h, onSubmit, outcome } from '../dom';
import { verifyLabelFile } from '../service-api';

const TYPES: Record<string, 'png' | 'jpeg' | 'pdf'> = { 'image/png': 'png', 'image/jpeg': 'jpeg', 'application/pdf': 'pdf' };

/** The post's page: upload a label (PNG, JPEG, PDF), see the verdict and the decoded fields. */
export function verifyPage(view: HTMLElement): void {
  const out = outcome();
  const file = h('input', { type: 'file', name: 'label', accept: 'image/png,image/jpeg,application/pdf', capture: 'environment', required: true });
  const bearer = h('input', { type: 'password', name: 'bearer', autocomplete: 'off' });
  const result = h('section', { id: 'verify-result', 'aria-live': 'polite' });
  const form = h('form', { id: 'verify-form' },
    field('Label (PNG, JPEG photo or PDF)', file),
    field('Postal verifier credential (optional)', bearer, 'with it the scan is recorded as a sighting (duplicates open fraud cases); without it nothing is recorded'),
    h('button', { type: 'submit' }, 'Verify'));
  onSubmit(form, out, async () => {
    result.replaceChildren();
    const f = file.files?.[0];
    const type = f ? TYPES[f.type] ?? (/\.pdf$/i.test(f.name) ? 'pdf' : /\.jpe?g$/i.test(f.name) ? 'jpeg' : /\.png$/i.test(f.name) ? 'png' : undefined) : undefined;
    if (!f || !type) throw Object.assign(new Error('choose a PNG, JPEG or PDF file'), { code: 'BAD_REQUEST' });
    const r = await verifyLabelFile({ bytes: new Uint8Array(await f.arrayBuffer()), type, bearer: bearer.value.trim() || undefined });
    const fields = (r.fields ?? {}) as Record<string, unknown>;
    const money = (k: string) => (typeof fields[k] === 'number' ? formatMills(fields[k] as number) : fields[k]);
    result.replaceChildren(
      h('p', { class: 'verdict', id: 'verdict', 'data-result': r.result }, r.result === 'VALID' ? 'VALID' : r.result),
      h('p', {}, r.reason ?? ''),
      fieldList([
        ['meterId', fields.meterId], ['postage', money('postage')], ['dateOfMailing', fields.dateOfMailing], ['originZip', fields.originZip],
        ['destinationZip', fields.destinationZip], ['sequence', fields.sequence], ['itemType', fields.itemType], ['rateCategory', fields.rateCategory],
        ['ascendingRegister', money('ascendingRegister')], ['descendingRegister', money('descendingRegister')], ['certSerial', fields.certSerial],
        ['algorithm', fields.algorithm], ['digest', r.digest], ['recorded', r.recorded ? 'yes (sighting recorded)' : 'no'],
      ], { id: 'verify-fields' }));
  });
  view.append(form, out.el, result);
}
