import type { Knex } from 'knex';
import { AuditRecord, AuditSink } from '../module/audit';

/** Stores the modules' signed audit records (roll-forward, stale packages, inhibition, reinstatement). */
export function databaseAuditSink(db: Knex): AuditSink {
  return async (r: AuditRecord) => {
    await db('audit_log').insert({ kind: r.kind, module_serial: r.moduleSerial, at: r.at, record: JSON.stringify(r) });
  };
}

export async function auditRecords(db: Knex, filter: { moduleSerial?: string } = {}): Promise<AuditRecord[]> {
  const q = db('audit_log').orderBy('audit_id');
  if (filter.moduleSerial) q.where({ module_serial: filter.moduleSerial });
  return (await q.select('record')).map((r: { record: AuditRecord }) => r.record);
}
