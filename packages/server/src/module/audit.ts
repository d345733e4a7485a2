import { createVerify } from 'node:crypto';
import { spkiToKeyObject } from '../hsm/public-keys';
import { canonicalJson } from '@vbi/core/protocol/canonical-json';

/**
 * Audit records: what a module reports about itself (a ring rolled forward after a crash, a
 * stale or invalid package refused, inhibition, reinstatement), what the service records at each
 * start (its configuration and the database it found), suspensions, reactivations and withdrawals
 * of meters, licence revocations, stock bought from the post as operators enter it, and breaks found in the log itself. Each
 * module keeps one chain (packages/server/src/module/audit-chain.ts): a record carries its sequence number and
 * the previous record's hash, and is signed with the module identity key (ECDSA P-256 over
 * SHA-256 of the canonical JSON of every other field), so a record cannot be forged, edited,
 * removed or moved by whoever holds the database without `npm run audit -- verify` seeing it.
 */
export type AuditKind =
  | 'checkpoint-rolled-forward' | 'package-stale' | 'package-invalid' | 'module-inhibited' | 'module-reinstated'
  | 'service-started' | 'audit-chain-broken' | 'meter-suspended' | 'meter-reactivated' | 'meter-withdrawn' | 'meter-refunded-closed' | 'pool-purchased'
  | 'meter-licence-revoked';

/** What is recorded, before the chain numbers and signs it. */
export interface AuditEvent {
  kind: AuditKind;
  at: string;
  reason: string;
  details: Record<string, unknown>;
}

export interface AuditRecord extends AuditEvent {
  moduleSerial: string;
  /** Position in this module's chain, from 1. */
  seq: number;
  /** Hex SHA-256 of the previous record of the chain (auditHash), 64 zeros for the first. */
  prevHash: string;
  /** base64 raw r||s over SHA-256(canonicalJson(record without signature)). */
  signature: string;
}

/** Receives every record a module's chain writes (the service's test hook; the store is the chain's own). */
export type AuditSink = (record: AuditRecord) => void | Promise<void>;

export { canonicalJson };

/** The record's signature verifies under the module identity key (SubjectPublicKeyInfo DER). */
export function verifyAuditSignature(rec: AuditRecord, identitySpki: Buffer): boolean {
  const { signature, ...rest } = rec;
  try {
    return createVerify('sha256').update(canonicalJson(rest), 'utf8')
      .verify({ key: spkiToKeyObject(identitySpki), dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}
