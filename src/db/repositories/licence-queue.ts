import type { Knex } from 'knex';

/**
 * The licence queue: license_requests, licence_revocation_reports and licence_events_unmatched
 * (docs/licensing.md).
 */

/** A licence request with its revocation report, if any (GET /v1/operator/licence-requests). */
export interface LicenceRequestReportRow {
  request_id: string | number;
  account_id: string | number;
  meter_id: string;
  licensing_zip: string;
  status: string;
  licence_id: string | null;
  reason: string | null;
  authority_ref: string | null;
  attempts: number;
  last_error: string | null;
  created_at: Date | null;
  completed_at: Date | null;
  last_attempt_at: Date | null;
  decided_at: Date | null;
  revoked_at: Date | null;
  report_status: string | null;
  report_attempts: number | null;
  report_error: string | null;
  reported_at: Date | null;
}

/** The newest 200 licence requests with their revocation reports; one state's, one meter's. */
export async function listLicenceRequests(db: Knex, filter: { status?: string; meterId?: string }): Promise<LicenceRequestReportRow[]> {
  const q = db('license_requests as l').leftJoin('licence_revocation_reports as r', 'r.meter_id', 'l.meter_id').orderBy('l.request_id', 'desc').limit(200)
    .select('l.request_id', 'l.account_id', 'l.meter_id', 'l.licensing_zip', 'l.status', 'l.licence_id', 'l.reason', 'l.authority_ref', 'l.attempts', 'l.last_error',
      'l.created_at', 'l.completed_at', 'l.last_attempt_at', 'l.decided_at', 'l.revoked_at',
      'r.status as report_status', 'r.attempts as report_attempts', 'r.last_error as report_error', 'r.reported_at');
  if (filter.status) q.where({ 'l.status': filter.status });
  if (filter.meterId) q.where({ 'l.meter_id': filter.meterId });
  return q;
}

export interface UnmatchedLicenceEventRow {
  authority: string;
  licence_id: string;
  reason: string | null;
  revoked_at: Date;
  received_at: Date;
}

/** The newest 200 licence events that name no licence request, newest first. */
export async function listUnmatchedLicenceEvents(db: Knex): Promise<UnmatchedLicenceEventRow[]> {
  return db('licence_events_unmatched').orderBy('received_at', 'desc').limit(200).select('authority', 'licence_id', 'reason', 'revoked_at', 'received_at');
}
