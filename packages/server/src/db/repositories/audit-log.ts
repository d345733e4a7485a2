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

/** The record of the module's chain (of one `kind` with it) with the highest sequence number, as stored. */
export async function lastChainedAuditRecord<R>(db: Knex, moduleSerial: string, kind?: string): Promise<R | null> {
  const row = await db('audit_log').where({ module_serial: moduleSerial, ...(kind !== undefined ? { kind } : {}) }).whereNotNull('seq').orderBy('seq', 'desc').first('record');
  return row ? (row.record as R) : null;
}

export async function insertAuditRecord(db: Knex, r: { kind: string; moduleSerial: string; at: string | Date; seq: number | null | undefined; record: string }): Promise<void> {
  await db('audit_log').insert({ kind: r.kind, module_serial: r.moduleSerial, at: r.at, seq: r.seq, record: r.record });
}

/** The stored records of one kind, in the order they were written. */
export async function auditRecordsOfKind<R>(db: Knex, kind: string): Promise<Array<{ record: R }>> {
  return db('audit_log').where({ kind }).orderBy('audit_id').select('record');
}

/** The records of the modules' chains (with a sequence number), by module and sequence number. */
export async function chainedAuditRecords<R>(db: Knex): Promise<Array<{ module_serial: string; seq: number | string; record: R }>> {
  return db('audit_log').whereNotNull('seq').orderBy([{ column: 'module_serial' }, { column: 'seq' }])
    .select('module_serial', 'seq', 'record');
}

/** Every stored record (of one module with `moduleSerial`) in the order it was written. */
export async function auditRecordsInOrder<R>(db: Knex, moduleSerial?: string): Promise<R[]> {
  const q = db('audit_log').orderBy('audit_id');
  if (moduleSerial) q.where({ module_serial: moduleSerial });
  return (await q.select('record')).map((r: { record: R }) => r.record);
}

/** Every row of the audit log in the order it was written, columns and record as stored. */
export interface AuditLogVerifyRow { audit_id: number; kind: string; module_serial: string; at: Date; seq: number | null; record: unknown }

export async function auditLogRows(db: Knex): Promise<AuditLogVerifyRow[]> {
  return db('audit_log').orderBy('audit_id').select('audit_id', 'kind', 'module_serial', 'at', 'seq', 'record');
}

/** Per module, the highest sequence number of its stored chain. */
export async function newestAuditSeqs(db: Knex): Promise<Array<{ module_serial: string; seq: number | string }>> {
  return db('audit_log').whereNotNull('seq').groupBy('module_serial').select('module_serial', db.raw('max(seq) AS seq'));
}
