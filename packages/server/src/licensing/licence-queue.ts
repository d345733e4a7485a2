import type { Knex } from 'knex';
import { isVbiError } from '@vbi/core/errors';
import { decidePendingRequest, licenceApplicationRow, noteFailedAttempt, notePendingAttempt, pendingLicenceRequestIds } from '../db/repositories/licence-queue';
import { Ledger } from '../ledger/ledger';
import { checkedDecision, LicenceApplication, LicenceDecision, LicensingAuthority } from './licensing-authority';

/** Where a licence request stands (the license_requests row; docs/licensing.md). */
export type LicenceRequestStatus = 'registering' | 'pending' | 'licensed' | 'refused' | 'revoked';

/** What the mailer is told after registration step 1c, and what a pass did with one request. */
export interface LicenceOutcome {
  status: LicenceRequestStatus;
  licenceId?: string;
  reason?: string;
}

const REASON_MAX = 500;

/**
 * The licence request queue (docs/licensing.md): the license_requests rows in state `pending`
 * go to the licensing authority; an approval becomes the module's `license` command (the package
 * is the authority on the licence: Ledger.license writes the row in the same transaction), a
 * refusal is recorded on the row, a request still under review or a failed link stays pending
 * for the next pass. The mailer's service processes a request right after registration step 1c
 * commits; the server's licensing pass retries the pending ones.
 */
export class LicenceQueue {
  private readonly running = new Map<number, Promise<LicenceOutcome>>();

  constructor(private readonly opts: { ledger: Ledger; authority: LicensingAuthority; log?: (line: string) => void }) {}

  private get db(): Knex {
    return this.opts.ledger.db;
  }

  /**
   * Submits one request (if it is pending) and acts on the answer; returns where it stands
   * afterwards. A request already being processed in this process is not submitted twice: the
   * second caller waits for the first's outcome.
   */
  process(requestId: number): Promise<LicenceOutcome> {
    let p = this.running.get(requestId);
    if (!p) {
      p = this.processOnce(requestId).finally(() => this.running.delete(requestId));
      this.running.set(requestId, p);
    }
    return p;
  }

  /**
   * The licensing pass: pending requests of meters that are not closed, least recently tried
   * first, at most `limit`. Returns how many ended in each state.
   */
  async pass(limit = 200): Promise<{ licensed: number; refused: number; pending: number }> {
    const rows = await pendingLicenceRequestIds(this.db, limit);
    const counts = { licensed: 0, refused: 0, pending: 0 };
    for (const r of rows) {
      const out = await this.process(Number(r.request_id));
      if (out.status === 'licensed' || out.status === 'refused' || out.status === 'pending') counts[out.status]++;
    }
    return counts;
  }

  private async processOnce(requestId: number): Promise<LicenceOutcome> {
    const row = await this.row(requestId);
    if (!row) return { status: 'refused', reason: `no licence request ${requestId}` };
    if (row.status !== 'pending') return outcomeOf(row);
    const application: LicenceApplication = {
      requestId, meterId: row.meter_id, certSerial: row.cert_serial ?? '', accountName: row.name, returnAddress: row.return_address ?? [],
      licensingZip: String(row.licensing_zip), registeredAt: row.completed_at?.toISOString() ?? '',
    };
    let decision: LicenceDecision;
    try {
      decision = checkedDecision(await this.opts.authority.submit(application));
    } catch (e) {
      return this.leavePending(requestId, `${this.opts.authority.name}: ${(e as Error).message}`);
    }
    if (decision.status === 'pending') {
      await notePendingAttempt(this.db, requestId, decision.authorityRef ?? null);
      return { status: 'pending' };
    }
    if (decision.status === 'refused') return this.decide(requestId, 'refused', decision.reason);
    try {
      await this.opts.ledger.license({ meterId: row.meter_id, licenceId: decision.licenceId, licensingZip: String(row.licensing_zip), requestId });
      this.opts.log?.(`licence: meter ${row.meter_id} licensed by ${this.opts.authority.name}: ${decision.licenceId}`);
      return { status: 'licensed', licenceId: decision.licenceId };
    } catch (e) {
      // ours (no module, the database): the authority is asked again at the next pass, and answers the same
      if (!isVbiError(e) || e.kind !== 'user') return this.leavePending(requestId, `licence ${decision.licenceId} not applied yet: ${(e as Error).message}`);
      if (e.code === 'ALREADY_LICENSED') return this.decide(requestId, 'licensed', `the package was already licensed; licence ${decision.licenceId} of the authority not recorded in it`);
      // the meter cannot take it (closed, revoked, another licensing ZIP, the request no longer pending)
      return this.decide(requestId, 'refused', `approved by the authority as ${decision.licenceId} but not applied: ${e.code}: ${e.message}`);
    }
  }

  private async row(requestId: number) {
    return licenceApplicationRow(this.db, requestId);
  }

  /** A final answer on a request that is still pending (a revocation in between wins). */
  private async decide(requestId: number, status: 'refused' | 'licensed', reason: string): Promise<LicenceOutcome> {
    const n = await decidePendingRequest(this.db, requestId, status, reason.slice(0, REASON_MAX));
    if (n === 0) return outcomeOf(await this.row(requestId));
    this.opts.log?.(`licence request ${requestId}: ${status}: ${reason}`);
    return { status, reason: reason.slice(0, REASON_MAX) };
  }

  private async leavePending(requestId: number, error: string): Promise<LicenceOutcome> {
    await noteFailedAttempt(this.db, requestId, error.slice(0, REASON_MAX));
    this.opts.log?.(`licence request ${requestId}: left for the next licensing pass: ${error}`);
    return { status: 'pending' };
  }
}

function outcomeOf(row: { status: LicenceRequestStatus; licence_id: string | null; reason: string | null } | undefined): LicenceOutcome {
  if (!row) return { status: 'refused', reason: 'no such licence request' };
  return { status: row.status, ...(row.licence_id ? { licenceId: row.licence_id } : {}), ...(row.reason ? { reason: row.reason } : {}) };
}
