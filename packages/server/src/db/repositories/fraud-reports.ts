import type { Knex } from 'knex';

/** The fraud_reports table: fraud cases (duplicates with both sightings). */
export interface FraudReportRow {
  fraud_report_id: string | number;
  kind: string;
  meter_id: string;
  indicium_digest: Buffer | null;
  details: unknown;
  reported_at: Date;
}

/** The newest 200 fraud cases, newest first; one meter's with `meterId`. */
export async function listFraudReports(db: Knex, meterId?: string): Promise<FraudReportRow[]> {
  const q = db('fraud_reports').orderBy('fraud_report_id', 'desc').limit(200)
    .select('fraud_report_id', 'kind', 'meter_id', 'indicium_digest', 'details', 'reported_at');
  if (meterId) q.where({ meter_id: meterId });
  return q;
}

/** Opens a fraud case. */
export async function insertFraudReport(db: Knex, row: { kind: string; meterId: string; indiciumDigest: Buffer; details: Record<string, unknown> }): Promise<void> {
  await db('fraud_reports').insert({ kind: row.kind, meter_id: row.meterId, indicium_digest: row.indiciumDigest, details: row.details });
}

/** The details of a meter's cases of `kind` reported at or after `since`. */
export async function fraudReportDetailsSince<D>(db: Knex, meterId: string, kind: string, since: Date): Promise<Array<{ details: D }>> {
  return db('fraud_reports').where({ meter_id: meterId, kind }).andWhere('reported_at', '>=', since).select('details');
}
