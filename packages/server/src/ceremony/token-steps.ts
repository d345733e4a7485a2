import { cloneSharedKeys, countDataObjects, generateModuleKeys, initToken as initTokenKeys, takeOwnership as takeTokenOwnership, tokenKeyReport } from '../hsm/key-ceremony';
import { listTokens, probeWithProfiles } from '../hsm/probe-ceremony';
import { KEY_ROLES, SHARED_ROLES } from '../hsm/key-templates';
import { withSigningRoles } from '../hsm/signing-keys';
import { keyLines, writeTranscript } from './transcript';
import { formatKeys, required, serialOf, StepContext } from './step-context';

/** The token steps of the key ceremony: probe, take ownership, initialise, generate, clone, status. */

/** `probe`: the library's slots, or whether a token fits the profile (and which shipped profiles do). */
export async function probe({ values, pins, out, config, suite, lib }: StepContext): Promise<number> {
  if (!values.label) {
    out(`library ${lib.path} (${lib.module.libraryDescription.trim()}, ${lib.module.manufacturerID.trim()}); profile '${lib.profile.name}' (${lib.profile.basis})`);
    for (const t of listTokens(lib)) out(`  slot ${t.slot}: ${t.initialised ? `'${t.label}'` : '(uninitialised)'} ${t.manufacturerID} ${t.model} serial '${t.serial}' PIN ${t.minPinLen}..${t.maxPinLen}`);
    return 0;
  }
  const label = values.label;
  const userPin = pins.user(label);
  const r = await probeWithProfiles({ library: lib, label, userPin, suite, wrapMechanism: config.hsm.wrapMechanism, oaepHash: config.hsm.oaepHash });
  if (values.json) out(JSON.stringify(r, null, 2));
  else {
    out(`token '${label}': ${r.report.token.manufacturerID} ${r.report.token.model}, serial '${r.report.token.serial}', PIN ${r.report.token.minPinLen}..${r.report.token.maxPinLen}; library ${r.report.token.library}`);
    out(`profile '${r.report.profile}' (PKCS11_PROFILE or matched by library path), suite ${suite}:`);
    for (const c of r.report.checks) out(`  ${c.ok ? 'ok  ' : c.required ? 'FAIL' : 'warn'} ${c.name}: ${c.detail}${c.ckr ? ` [${c.ckr}]` : ''}`);
    out(r.report.ok ? `profile '${r.report.profile}' fits this token` : `profile '${r.report.profile}' does NOT fit this token: the service will refuse it`);
    out(`shipped profiles that fit: ${r.fitting.length ? r.fitting.join(', ') : 'none'}`);
  }
  return r.report.ok ? 0 : 1;
}

/** `take-ownership`: a vendor-initialised token's factory SO PIN changed, the user PIN set. */
export async function takeOwnership({ values, pins, out, lib, transcriptDir }: StepContext): Promise<number> {
  const label = required(values.label, 'label');
  const officer = required(values.officer, 'officer');
  const factory = pins.factorySo();
  const r = await takeTokenOwnership({
    library: lib, label, factorySoPin: factory,
    soPin: pins.so(label), userPin: pins.user(label),
  });
  const t = writeTranscript(transcriptDir, {
    ceremony: 'take-ownership', officer, library: lib.path, tokens: [{ label, serial: r.serial }],
    result: { factorySoPinRefused: true, userPinSet: true },
  });
  out(`token '${label}' taken over: SO PIN changed (the factory PIN is refused), user PIN set\ntranscript ${t.path}`);
  return 0;
}

/** `init-token`: a token initialised with the SO and user PINs (profiles with provisioning free-slot). */
export async function initToken({ values, pins, out, lib, transcriptDir }: StepContext): Promise<number> {
  const label = required(values.label, 'label');
  const r = await initTokenKeys({
    library: lib, label, force: values.force,
    soPin: pins.so(label), userPin: pins.user(label),
  });
  const t = writeTranscript(transcriptDir, {
    ceremony: 'init-token', officer: values.officer ?? 'unspecified', library: lib.path,
    tokens: [{ label, serial: r.serial }], result: { reinitialised: Boolean(values.force) },
  });
  out(`token '${label}' initialised, serial ${r.serial}\ntranscript ${t.path}`);
  return 0;
}

/** `generate`: the module's keys (or with --own-keys only its identity and transport keys). */
export async function generate({ values, pins, out, config, suite, lib, transcriptDir }: StepContext): Promise<number> {
  const label = required(values.label, 'label');
  const officer = required(values.officer, 'officer');
  // --own-keys: only the module's own identity and transport keys, beside shared keys from `clone`
  const roles = values['own-keys'] ? KEY_ROLES.filter((r) => !SHARED_ROLES.includes(r)) : undefined;
  const keys = await generateModuleKeys({
    library: lib, label, suite, wrapMechanism: config.hsm.wrapMechanism, roles,
    soPin: pins.so(label), userPin: pins.user(label),
  });
  const serial = serialOf(lib, label);
  const t = writeTranscript(transcriptDir, {
    ceremony: 'generate', officer, library: lib.path, suite, tokens: [{ label, serial }],
    keys: keyLines(label, keys), result: { generated: roles ?? KEY_ROLES },
  });
  out(formatKeys(label, serial, keys));
  out(`transcript ${t.path}`);
  return 0;
}

/** `clone`: the shared package keys copied from one token to another; their KCVs match. */
export async function clone({ values, pins, out, config, suite, lib, transcriptDir }: StepContext): Promise<number> {
  const from = required(values.from, 'from');
  const to = required(values.to, 'to');
  const officer = required(values.officer, 'officer');
  const r = await cloneSharedKeys({
    suite, oaepHash: config.hsm.oaepHash, wrapMechanism: config.hsm.wrapMechanism,
    from: { library: lib, label: from, soPin: pins.soFrom(from), userPin: pins.userFrom(from) },
    to: { library: lib, label: to, soPin: pins.soTo(to), userPin: pins.userTo(to) },
  });
  const t = writeTranscript(transcriptDir, {
    ceremony: 'clone', officer, library: lib.path, suite,
    tokens: [{ label: from, serial: serialOf(lib, from) }, { label: to, serial: serialOf(lib, to) }],
    keys: [...keyLines(from, r.from), ...keyLines(to, r.to)].filter((k) => k.class === 'secret'),
    result: { kcvMatch: true },
  });
  out(`shared package keys cloned from '${from}' to '${to}'; KCVs match`);
  out(formatKeys(to, serialOf(lib, to), r.to));
  out(`transcript ${t.path}`);
  return 0;
}

/** `status`: the token's keys, KCVs and weak attributes (exit 1 when any key is weak). */
export async function status({ values, pins, out, config, suite, lib }: StepContext): Promise<number> {
  const label = required(values.label, 'label');
  const userPin = pins.user(label);
  const keys = withSigningRoles(await tokenKeyReport({ library: lib, label, userPin, suite, wrapMechanism: config.hsm.wrapMechanism }));
  const dataObjects = await countDataObjects({ library: lib, label, userPin });
  const weak = keys.filter((k) => k.weaknesses.length > 0);
  if (values.json) out(JSON.stringify({ label, serial: serialOf(lib, label), keys, dataObjects }, null, 2));
  else {
    out(formatKeys(label, serialOf(lib, label), keys));
    out(`data objects (checkpoint ring, markers): ${dataObjects}`);
    out(weak.length ? `WEAK: ${weak.length} key(s) flagged` : 'no weak attributes');
  }
  return weak.length ? 1 : 0;
}
