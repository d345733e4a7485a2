import type { Knex } from 'knex';
import { meterIdsWithKeysDue } from '../db/repositories/meters';
import { MeterGen } from './metergen';

/**
 * Indicium keys renewed ahead of their expiry, by the service itself (docs/pki.md, "Renewal"):
 * a meter whose current certificate ends within `renewBeforeMs` gets a new key and certificate
 * (MeterGen.renewKey: new key in the module, certified, swapped into the package in one command),
 * so an active meter never reaches a day on which it cannot print. Meters are renewed one at a
 * time, soonest expiry first; prints go on meanwhile with the old key (each command runs on the
 * package as it is). A meter that fails is retried at the next run.
 */
export interface RenewalRun {
  renewed: Array<{ meterId: string; serialHex: string; previousSerialHex: string }>;
  failed: Array<{ meterId: string; error: string }>;
}

/**
 * Meters (certified, not closed) whose indicium key expires before `until`, soonest first: the
 * package's expiry as the meter row copies it, or for a row written before that copy existed, its
 * certificate's notAfter.
 */
export async function keysDue(db: Knex, until: Date, limit = 100): Promise<string[]> {
  return meterIdsWithKeysDue(db, until, limit);
}

export async function renewDueKeys(opts: {
  db: Knex; metergen: Pick<MeterGen, 'renewKey'>; renewBeforeMs: number; clock?: () => number; limit?: number;
}): Promise<RenewalRun> {
  const now = (opts.clock ?? Date.now)();
  const out: RenewalRun = { renewed: [], failed: [] };
  for (const meterId of await keysDue(opts.db, new Date(now + opts.renewBeforeMs), opts.limit)) {
    try {
      const r = await opts.metergen.renewKey({ meterId });
      out.renewed.push({ meterId, serialHex: r.serialHex, previousSerialHex: r.previousSerialHex });
    } catch (e) {
      out.failed.push({ meterId, error: (e as Error).message });
    }
  }
  return out;
}
