import type { Knex } from 'knex';

/** The audit_log table: the modules' signed audit records. */
export interface AuditLogRow {
  audit_id: string | number;
  kind: string;
  module_serial: string;
  at: Date;
  record: Record<string, unknown> & { seq?: number };
}

/** The newest `limit` audit records, newest first. */
export async function newestAuditRecords(db: Knex, limit: number): Promise<AuditLogRow[]> {
  return db('audit_log').orderBy('audit_id', 'desc').limit(limit)
    .select('audit_id', 'kind', 'module_serial', 'at', 'record');
}
