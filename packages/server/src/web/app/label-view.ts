import type { ClientState } from '@vbi/client/client/client-state';
import { formatMills } from '@vbi/client/client/money';
import type { WebIndicium } from '@vbi/client/web/client/web-client';
import { download, h } from './dom';
import { renderLabel } from './service-api';

/**
 * A printed indicium as a label: the preview (PNG from the service's renderer, the CLI's
 * layout), PNG and PDF downloads and the browser's print dialog.
 */
export async function labelView(req: { item: WebIndicium; deliveryAddress: string[]; state: Readonly<ClientState>; name: string }): Promise<HTMLElement> {
  const label = { indicium: req.item.indicium, size: req.state.defaults.labelSize, deliveryAddress: req.deliveryAddress, returnAddress: req.state.defaults.returnAddress };
  const png = await renderLabel({ ...label, format: 'png' });
  const url = URL.createObjectURL(new Blob([new Uint8Array(png)], { type: 'image/png' }));
  const f = req.item.decoded.fields;
  return h('figure', { class: 'preview', 'data-indicium-id': req.item.indiciumId, 'data-sequence': f.sequence },
    h('img', { src: url, alt: `Label with indicium ${req.item.indiciumId}: ${formatMills(f.postage)} to ZIP ${f.destinationZip}` }),
    h('figcaption', {}, `Indicium ${req.item.indiciumId}, sequence ${f.sequence} — ${formatMills(f.postage)} to ${f.destinationZip}, mailing date ${f.dateOfMailing}`),
    h('div', { class: 'noprint' },
      h('button', { type: 'button', class: 'download-png', onclick: () => download(`${req.name}.png`, png, 'image/png') }, 'Download PNG'), ' ',
      h('button', {
        type: 'button', class: 'download-pdf',
        onclick: () => void renderLabel({ ...label, format: 'pdf' }).then((pdf) => download(`${req.name}.pdf`, pdf, 'application/pdf')),
      }, 'Download PDF'), ' ',
      h('button', { type: 'button', class: 'secondary', onclick: () => window.print() }, 'Print')));
}
