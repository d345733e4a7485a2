import { WebClient } from '@vbi/client/web/client/web-client';
import { field, fieldList, h, onSubmit, outcome } from '../dom';
import type { Meter } from '../meter';

/** Registration: the module's identity is checked against the root the user trusts, then shown. */
export function registerPage(view: HTMLElement, meter: Meter): void {
  const out = outcome();
  const name = h('input', { name: 'name', required: true, maxlength: 100, autocomplete: 'organization' });
  const zip = h('input', { name: 'zip', required: true, pattern: '\\d{5}', inputmode: 'numeric', maxlength: 5 });
  const ret = h('textarea', { name: 'returnAddress', rows: 4, required: true });
  const root = h('input', { type: 'file', name: 'root', accept: '.pem,.crt,application/x-pem-file', required: true });
  const pw = h('input', { type: 'password', name: 'password', required: true, minlength: 8, autocomplete: 'new-password' });
  const pw2 = h('input', { type: 'password', name: 'password2', required: true, minlength: 8, autocomplete: 'new-password' });
  const result = h('section', { id: 'registration-result', 'aria-live': 'polite' });
  const form = h('form', { id: 'register-form' },
    field('Mailer name', name), field('Licensing ZIP', zip, '5 digits: the post office that licenses the meter'),
    field('Return address', ret, 'one line per row, at most 5 rows of 40 characters'),
    field('Trusted postal root certificate (PEM)', root, 'the module must prove its identity with a certificate chaining to this root'),
    field('Password', pw, 'encrypts the key file; the module keeps only a verifier of it'), field('Password again', pw2),
    h('button', { type: 'submit' }, 'Register'));
  onSubmit(form, out, async () => {
    if (pw.value !== pw2.value) throw Object.assign(new Error('the two passwords differ'), { code: 'BAD_REQUEST' });
    if (meter.storedKeyFile() && !confirm('This browser already keeps a key file. Replace it? (Download it first from the Meter page if you need it.)')) return;
    const rootCertPem = await root.files![0].text();
    const { client, identity } = await WebClient.register({
      baseUrl: location.origin, rootCertPem, name: name.value.trim(), licensingZip: zip.value.trim(),
      returnAddress: ret.value.split('\n').map((l) => l.trim()).filter((l) => l.length > 0), password: pw.value, persist: meter.persist,
    });
    meter.use(client);
    result.replaceChildren(
      h('h3', {}, 'Registered'),
      fieldList([
        ['Meter', client.meterId], ['Module serial', identity.serial], ['Module identity', identity.subject], ['Issued by', identity.issuer],
        ['Valid until', identity.notAfter], ['Certificate SHA-256', identity.fingerprint], ['Trusted root SHA-256', identity.rootFingerprint],
        ['Chain checked', 'yes: to your root, and the module signed our nonce with its identity key'],
      ], { id: 'module-identity' }),
      h('p', {}, 'Download the key file from the Meter page to use this meter with the vbi CLI too.'));
    out.ok(`Meter ${client.meterId} registered.`);
  });
  view.append(form, out.el, result);
}
