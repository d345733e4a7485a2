import { HsmModule } from '../hsm/hsm-module';
import { canonicalJson } from '../protocol/canonical-json';

/**
 * Audit records the module emits about itself: a ring rolled forward after a crash, a stale
 * package refused, inhibition, reinstatement. Each is signed with the module identity key (ECDSA P-256 over
 * SHA-256 of the canonical JSON of every other field), so a record cannot be forged or edited
 * by whoever holds the database.
 */
export type AuditKind =
  | 'checkpoint-rolled-forward' | 'package-stale' | 'package-invalid' | 'module-inhibited' | 'module-reinstated'
  /** Written by versions before the meter map (auto-discard); still listed by verify-journal. */
  | 'checkpoint-discarded';

export interface AuditRecord {
  kind: AuditKind;
  moduleSerial: string;
  at: string;
  reason: string;
  details: Record<string, unknown>;
  /** base64 raw r||s over SHA-256(canonicalJson(record without signature)). */
  signature: string;
}

export type AuditSink = (record: AuditRecord) => void | Promise<void>;

export { canonicalJson };

export async function signedAudit(hsm: HsmModule, rec: Omit<AuditRecord, 'signature' | 'moduleSerial'>): Promise<AuditRecord> {
  const unsigned = { ...rec, moduleSerial: hsm.serial };
  const signature = await hsm.identitySign(Buffer.from(canonicalJson(unsigned), 'utf8'));
  return { ...unsigned, signature: signature.toString('base64') };
}
