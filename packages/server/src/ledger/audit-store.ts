import type { Knex } from 'knex';
import { AuditRecord } from '../module/audit';
import { AuditStore } from '../module/audit-chain';
import { auditRecordsInOrder, insertAuditRecord, lastChainedAuditRecord } from '../db/repositories/audit-log';

/**
 * The modules' signed audit chains in PostgreSQL (table audit_log): the record as signed in
 * `record`, its kind, module, time and sequence number in columns for queries. Nothing here is
 * trusted: `npm run audit -- verify` (packages/server/src/ledger/audit-verify.ts) checks every record against its
 * signature, its chain and the token's head.
 */
export function pgAuditStore(db: Knex): AuditStore {
  return {
    async last(moduleSerial) {
      return lastChainedAuditRecord<AuditRecord>(db, moduleSerial);
    },
    async insert(r) {
      await insertAuditRecord(db, { kind: r.kind, moduleSerial: r.moduleSerial, at: r.at, seq: r.seq, record: JSON.stringify(r) });
    },
  };
}

/** Every stored record in the order it was written (verify-journal lists them; audit-verify checks them). */
export async function auditRecords(db: Knex, filter: { moduleSerial?: string } = {}): Promise<AuditRecord[]> {
  return auditRecordsInOrder<AuditRecord>(db, filter.moduleSerial);
}
