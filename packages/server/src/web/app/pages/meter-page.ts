import { WebClient } from '@vbi/client/web/client/web-client';
import { download, field, fieldList, h, onSubmit, outcome } from '../dom';
import type { Meter } from '../meter';

/** Open the meter kept in this browser, import the CLI's key file, export it back. */
export function meterPage(view: HTMLElement, meter: Meter): void {
  const out = outcome();
  const c = meter.client;
  if (c) {
    view.append(
      h('p', {}, 'Your meter is open in this page. Its keys stay in this browser; the service never sees the password or the HMAC key.'),
      fieldList([['Meter', c.meterId], ['Module', c.state.moduleSerial], ['Server', c.state.serverUrl], ['Label size', c.state.defaults.labelSize],
        ['Requests whose answer was lost', c.state.pending?.length ?? 0]], { id: 'meter-info' }),
      c.state.pending?.length ? h('p', { class: 'error', id: 'pending-note' }, 'Purchases or prints whose answer never arrived are kept in the key file: download it and run vbi recover to finish them.') : '',
      h('button', { type: 'button', id: 'export-key-file', onclick: () => download('key.json', c.keyFileText, 'application/json') }, 'Download key file (for the vbi CLI)'),
      h('p', { class: 'note' }, 'The key file is encrypted under your password (scrypt, AES-256-GCM), in the same format as ~/.vbi/key.json.'),
    );
  }

  const stored = meter.storedKeyFile();
  if (stored && !c) {
    const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
    const form = h('form', { id: 'open-form', 'aria-labelledby': 'open-h' }, h('h3', { id: 'open-h' }, 'Open the meter kept in this browser'), field('Password', password), h('button', { type: 'submit' }, 'Open meter'));
    const openOut = outcome();
    onSubmit(form, openOut, async () => {
      meter.use(await WebClient.open({ text: stored, name: 'kept in this browser', password: password.value, baseUrl: location.origin, persist: meter.persist }));
      location.hash = '#/balance';
    });
    view.append(form, openOut.el);
  }

  const file = h('input', { type: 'file', name: 'keyFile', accept: '.json,application/json', required: true });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const importForm = h('form', { id: 'import-form', 'aria-labelledby': 'import-h' },
    h('h3', { id: 'import-h' }, 'Import a key file (from the vbi CLI)'),
    field('Key file (key.json)', file), field('Password', password),
    stored ? h('p', { class: 'note' }, 'This replaces the key file kept in this browser. Download that one first if it holds another meter.') : null,
    h('button', { type: 'submit' }, 'Import and open'));
  onSubmit(importForm, out, async () => {
    const chosen = file.files?.[0];
    if (!chosen) throw Object.assign(new Error('choose a key file'), { code: 'BAD_REQUEST' });
    await meter.client?.closeSession().catch(() => undefined);
    meter.use(await WebClient.open({ text: await chosen.text(), name: chosen.name, password: password.value, baseUrl: location.origin, persist: meter.persist }));
    location.hash = '#/balance';
  });
  view.append(importForm, out.el);
  if (!stored && !c) view.append(h('p', {}, 'No meter in this browser yet: ', h('a', { href: '#/register' }, 'register'), ' or import a key file.'));
}
