import type { Knex } from 'knex';
import { isVbiError, UserError } from '@vbi/core/errors';
import { insertUnmatchedLicenceEvent, licenceEventCursor, meterOfLicence, saveLicenceEventCursor } from '../db/repositories/licence-queue';
import { LicensingAuthority } from './licensing-authority';

/** Pages of the feed read in one pass at most (the rest waits for the next pass). */
const PAGES_PER_PASS = 20;

/**
 * The licensing authority's own revocations (docs/licensing.md, "The authority's revocations"):
 * at each licensing pass the authority's event feed is read from the cursor kept in
 * licence_event_cursors; each revoked licence number is looked up in the licence requests and
 * its meter's licence revoked by the module's `revoke-licence` command, audited as the
 * authority's and not reported back to it. The cursor moves on only after a page is applied, so
 * a pass cut short (no answer, no module) reads the same page again: a revocation applied twice
 * is refused by the module (LICENCE_REVOKED) and counted once. A licence number no request names
 * is kept in licence_events_unmatched for the operator; one whose meter the module refuses for a
 * reason asking again would not change (a user error such as UNKNOWN_METER) is logged and
 * skipped, counted as unknown.
 */
export class AuthorityRevocations {
  constructor(private readonly opts: {
    db: Knex; authority: LicensingAuthority;
    revoke: (r: { meterId: string; reason: string }) => Promise<void>;
    log?: (line: string) => void;
  }) {}

  async pass(): Promise<{ revoked: number; unknown: number }> {
    const { db, authority } = this.opts;
    const counts = { revoked: 0, unknown: 0 };
    let cursor: string | null = await licenceEventCursor(db, authority.name);
    for (let page = 0; page < PAGES_PER_PASS; page++) {
      let events;
      try {
        events = await authority.licenceEvents(cursor);
      } catch (e) {
        this.opts.log?.(`licence events of ${authority.name}: not read, asked again at the next licensing pass: ${(e as Error).message}`);
        return counts;
      }
      for (const r of events.revocations) {
        const request = await meterOfLicence(db, r.licenceId);
        if (!request) {
          await insertUnmatchedLicenceEvent(db, { authority: authority.name, licenceId: r.licenceId, reason: r.reason, revokedAt: new Date(r.revokedAt) });
          this.opts.log?.(`licence events of ${authority.name}: licence ${r.licenceId} revoked by the authority is not one of this service's`);
          counts.unknown++;
          continue;
        }
        try {
          await this.opts.revoke({ meterId: request.meter_id, reason: r.reason });
          this.opts.log?.(`licence ${r.licenceId} of meter ${request.meter_id} revoked by the licensing authority (${authority.name}): ${r.reason}`);
          counts.revoked++;
        } catch (e) {
          // already revoked (by an operator, or by this page read before) or the meter closed: nothing to do
          if (isVbiError(e) && ['LICENCE_REVOKED', 'METER_CLOSED'].includes(e.code)) continue;
          // another refusal that asking again would not change (the meter row is gone): logged, skipped,
          // so that it does not hold back the revocations after it
          if (e instanceof UserError) {
            this.opts.log?.(`licence events of ${authority.name}: licence ${r.licenceId} of meter ${request.meter_id} cannot be revoked, skipped: ${e.code}: ${e.message}`);
            counts.unknown++;
            continue;
          }
          this.opts.log?.(`licence events of ${authority.name}: licence ${r.licenceId} of meter ${request.meter_id} not revoked yet, asked again at the next licensing pass: ${(e as Error).message}`);
          return counts;
        }
      }
      await saveLicenceEventCursor(db, authority.name, events.cursor);
      cursor = events.cursor;
      if (!events.more) break;
    }
    return counts;
  }
}
