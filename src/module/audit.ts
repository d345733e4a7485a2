import { HsmModule } from '../hsm/hsm-module';
import { canonicalJson } from '../protocol/canonical-json';

/**
 * Audit records the module emits about itself: discarded transactions after auto-recovery,
 * inhibition, reinstatement. Each is signed with the module identity key (ECDSA P-256 over
 * SHA-256 of the canonical JSON of every other field), so a record cannot be forged or edited
 * by whoever holds the database.
 */
export type AuditKind = 'checkpoint-discarded' | 'module-inhibited' | 'module-reinstated';

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
