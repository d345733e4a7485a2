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

/** Pending requests of meters that are not closed, least recently tried first, at most `limit`. */
export async function pendingLicenceRequestIds(db: Knex, limit: number): Promise<Array<{ request_id: number | string }>> {
  return db('license_requests as r').join('meters as m', 'm.meter_id', 'r.meter_id')
    .where('r.status', 'pending').whereNot('m.state', 'closed')
    .orderByRaw('r.last_attempt_at ASC NULLS FIRST, r.request_id ASC').limit(limit).select('r.request_id');
}

/** A licence request with its account's name and return address and its meter's certificate serial. */
export interface LicenceApplicationRow {
  request_id: number | string;
  meter_id: string;
  status: 'registering' | 'pending' | 'licensed' | 'refused' | 'revoked';
  licensing_zip: string | number;
  completed_at: Date | null;
  licence_id: string | null;
  reason: string | null;
  name: string;
  return_address: string[] | null;
  cert_serial: string | null;
}

export async function licenceApplicationRow(db: Knex, requestId: number): Promise<LicenceApplicationRow | undefined> {
  return db('license_requests as r').join('accounts as a', 'a.account_id', 'r.account_id').leftJoin('meters as m', 'm.meter_id', 'r.meter_id')
    .where('r.request_id', requestId)
    .first('r.request_id', 'r.meter_id', 'r.status', 'r.licensing_zip', 'r.completed_at', 'r.licence_id', 'r.reason', 'a.name', 'a.return_address', 'm.cert_serial');
}

/** One more attempt on a request still pending (the authority still reviewing it). */
export async function notePendingAttempt(db: Knex, requestId: number, authorityRef: string | null): Promise<number> {
  return db('license_requests').where({ request_id: requestId, status: 'pending' }).update({
    attempts: db.raw('attempts + 1'), last_attempt_at: db.fn.now(), authority_ref: authorityRef, last_error: null,
  });
}

/** A final answer on a request still pending; the rows updated (0: it was no longer pending). */
export async function decidePendingRequest(db: Knex, requestId: number, status: 'refused' | 'licensed', reason: string): Promise<number> {
  return db('license_requests').where({ request_id: requestId, status: 'pending' }).update({
    status, reason, decided_at: db.fn.now(), attempts: db.raw('attempts + 1'), last_attempt_at: db.fn.now(), last_error: null,
  });
}

/** One more failed attempt on a request still pending. */
export async function noteFailedAttempt(db: Knex, requestId: number, error: string): Promise<number> {
  return db('license_requests').where({ request_id: requestId, status: 'pending' }).update({
    attempts: db.raw('attempts + 1'), last_attempt_at: db.fn.now(), last_error: error,
  });
}

/** The revocation reports due, least recently tried first, at most `limit`. */
export async function dueRevocationReports(db: Knex, limit: number): Promise<Array<{ meter_id: string; licence_id: string; reason: string; revoked_at: Date }>> {
  return db('licence_revocation_reports').where({ status: 'due' })
    .orderByRaw('last_attempt_at ASC NULLS FIRST, meter_id ASC').limit(limit).select('meter_id', 'licence_id', 'reason', 'revoked_at');
}

/**
 * The outcome of an attempt to report a meter's due revocation: `reported`, `unknown` to the
 * authority (not sent again), or `failed` (still due, with the error).
 */
export async function noteRevocationReportAttempt(db: Knex, meterId: string, outcome: 'reported' | 'unknown' | 'failed', error: string | null): Promise<number> {
  const due = db('licence_revocation_reports').where({ meter_id: meterId, status: 'due' });
  if (outcome === 'unknown') return due.update({ status: 'unknown', attempts: db.raw('attempts + 1'), last_attempt_at: db.fn.now(), last_error: error });
  if (outcome === 'failed') return due.update({ attempts: db.raw('attempts + 1'), last_attempt_at: db.fn.now(), last_error: error });
  return due.update({ status: 'reported', reported_at: db.fn.now(), attempts: db.raw('attempts + 1'), last_attempt_at: db.fn.now(), last_error: null });
}

