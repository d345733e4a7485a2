import type { Knex } from 'knex';
import { fraudReportDetailsSince, insertFraudReport } from '../db/repositories/fraud-reports';
import { DuplicateEvent } from '@vbi/core/indicium/verify';

/**
 * When a duplicate is reason enough to suspend the meter (docs/indicium.md "Sightings and fraud
 * cases"). A label seen again at the plant that saw it first is most often the same piece read
 * twice (a sorter's second pass), so suspension waits for `duplicates` duplicate sightings of the
 * meter's indicia within `windowHours`, seen at `plants` different plants or more.
 */
export interface SuspensionPolicy {
  duplicates: number;
  plants: number;
  windowHours: number;
}

export const DEFAULT_SUSPENSION_POLICY: SuspensionPolicy = { duplicates: 2, plants: 2, windowHours: 720 };

/**
 * The verifier's onDuplicate policy: every duplicate opens a fraud case (fraud_reports, with both
 * sightings), then the meter is suspended (WO 99/41690: on "the same evidence of payment more
 * than one time" the server disables the descending register and reports) when
 *  - two different signed indicia carry the same piece number (`duplicate_piece_number`): only
 *    the meter's own key makes such a pair, so it is suspended at once; or
 *  - its duplicate sightings (`duplicate_indicium`) within the window reach the policy's count
 *    and were seen at enough different plants.
 * The case is written first so that a failing suspension still leaves the evidence.
 */
export function fraudReportPolicy(deps: {
  knex: Knex;
  suspendMeter?: (req: { meterId: string; reason: string }) => Promise<void>;
  policy?: SuspensionPolicy;
  clock?: () => Date;
}): (event: DuplicateEvent) => Promise<void> {
  const policy = deps.policy ?? DEFAULT_SUSPENSION_POLICY;
  const clock = deps.clock ?? (() => new Date());
  return async (event) => {
    const meterId = event.fields.meterId;
    const kind = event.firstSeen.otherIndicium ? 'duplicate_piece_number' : 'duplicate_indicium';
    await insertFraudReport(deps.knex, {
      kind,
      meterId,
      indiciumDigest: event.digest,
      details: {
        sequence: event.fields.sequence,
        postage: event.fields.postage,
        dateOfMailing: event.fields.dateOfMailing,
        firstSeen: sightingView(event.firstSeen),
        seenAgain: sightingView(event.scan),
      },
    });
    if (!deps.suspendMeter) return;
    if (kind === 'duplicate_piece_number') {
      await deps.suspendMeter({ meterId, reason: `piece number ${event.fields.sequence} on two different indicia (${event.digest.toString('hex')})` });
      return;
    }
    const since = new Date(clock().getTime() - policy.windowHours * 3_600_000);
    const cases = await fraudReportDetailsSince<{ firstSeen: { plant?: string }; seenAgain: { plant?: string } }>(deps.knex, meterId, 'duplicate_indicium', since);
    const plants = new Set<string>();
    for (const c of cases) for (const s of [c.details.firstSeen, c.details.seenAgain]) if (s?.plant) plants.add(s.plant);
    if (cases.length >= policy.duplicates && plants.size >= policy.plants) {
      await deps.suspendMeter({
        meterId,
        reason: `${cases.length} duplicate sightings at ${plants.size} plants within ${policy.windowHours} h (last: ${event.digest.toString('hex')})`,
      });
    }
  };
}

function sightingView(s: { seenAt: Date; location: string; plant?: string }): Record<string, string> {
  return { seenAt: s.seenAt.toISOString(), location: s.location, ...(s.plant ? { plant: s.plant } : {}) };
}
