import { parseArgs } from 'node:util';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadConfig, readSecret, DEV_SO_PIN, DEV_TOKEN_LABEL, DEV_USER_PIN, Config } from '../config/config';
import { isVbiError, vbiError } from '../errors';
import { closeLibrary, findSlotByLabel, openLibrary, LibraryHandle } from '../hsm/pkcs11-library';
import {
  cloneSharedKeys, countDataObjects, generateModuleKeys, initToken, moduleSerial, proveOfficer, takeOwnership, tokenKeyReport, KeyReport,
} from '../hsm/key-ceremony';
import { listTokens, probeWithProfiles } from '../hsm/probe-ceremony';
import { CryptoModule } from '../hsm/crypto-module';
import { PsdEngine } from '../module/psd-engine';
import { openShardDatabase } from '../config/shard-database';
import { Lease, mapShardResource, moduleResource } from '../ledger/module-lease';
import { reinstateModule, reinstatementStatement } from '../ledger/reinstatement';
import type { Approval, ReinstatementStatement } from '../ledger/officer-approval';
import { checkOfficerName, installApprovers } from '../hsm/officer-keys';
import { createOfficerKey, signApproval } from './officers';
import { pgAuditStore } from '../ledger/audit-store';
import { isPackageSuite, PackageSuite } from '../hsm/mechanisms';
import { KEY_ROLES, SHARED_ROLES } from '../hsm/key-templates';
import { keyLines, writeTranscript } from './transcript';
import { signingKeyReport, withSigningRoles } from '../hsm/signing-keys';
import { createVendorRaKey, initCa, registerRa, rolloverCa } from '../pki/ca/ca-ceremony';
import { fromPem, toPem } from '../pki/pem';
import { DEV_CA_LABEL, DEV_VENDOR_LABEL } from '../pki/dev';

/**
 * The key ceremony CLI, run by a Security Officer:  npm run ceremony -- <step> [options]
 *
 *   probe      [--label L] [--json]     is this token usable, and which profile fits (hsm/README.md)
 *   init-token --label L [--force]      (profiles with provisioning free-slot)
 *   take-ownership --label L --officer NAME   vendor-initialised token: factory SO PIN changed, user PIN set
 *   generate   --label L --officer NAME [--suite aes|legacy-3des] [--own-keys]
 *   clone      --from L1 --to L2 --officer NAME
 *   status     --label L [--json]
 *   reinstate  --label L --officer NAME --accept-checkpoint HEX|none --approval FILE [--approval FILE ...]
 *
 * Officer approvals (docs/key-ceremony.md), each officer on a token of their own:
 *   officer-key      --label OFFICER_TOKEN --officer NAME [--out FILE]   the officer's approval key; writes its public key
 *   install-officers --label MODULE --officer NAME --threshold M --officer-key NAME=FILE ...   the module SO installs the approvers
 *   approval-request --label MODULE --accept-checkpoint HEX|none [--out FILE]   the statement to approve
 *   approve          --label OFFICER_TOKEN --officer NAME --request FILE [--out FILE]   one officer's approval
 *
 * PKI steps (docs/pki.md), on their own tokens (init-token them first):
 *   ca-init        --label CA --officer NAME [--ca-dir DIR]    dev/test postal CA: root + issuing keys and certificates
 *   ca-rollover    --label CA --officer NAME [--ca-dir DIR]    next root key generation becomes the root
 *   vendor-ra      --label VENDOR --officer NAME --ra-id ID [--out FILE]   vendor RA key; writes its public key
 *   ca-register-ra --ca-dir DIR --ra-id ID --public-key FILE --officer NAME   the CA accepts that RA's countersignatures
 *
 * PINs never go on the command line: VBI_SO_PIN / PKCS11_USER_PIN or their *_FILE variants
 * (take-ownership also VBI_FACTORY_SO_PIN[_FILE])
 * (for clone: VBI_SO_PIN_FROM, VBI_SO_PIN_TO, PKCS11_USER_PIN_FROM, PKCS11_USER_PIN_TO, each
 * also as *_FILE). The dev token labels (vbi-dev-module, vbi-dev-ca, vbi-dev-vendor) fall back to the dev PINs.
 * Every step that changes a token writes a JSON transcript (default var/ceremony/).
 */
