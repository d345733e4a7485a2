import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { signingKeyReport } from '../hsm/signing-keys';
import { createVendorRaKey, initCa, registerRa, rolloverCa } from '../pki/ca/ca-ceremony';
import { fromPem, toPem } from '@vbi/core/pki/pem';
import { keyLines, writeTranscript } from './transcript';
import { required, serialOf, StepContext } from './step-context';

/** The PKI steps (docs/pki.md), each on a token of its own: the postal CA, vendor RA keys, RA registration. */

/** `ca-init`, `ca-rollover`: the dev/test postal CA created, or its next root key generation made the root. */
export async function caInitOrRollover({ values, pins, out, lib, transcriptDir, caDir, step }: StepContext): Promise<number> {
  const label = required(values.label, 'label');
  const officer = required(values.officer, 'officer');
  const token = {
    library: lib, tokenLabel: label,
    soPin: pins.so(label), userPin: pins.user(label),
  };
  const r = step === 'ca-init' ? await initCa({ ...token, dir: caDir }) : await rolloverCa({ ...token, dir: caDir });
  const keys = await signingKeyReport({ library: lib, label, userPin: token.userPin });
  const t = writeTranscript(transcriptDir, {
    ceremony: step, officer, library: lib.path, tokens: [{ label, serial: serialOf(lib, label) }],
    keys: keyLines(label, keys), result: { ...r },
  });
  out(`CA in ${caDir}: root generation ${r.rootGeneration}, root serial ${r.rootSerial}, issuing serial ${r.issuingSerial}`);
  out(`root key SPKI-SHA256 ${r.rootSpkiSha256}\nnext root key SPKI-SHA256 ${r.nextRootSpkiSha256} (published in the root certificate)`);
  out(`trust anchor: ${join(caDir, 'root.pem')}\ntranscript ${t.path}`);
  return 0;
}

/** `vendor-ra`: the vendor RA key on its token; its public key written to a file. */
export async function vendorRa({ values, pins, out, config, lib, transcriptDir }: StepContext): Promise<number> {
  const label = required(values.label, 'label');
  const officer = required(values.officer, 'officer');
  const raId = required(values['ra-id'], 'ra-id');
  const key = await createVendorRaKey({
    library: lib, tokenLabel: label,
    soPin: pins.so(label), userPin: pins.user(label),
  });
  const file = values.out ?? join(config.varDir, 'pki', `${raId}.pub.pem`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, toPem('PUBLIC KEY', key.publicKeySpki));
  const fingerprint = createHash('sha256').update(key.publicKeySpki).digest('hex');
  const t = writeTranscript(transcriptDir, {
    ceremony: 'vendor-ra', officer, library: lib.path, tokens: [{ label, serial: serialOf(lib, label) }],
    keys: keyLines(label, await signingKeyReport({ library: lib, label, userPin: pins.user(label) })),
    result: { raKeyId: raId, keyLabel: key.keyLabel, publicKeyFile: file, spkiSha256: fingerprint },
  });
  out(`vendor RA key ${key.keyLabel} in '${label}'; public key ${file}\nSPKI-SHA256 ${fingerprint} (read it to the CA operator)\ntranscript ${t.path}`);
  return 0;
}

/** `ca-register-ra`: the CA accepts that RA's countersignatures. */
export async function caRegisterRa({ values, out, lib, transcriptDir, caDir }: StepContext): Promise<number> {
  const officer = required(values.officer, 'officer');
  const raId = required(values['ra-id'], 'ra-id');
  const spki = fromPem('PUBLIC KEY', readFileSync(required(values['public-key'], 'public-key'), 'utf8'));
  const file = registerRa({ dir: caDir, raKeyId: raId, publicKeySpki: spki });
  const fingerprint = createHash('sha256').update(spki).digest('hex');
  const t = writeTranscript(transcriptDir, {
    ceremony: 'ca-register-ra', officer, library: lib.path, tokens: [], result: { raKeyId: raId, file, spkiSha256: fingerprint },
  });
  out(`RA '${raId}' registered with the CA in ${caDir} (SPKI-SHA256 ${fingerprint})\ntranscript ${t.path}`);
  return 0;
}
