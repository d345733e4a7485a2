import { vbiError } from '@vbi/core/errors';
import { verifyOfficerApprovals, type ModuleToken } from '../module/module-token';
import { canonicalJson } from '@vbi/core/protocol/canonical-json';

/**
 * Officer approvals (docs/key-ceremony.md): an action that overrides what the module itself
 * decided — today the reinstatement that accepts the database's state and lifts an inhibition —
 * needs a statement signed by M of the N officers the module's Security Officer installed in the
 * module token. The module token verifies the signatures with those trusted keys; the service's
 * own PIN gives no way to add an approver, so it alone cannot approve anything.
 *
 * A statement names the module, the checkpoint row it accepts and the inhibition it lifts (the
 * time the module recorded it in its token), so an approval cannot be replayed for another
 * module, another database state or a later inhibition.
 */
export interface ReinstatementStatement {
  action: 'reinstate';
  moduleSerial: string;
  /** Hex of the module row's checkpoint the officers accept, or null for none. */
  acceptCheckpoint: string | null;
  /** When the inhibition being lifted began (the token's inhibit marker), or null when the module is not inhibited. */
  inhibitedAt: string | null;
}

/** One officer's approval: ECDSA P-256 over SHA-256 of the statement's canonical JSON, raw r||s, base64. */
export interface Approval {
  officer: string;
  signature: string;
}

export function statementBytes(st: ReinstatementStatement): Buffer {
  return Buffer.from(canonicalJson(st), 'utf8');
}

/** Throws OFFICER_APPROVAL_REQUIRED unless M distinct installed officers approved exactly this statement; returns who did. */
export async function requireApprovals(hsm: ModuleToken, statement: ReinstatementStatement, approvals: Approval[]): Promise<string[]> {
  const check = await verifyOfficerApprovals(hsm, {
    statement: statementBytes(statement),
    approvals: approvals.map((a) => ({ officer: String(a.officer), signature: Buffer.from(String(a.signature), 'base64') })),
  });
  if (check.threshold === null) {
    throw vbiError('OFFICER_APPROVAL_REQUIRED', `module ${hsm.serial} has no officer approval keys installed (npm run ceremony -- install-officers)`);
  }
  if (check.valid.length < check.threshold) {
    throw vbiError('OFFICER_APPROVAL_REQUIRED', `${check.valid.length} valid approval(s) of this statement, ${check.threshold} of ${check.officers.length} officers needed`, {
      statement, approvedBy: check.valid, threshold: check.threshold,
    });
  }
  return check.valid;
}