const USAGE = `usage: npm run ceremony -- <probe|init-token|take-ownership|generate|clone|status|reinstate|officer-key|install-officers|approval-request|approve|ca-init|ca-rollover|vendor-ra|ca-register-ra> [options]
  probe      [--label L] [--json]
  init-token --label L [--force]
  take-ownership --label L --officer NAME
  generate   --label L --officer NAME [--suite aes|legacy-3des] [--own-keys]
  clone      --from L1 --to L2 --officer NAME
  status     --label L [--json]
  reinstate  --label L --officer NAME --accept-checkpoint HEX|none --approval FILE [--approval FILE ...]
  officer-key      --label OFFICER_TOKEN --officer NAME [--out FILE]
  install-officers --label MODULE --officer NAME --threshold M --officer-key NAME=FILE [--officer-key NAME=FILE ...]
  approval-request --label MODULE --accept-checkpoint HEX|none [--out FILE]
  approve          --label OFFICER_TOKEN --officer NAME --request FILE [--out FILE]
  ca-init        --label CA --officer NAME [--ca-dir DIR]
  ca-rollover    --label CA --officer NAME [--ca-dir DIR]
  vendor-ra      --label VENDOR --officer NAME --ra-id ID [--out FILE]
  ca-register-ra --ca-dir DIR --ra-id ID --public-key FILE --officer NAME
options: --transcript-dir DIR (default var/ceremony), --ca-dir DIR (default var/ca)
PINs from the environment: VBI_SO_PIN[_FILE], PKCS11_USER_PIN[_FILE] (clone: *_FROM / *_TO; take-ownership: VBI_FACTORY_SO_PIN[_FILE])
token profile: PKCS11_PROFILE (a name in hsm/profiles or a JSON file; default: the profile matching PKCS11_LIBRARY)`;

type Env = Record<string, string | undefined>;

function pin(env: Env, key: string, label: string, devDefault: string): string {
  const v = readSecret(env, key);
  if (v) return v;
  if (label === DEV_TOKEN_LABEL || label === DEV_CA_LABEL || label === DEV_VENDOR_LABEL) return devDefault;
  throw vbiError('CONFIG_INVALID', `${key} or ${key}_FILE must hold the PIN for token '${label}'`);
}

function acceptedCheckpoint(arg: string): Buffer | null {
  if (arg === 'none') return null;
  if (!/^([0-9a-f]{2})+$/i.test(arg)) throw vbiError('BAD_REQUEST', '--accept-checkpoint takes the hex of the module row\'s checkpoint, or none');
  return Buffer.from(arg, 'hex');
}

function required(v: string | undefined, name: string): string {
  if (!v) throw vbiError('BAD_REQUEST', `--${name} is required\n${USAGE}`);
  return v;
}

