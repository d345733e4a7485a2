import type { Knex } from 'knex';
import { AuditRecord } from '../module/audit';
import { AuditStore } from '../module/audit-chain';

/**
 * The modules' signed audit chains in PostgreSQL (table audit_log): the record as signed in
 * `record`, its kind, module, time and sequence number in columns for queries. Nothing here is
 * trusted: `npm run audit -- verify` (src/ledger/audit-verify.ts) checks every record against its
 * signature, its chain and the token's head.
 */
export function pgAuditStore(db: Knex): AuditStore {
  return {
    async last(moduleSerial) {
      const row = await db('audit_log').where({ module_serial: moduleSerial }).whereNotNull('seq').orderBy('seq', 'desc').first('record');
      return row ? (row.record as AuditRecord) : null;
    },
    async insert(r) {
      await db('audit_log').insert({ kind: r.kind, module_serial: r.moduleSerial, at: r.at, seq: r.seq, record: JSON.stringify(r) });
    },
  };
}

/** Every stored record in the order it was written (verify-journal lists them; audit-verify checks them). */
export async function auditRecords(db: Knex, filter: { moduleSerial?: string } = {}): Promise<AuditRecord[]> {
  const q = db('audit_log').orderBy('audit_id');
  if (filter.moduleSerial) q.where({ module_serial: filter.moduleSerial });
  return (await q.select('record')).map((r: { record: AuditRecord }) => r.record);
}
