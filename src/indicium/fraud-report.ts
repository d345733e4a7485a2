import type { Knex } from 'knex';
import { DuplicateEvent } from './verify';

/**
 * The default onDuplicate policy: write a fraud report (fraud_reports, sql/0010) and, when the
 * transaction engine provides it, suspend the meter (WO 99/41690: on "the same evidence of
 * payment more than one time" the server disables the descending register and reports).
 * The report is written first so that a failing suspension still leaves the evidence.
 */
export function fraudReportPolicy(deps: {
  knex: Knex;
  suspendMeter?: (req: { meterId: string; reason: string }) => Promise<void>;
}): (event: DuplicateEvent) => Promise<void> {
  return async (event) => {
    await deps.knex('fraud_reports').insert({
      kind: 'duplicate_indicium',
      meter_id: event.fields.meterId,
      indicium_digest: event.digest,
      details: {
        sequence: event.fields.sequence,
        postage: event.fields.postage,
        dateOfMailing: event.fields.dateOfMailing,
        firstSeen: { seenAt: event.firstSeen.seenAt.toISOString(), location: event.firstSeen.location },
        seenAgain: { seenAt: event.scan.seenAt.toISOString(), location: event.scan.location },
      },
    });
    await deps.suspendMeter?.({ meterId: event.fields.meterId, reason: `duplicate indicium ${event.digest.toString('hex')}` });
  };
}