export async function runCeremony(argv: string[], env: Env = process.env, out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      label: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' }, officer: { type: 'string' },
      suite: { type: 'string' }, force: { type: 'boolean' }, 'own-keys': { type: 'boolean' }, json: { type: 'boolean' },
      'transcript-dir': { type: 'string' }, 'accept-checkpoint': { type: 'string' }, help: { type: 'boolean' },
      'ca-dir': { type: 'string' }, 'ra-id': { type: 'string' }, out: { type: 'string' }, 'public-key': { type: 'string' },
      threshold: { type: 'string' }, 'officer-key': { type: 'string', multiple: true }, request: { type: 'string' },
      approval: { type: 'string', multiple: true },
    },
  });
  const step = positionals[0];
  if (!step || values.help) {
    out(USAGE);
    return step ? 0 : 2;
  }
  const config: Config = loadConfig({ ...env, PKCS11_USER_PIN: env.PKCS11_USER_PIN ?? 'unused-by-ceremony' });
  const suite: PackageSuite = (values.suite ?? config.hsm.suite) as PackageSuite;
  if (!isPackageSuite(suite)) throw vbiError('BAD_REQUEST', `--suite must be aes or legacy-3des`);
  const transcriptDir = values['transcript-dir'] ?? join(config.varDir, 'ceremony');
  const caDir = values['ca-dir'] ?? join(config.varDir, 'ca');
  const lib = openLibrary(config.hsm.library, config.hsm.softhsm2Conf, config.hsm.profile, config.hsm.initParameters, config.hsm.threads);
  try {
    switch (step) {
      case 'probe': {
        if (!values.label) {
          out(`library ${lib.path} (${lib.module.libraryDescription.trim()}, ${lib.module.manufacturerID.trim()}); profile '${lib.profile.name}' (${lib.profile.basis})`);
          for (const t of listTokens(lib)) out(`  slot ${t.slot}: ${t.initialised ? `'${t.label}'` : '(uninitialised)'} ${t.manufacturerID} ${t.model} serial '${t.serial}' PIN ${t.minPinLen}..${t.maxPinLen}`);
          return 0;
        }
        const label = values.label;
        const userPin = pin(env, 'PKCS11_USER_PIN', label, DEV_USER_PIN);
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
      case 'take-ownership': {
        const label = required(values.label, 'label');
        const officer = required(values.officer, 'officer');
        const factory = readSecret(env, 'VBI_FACTORY_SO_PIN');
        if (!factory) throw vbiError('CONFIG_INVALID', 'VBI_FACTORY_SO_PIN or VBI_FACTORY_SO_PIN_FILE must hold the factory SO PIN');
        const r = await takeOwnership({
          library: lib, label, factorySoPin: factory,
          soPin: pin(env, 'VBI_SO_PIN', label, DEV_SO_PIN), userPin: pin(env, 'PKCS11_USER_PIN', label, DEV_USER_PIN),
        });
        const t = writeTranscript(transcriptDir, {
          ceremony: 'take-ownership', officer, library: lib.path, tokens: [{ label, serial: r.serial }],
          result: { factorySoPinRefused: true, userPinSet: true },
        });
        out(`token '${label}' taken over: SO PIN changed (the factory PIN is refused), user PIN set\ntranscript ${t.path}`);
        return 0;
      }
      case 'init-token': {
        const label = required(values.label, 'label');
        const r = await initToken({
          library: lib, label, force: values.force,
          soPin: pin(env, 'VBI_SO_PIN', label, DEV_SO_PIN), userPin: pin(env, 'PKCS11_USER_PIN', label, DEV_USER_PIN),
        });
        const t = writeTranscript(transcriptDir, {
          ceremony: 'init-token', officer: values.officer ?? 'unspecified', library: lib.path,
          tokens: [{ label, serial: r.serial }], result: { reinitialised: Boolean(values.force) },
        });
        out(`token '${label}' initialised, serial ${r.serial}\ntranscript ${t.path}`);
        return 0;
      }
      case 'generate': {
        const label = required(values.label, 'label');
        const officer = required(values.officer, 'officer');
        // --own-keys: only the module's own identity and transport keys, beside shared keys from `clone`
        const roles = values['own-keys'] ? KEY_ROLES.filter((r) => !SHARED_ROLES.includes(r)) : undefined;
        const keys = await generateModuleKeys({
          library: lib, label, suite, wrapMechanism: config.hsm.wrapMechanism, roles,
          soPin: pin(env, 'VBI_SO_PIN', label, DEV_SO_PIN), userPin: pin(env, 'PKCS11_USER_PIN', label, DEV_USER_PIN),
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
      case 'clone': {
        const from = required(values.from, 'from');
        const to = required(values.to, 'to');
        const officer = required(values.officer, 'officer');
        const r = await cloneSharedKeys({
          suite, oaepHash: config.hsm.oaepHash, wrapMechanism: config.hsm.wrapMechanism,
          from: { library: lib, label: from, soPin: pin(env, 'VBI_SO_PIN_FROM', from, DEV_SO_PIN), userPin: pin(env, 'PKCS11_USER_PIN_FROM', from, DEV_USER_PIN) },
          to: { library: lib, label: to, soPin: pin(env, 'VBI_SO_PIN_TO', to, DEV_SO_PIN), userPin: pin(env, 'PKCS11_USER_PIN_TO', to, DEV_USER_PIN) },
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
      case 'status': {
        const label = required(values.label, 'label');
        const userPin = pin(env, 'PKCS11_USER_PIN', label, DEV_USER_PIN);
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
      case 'reinstate': {
        const label = required(values.label, 'label');
        const officer = required(values.officer, 'officer');
        const accept = required(values['accept-checkpoint'], 'accept-checkpoint');
        await proveOfficer(findSlotByLabel(lib, label), pin(env, 'VBI_SO_PIN', label, DEV_SO_PIN));
        const module = await CryptoModule.start({
          library: lib, hsm: config.hsm,
          module: { tokenLabel: label, userPin: pin(env, 'PKCS11_USER_PIN', label, DEV_USER_PIN), userType: config.hsm.modules[0].userType },
        });
        // The service must be stopped: the reinstatement takes the map shard's and the module's leases.
        const db = await openShardDatabase(config);
        const leases: Lease[] = [];
        try {
          leases.push(await Lease.acquire({ url: () => db.primaryUrl(), resource: mapShardResource(config.shard) }));
          leases.push(await Lease.acquire({ url: () => db.primaryUrl(), resource: moduleResource(module.serial) }));
          const engine = await PsdEngine.start({ hsm: module, ringSize: config.hsm.ringSize, audit: pgAuditStore(db.knex) });
          const approvals = (values.approval ?? []).map((f) => JSON.parse(readFileSync(f, 'utf8')) as Approval);
          const audit = await reinstateModule({ db: db.knex, engine, officer, acceptCheckpoint: acceptedCheckpoint(accept), approvals });
          const t = writeTranscript(transcriptDir, {
            ceremony: 'reinstate', officer, library: lib.path, tokens: [{ label, serial: module.serial }], result: { audit },
          });
          out(`module '${label}' reinstated\ntranscript ${t.path}`);
        } finally {
          for (const l of leases) await l.release();
          await db.close();
          await module.close();
        }
        return 0;
      }
      case 'officer-key': {
        const label = required(values.label, 'label');
        const officer = checkOfficerName(required(values.officer, 'officer'));
        const spki = await createOfficerKey({
          library: lib, label, soPin: pin(env, 'VBI_SO_PIN', label, DEV_SO_PIN), userPin: pin(env, 'PKCS11_USER_PIN', label, DEV_USER_PIN),
        });
        const file = values.out ?? join(config.varDir, 'officers', `${officer}.pub.pem`);
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, toPem('PUBLIC KEY', spki));
        const fingerprint = createHash('sha256').update(spki).digest('hex');
        const t = writeTranscript(transcriptDir, {
          ceremony: 'officer-key', officer, library: lib.path, tokens: [{ label, serial: serialOf(lib, label) }],
          result: { publicKeyFile: file, spkiSha256: fingerprint },
        });
        out(`approval key of officer ${officer} in '${label}'; public key ${file}\nSPKI-SHA256 ${fingerprint} (read it to the module's SO)\ntranscript ${t.path}`);
        return 0;
      }
      case 'install-officers': {
        const label = required(values.label, 'label');
        const officer = required(values.officer, 'officer');
        const threshold = Number(required(values.threshold, 'threshold'));
        const officers = (values['officer-key'] ?? []).map((arg) => {
          const eq = arg.indexOf('=');
          if (eq < 1) throw vbiError('BAD_REQUEST', `--officer-key takes NAME=FILE, got '${arg}'`);
          return { name: arg.slice(0, eq), spki: fromPem('PUBLIC KEY', readFileSync(arg.slice(eq + 1), 'utf8')) };
        });
        const labels = await installApprovers({ library: lib, label, soPin: pin(env, 'VBI_SO_PIN', label, DEV_SO_PIN), threshold, officers });
        const t = writeTranscript(transcriptDir, {
          ceremony: 'install-officers', officer, library: lib.path, tokens: [{ label, serial: serialOf(lib, label) }],
          result: { threshold, approvers: officers.map((o) => ({ name: o.name, spkiSha256: createHash('sha256').update(o.spki).digest('hex') })), labels },
        });
        out(`module '${label}': ${threshold} of ${officers.length} officers (${officers.map((o) => o.name).join(', ')}) approve its overrides\ntranscript ${t.path}`);
        return 0;
      }
      case 'approval-request': {
        const label = required(values.label, 'label');
        const accept = required(values['accept-checkpoint'], 'accept-checkpoint');
        const module = await CryptoModule.start({
          library: lib, hsm: config.hsm,
          module: { tokenLabel: label, userPin: pin(env, 'PKCS11_USER_PIN', label, DEV_USER_PIN), userType: config.hsm.modules[0].userType },
        });
        try {
          // reads the ring and the inhibition from the token; writes nothing
          const engine = await PsdEngine.start({ hsm: module, ringSize: config.hsm.ringSize });
          const statement = reinstatementStatement(engine, acceptedCheckpoint(accept));
          const text = JSON.stringify(statement, null, 2) + '\n';
          if (values.out) writeFileSync(values.out, text);
          out(values.out ? `statement written to ${values.out}` : text.trimEnd());
        } finally {
          await module.close();
        }
        return 0;
      }
      case 'approve': {
        const label = required(values.label, 'label');
        const officer = required(values.officer, 'officer');
        const statement = JSON.parse(readFileSync(required(values.request, 'request'), 'utf8')) as ReinstatementStatement;
        if (statement.action !== 'reinstate' || typeof statement.moduleSerial !== 'string') throw vbiError('BAD_REQUEST', 'the request is not a reinstatement statement');
        const approval = await signApproval({ library: lib, label, userPin: pin(env, 'PKCS11_USER_PIN', label, DEV_USER_PIN), officer, statement });
        const text = JSON.stringify(approval, null, 2) + '\n';
        if (values.out) writeFileSync(values.out, text);
        out(values.out ? `approval of ${officer} written to ${values.out}` : text.trimEnd());
        return 0;
      }
      case 'ca-init':
      case 'ca-rollover': {
        const label = required(values.label, 'label');
        const officer = required(values.officer, 'officer');
        const token = {
          library: lib, tokenLabel: label,
          soPin: pin(env, 'VBI_SO_PIN', label, DEV_SO_PIN), userPin: pin(env, 'PKCS11_USER_PIN', label, DEV_USER_PIN),
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
      case 'vendor-ra': {
        const label = required(values.label, 'label');
        const officer = required(values.officer, 'officer');
        const raId = required(values['ra-id'], 'ra-id');
        const key = await createVendorRaKey({
          library: lib, tokenLabel: label,
          soPin: pin(env, 'VBI_SO_PIN', label, DEV_SO_PIN), userPin: pin(env, 'PKCS11_USER_PIN', label, DEV_USER_PIN),
        });
        const file = values.out ?? join(config.varDir, 'pki', `${raId}.pub.pem`);
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, toPem('PUBLIC KEY', key.publicKeySpki));
        const fingerprint = createHash('sha256').update(key.publicKeySpki).digest('hex');
        const t = writeTranscript(transcriptDir, {
          ceremony: 'vendor-ra', officer, library: lib.path, tokens: [{ label, serial: serialOf(lib, label) }],
          keys: keyLines(label, await signingKeyReport({ library: lib, label, userPin: pin(env, 'PKCS11_USER_PIN', label, DEV_USER_PIN) })),
          result: { raKeyId: raId, keyLabel: key.keyLabel, publicKeyFile: file, spkiSha256: fingerprint },
        });
        out(`vendor RA key ${key.keyLabel} in '${label}'; public key ${file}\nSPKI-SHA256 ${fingerprint} (read it to the CA operator)\ntranscript ${t.path}`);
        return 0;
      }
      case 'ca-register-ra': {
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
      default:
        out(USAGE);
        return 2;
    }
  } finally {
    await closeLibrary(lib);
  }
}

/** The module serial the service will use for this token (token serial or identity key, per profile). */
function serialOf(lib: LibraryHandle, label: string): string {
  return moduleSerial(lib, label) ?? '(none yet)';
}

function formatKeys(label: string, serial: string, keys: KeyReport[]): string {
  const lines = [`token '${label}' serial ${serial}`];
  for (const k of keys) {
    const check = k.kcv ? `KCV ${k.kcv}` : k.spkiSha256 ? `SPKI-SHA256 ${k.spkiSha256}` : '';
    const weak = k.weaknesses.length ? `  WEAK: ${k.weaknesses.join('; ')}` : '';
    lines.push(`  ${k.label.padEnd(24)} ${k.class.padEnd(7)} ${k.keyType.padEnd(6)} ${check}${weak}`);
  }
  return lines.join('\n');
}

if (require.main === module) {
  runCeremony(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(isVbiError(e) ? `${e.code}: ${e.message}\n` : `${(e as Error).stack}\n`);
      process.exit(1);
    },
  );
}
