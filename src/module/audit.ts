import { HsmModule } from '../hsm/hsm-module';

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

/** JSON with object keys sorted, so the signed bytes do not depend on insertion order. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

export async function signedAudit(hsm: HsmModule, rec: Omit<AuditRecord, 'signature' | 'moduleSerial'>): Promise<AuditRecord> {
  const unsigned = { ...rec, moduleSerial: hsm.serial };
  const signature = await hsm.identitySign(Buffer.from(canonicalJson(unsigned), 'utf8'));
  return { ...unsigned, signature: signature.toString('base64') };
}
