import type { Knex } from 'knex';
import { dueRevocationReports, noteRevocationReportAttempt } from '../db/repositories/licence-queue';
import { LicenceUnknownError, LicensingAuthority } from './licensing-authority';

const ERROR_MAX = 500;

/**
 * Revocations reported to the licensing authority (docs/licensing.md, "Revocation"): the
 * licence_revocation_reports rows in state `due`, written by Ledger.revokeLicence in the
 * revocation's own transaction, go to the authority at each licensing pass. A report the authority
 * recorded becomes `reported`; any failure leaves it due for the next pass (the authority files a
 * repeated report once: it is idempotent on the licence number). A report of a licence the
 * authority says it does not have (LicenceUnknownError: e.g. a licence of another authority, from
 * before a switch of adapter) becomes `unknown` and is not sent again; the operator sees it.
 */
export class RevocationReports {
  constructor(private readonly opts: { db: Knex; authority: LicensingAuthority; log?: (line: string) => void }) {}

  /** Reports the due revocations, least recently tried first, at most `limit`. */
  async pass(limit = 200): Promise<{ reported: number; unreported: number; unknown: number }> {
    const db = this.opts.db;
    const rows = await dueRevocationReports(db, limit);
    const counts = { reported: 0, unreported: 0, unknown: 0 };
    for (const r of rows) {
      try {
        await this.opts.authority.reportRevocation({ meterId: r.meter_id, licenceId: r.licence_id, reason: r.reason, revokedAt: r.revoked_at.toISOString() });
      } catch (e) {
        const error = `${this.opts.authority.name}: ${(e as Error).message}`.slice(0, ERROR_MAX);
        if (e instanceof LicenceUnknownError) {
          await noteRevocationReportAttempt(db, r.meter_id, 'unknown', error);
          this.opts.log?.(`licence revocation of meter ${r.meter_id} (${r.licence_id}): the authority has no such licence; not sent again: ${error}`);
          counts.unknown++;
          continue;
        }
        await noteRevocationReportAttempt(db, r.meter_id, 'failed', error);
        this.opts.log?.(`licence revocation of meter ${r.meter_id} (${r.licence_id}): not reported, left for the next licensing pass: ${error}`);
        counts.unreported++;
        continue;
      }
      await noteRevocationReportAttempt(db, r.meter_id, 'reported', null);
      this.opts.log?.(`licence revocation of meter ${r.meter_id} (${r.licence_id}) reported to ${this.opts.authority.name}`);
      counts.reported++;
    }
    return counts;
  }
}
