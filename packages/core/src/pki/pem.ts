/** PEM armour for the DER objects the PKI code writes (certificates, requests, public keys). */
export type PemLabel = 'CERTIFICATE' | 'CERTIFICATE REQUEST' | 'PUBLIC KEY';

/** DER to PEM, 64 base64 characters a line. */
export function toPem(label: PemLabel, der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** Every block of `label` in `text`, in order. */
export function fromPemAll(label: PemLabel, text: string): Buffer[] {
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+?)-----END ${label}-----`, 'g');
  const out: Buffer[] = [];
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(Buffer.from(m[1].replace(/\s+/g, ''), 'base64'));
  return out;
}

/** The single block of `label` in `text`; throws when there is none. */
export function fromPem(label: PemLabel, text: string): Buffer {
  const all = fromPemAll(label, text);
  if (all.length === 0) throw new Error(`no ${label} in PEM text`);
  return all[0];
}
