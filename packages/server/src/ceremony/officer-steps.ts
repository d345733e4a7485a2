import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { vbiError } from '@vbi/core/errors';
import { findSlotByLabel } from '../hsm/pkcs11-library';
import { proveOfficer } from '../hsm/key-ceremony';
import { CryptoModule } from '../hsm/crypto-module';
import { PsdEngine } from '../module/psd-engine';
import { openShardDatabase } from '../config/shard-database';
import { Lease, mapShardResource, moduleResource } from '../ledger/module-lease';
import { reinstateModule, reinstatementStatement } from '../ledger/reinstatement';
import type { Approval, ReinstatementStatement } from '../ledger/officer-approval';
import { checkOfficerName, installApprovers } from '../hsm/officer-keys';
import { pgAuditStore } from '../ledger/audit-store';
import { fromPem, toPem } from '@vbi/core/pki/pem';
import { createOfficerKey, signApproval } from './officers';
import { writeTranscript } from './transcript';
import { acceptedCheckpoint, required, serialOf, StepContext } from './step-context';

/** The officer-approval steps (docs/key-ceremony.md): reinstate, officer keys, approvers, statements, approvals. */

/** `reinstate`: a module the ledger inhibited is reinstated with the officers' approvals (the service stopped). */
export async function reinstate({ values, pins, out, config, lib, transcriptDir }: StepContext): Promise<number> {
  const label = required(values.label, 'label');
  const officer = required(values.officer, 'officer');
  const accept = required(values['accept-checkpoint'], 'accept-checkpoint');
  await proveOfficer(findSlotByLabel(lib, label), pins.so(label));
  const module = await CryptoModule.start({
    library: lib, hsm: config.hsm,
    module: { tokenLabel: label, userPin: pins.user(label), userType: config.hsm.modules[0].userType },
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

/** `officer-key`: an officer's approval key on their own token; its public key written to a file. */
export async function officerKey({ values, pins, out, config, lib, transcriptDir }: StepContext): Promise<number> {
  const label = required(values.label, 'label');
  const officer = checkOfficerName(required(values.officer, 'officer'));
  const spki = await createOfficerKey({
    library: lib, label, soPin: pins.so(label), userPin: pins.user(label),
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

/** `install-officers`: the module SO installs the approvers and the threshold. */
export async function installOfficers({ values, pins, out, lib, transcriptDir }: StepContext): Promise<number> {
  const label = required(values.label, 'label');
  const officer = required(values.officer, 'officer');
  const threshold = Number(required(values.threshold, 'threshold'));
  const officers = (values['officer-key'] ?? []).map((arg) => {
    const eq = arg.indexOf('=');
    if (eq < 1) throw vbiError('BAD_REQUEST', `--officer-key takes NAME=FILE, got '${arg}'`);
    return { name: arg.slice(0, eq), spki: fromPem('PUBLIC KEY', readFileSync(arg.slice(eq + 1), 'utf8')) };
  });
  const labels = await installApprovers({ library: lib, label, soPin: pins.so(label), threshold, officers });
  const t = writeTranscript(transcriptDir, {
    ceremony: 'install-officers', officer, library: lib.path, tokens: [{ label, serial: serialOf(lib, label) }],
    result: { threshold, approvers: officers.map((o) => ({ name: o.name, spkiSha256: createHash('sha256').update(o.spki).digest('hex') })), labels },
  });
  out(`module '${label}': ${threshold} of ${officers.length} officers (${officers.map((o) => o.name).join(', ')}) approve its overrides\ntranscript ${t.path}`);
  return 0;
}

/** `approval-request`: the reinstatement statement the officers approve (reads the token, writes nothing to it). */
export async function approvalRequest({ values, pins, out, config, lib }: StepContext): Promise<number> {
  const label = required(values.label, 'label');
  const accept = required(values['accept-checkpoint'], 'accept-checkpoint');
  const module = await CryptoModule.start({
    library: lib, hsm: config.hsm,
    module: { tokenLabel: label, userPin: pins.user(label), userType: config.hsm.modules[0].userType },
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

/** `approve`: one officer's approval of a statement, signed on their token. */
export async function approve({ values, pins, out, lib }: StepContext): Promise<number> {
  const label = required(values.label, 'label');
  const officer = required(values.officer, 'officer');
  const statement = JSON.parse(readFileSync(required(values.request, 'request'), 'utf8')) as ReinstatementStatement;
  if (statement.action !== 'reinstate' || typeof statement.moduleSerial !== 'string') throw vbiError('BAD_REQUEST', 'the request is not a reinstatement statement');
  const approval = await signApproval({ library: lib, label, userPin: pins.user(label), officer, statement });
  const text = JSON.stringify(approval, null, 2) + '\n';
  if (values.out) writeFileSync(values.out, text);
  out(values.out ? `approval of ${officer} written to ${values.out}` : text.trimEnd());
  return 0;
}
