import type { ApprovalCheck, HsmModule } from '../hsm/hsm-module';

/**
 * One module's token as the ledger's tools hold it (journal export, replay and verification,
 * conservation, officer approvals): they pass it to the module layer's functions (checkpoints,
 * packages, journal rows, the checkpoint ring, the audit chain, and the ones below) and call no
 * token operation on it themselves, so the ledger imports nothing from hsm.
 */
export type ModuleToken = HsmModule;

/** The module's MAC over a journal export's seal input (ledger/journal-export.ts). */
export function macExportSeal(token: ModuleToken, sealInput: Buffer): Promise<Buffer> {
  return token.mac(sealInput);
}

/** Whether `mac` is the module's MAC over a journal export's seal input. */
export function verifyExportSeal(token: ModuleToken, sealInput: Buffer, mac: Buffer): Promise<boolean> {
  return token.verifyMac(sealInput, mac);
}

/** The officers' approvals of a statement, checked by the module against its installed approval keys (ledger/officer-approval.ts). */
export function verifyOfficerApprovals(token: ModuleToken, req: { statement: Buffer; approvals: Array<{ officer: string; signature: Buffer }> }): Promise<ApprovalCheck> {
  return token.verifyApprovals(req);
}