/** Where the authority's event feed was read up to; null before the first page. */
export async function licenceEventCursor(db: Knex, authority: string): Promise<string | null> {
  return (await db('licence_event_cursors').where({ authority }).first('cursor'))?.cursor ?? null;
}

export async function saveLicenceEventCursor(db: Knex, authority: string, cursor: string): Promise<void> {
  await db('licence_event_cursors').insert({ authority, cursor, updated_at: db.fn.now() })
    .onConflict('authority').merge(['cursor', 'updated_at']);
}

/** The meter of the newest licence request that names `licenceId`. */
export async function meterOfLicence(db: Knex, licenceId: string): Promise<{ meter_id: string } | undefined> {
  return db('license_requests').where({ licence_id: licenceId }).orderBy('request_id', 'desc').first('meter_id');
}

/** Keeps a revoked licence no request names (once per authority and licence). */
export async function insertUnmatchedLicenceEvent(db: Knex, row: { authority: string; licenceId: string; reason: string; revokedAt: Date }): Promise<void> {
  await db('licence_events_unmatched').insert({ authority: row.authority, licence_id: row.licenceId, reason: row.reason, revoked_at: row.revokedAt })
    .onConflict(['authority', 'licence_id']).ignore();
}

/** Registration step 1a's licence request (status registering); its id. */
export async function insertLicenceRequest(db: Knex, row: { accountId: number; meterId: string; licensingZip: string; tokenHash: Buffer }): Promise<number> {
  const [inserted] = await db('license_requests').insert({
    account_id: row.accountId, meter_id: row.meterId, licensing_zip: row.licensingZip, token_hash: row.tokenHash,
  }).returning('request_id');
  return inserted.request_id;
}

/** The meter's registration not completed yet whose token hashes to `tokenHash`, locked (FOR UPDATE). */
export async function lockOpenRegistration(trx: Knex.Transaction, meterId: string, tokenHash: Buffer): Promise<{ request_id: number } | undefined> {
  return trx('license_requests').where({ meter_id: meterId, token_hash: tokenHash })
    .whereNull('completed_at').forUpdate().first('request_id');
}

/** Registration completed at `at`: the licence request is pending at the authority from now on. */
export async function completeRegistration(trx: Knex.Transaction, requestId: number, at: Date): Promise<void> {
  await trx('license_requests').where({ request_id: requestId }).update({ completed_at: at, status: 'pending' });
}

/** The meter's licence request's status, the row locked (FOR UPDATE). */
export async function lockLicenceRequestStatus(trx: Knex.Transaction, requestId: number, meterId: string): Promise<{ status: string } | undefined> {
  return trx('license_requests').where({ request_id: requestId, meter_id: meterId }).forUpdate().first('status');
}

/** The request licensed at `at` with the authority's licence number. */
export async function markLicensed(trx: Knex.Transaction, requestId: number, licenceId: string, at: Date): Promise<void> {
  await trx('license_requests').where({ request_id: requestId }).update({ status: 'licensed', licence_id: licenceId, decided_at: at, reason: null, last_error: null });
}

/** The meter's open or granted licence requests revoked at `at`. */
export async function revokeLicenceRequests(trx: Knex.Transaction, meterId: string, at: Date, reason: string): Promise<void> {
  await trx('license_requests').where({ meter_id: meterId }).whereIn('status', ['registering', 'pending', 'licensed'])
    .update({ status: 'revoked', revoked_at: at, reason });
}

/** A revocation due for reporting to the licensing authority. */
export async function insertRevocationReport(trx: Knex.Transaction, row: RevocationReport): Promise<void> {
  await revocationReportInsert(trx, row);
}

/** A revocation due for reporting, unless the meter has one (a replayed revocation's). */
export async function insertRevocationReportOnce(trx: Knex.Transaction, row: RevocationReport): Promise<void> {
  await revocationReportInsert(trx, row).onConflict('meter_id').ignore();
}

interface RevocationReport { meterId: string; licenceId: string; reason: string; revokedAt: Date }

function revocationReportInsert(trx: Knex.Transaction, row: RevocationReport): Knex.QueryBuilder {
  return trx('licence_revocation_reports').insert({ meter_id: row.meterId, licence_id: row.licenceId, reason: row.reason, revoked_at: row.revokedAt });
}
