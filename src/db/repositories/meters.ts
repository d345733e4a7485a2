import type { Knex } from 'knex';

/** The meters table. */

/** How many meters have an indicium key expiry, and the soonest one. */
export async function indiciumKeyHorizon(db: Knex): Promise<{ meters: number | string; soonest: Date | null } | undefined> {
  return db('meters').whereNotNull('key_expiry').first(db.raw('count(*) as meters'), db.raw('min(key_expiry) as soonest'));
}

/**
 * Meters (certified, not closed) whose indicium key expires before `until`, soonest first: the
 * meter row's key_expiry, else its certificate's not_after.
 */
export async function meterIdsWithKeysDue(db: Knex, until: Date, limit: number): Promise<string[]> {
  const expiry = db.raw('coalesce(m.key_expiry, c.not_after)');
  const rows = await db('meters as m').join('certificates as c', 'c.serial_hex', 'm.cert_serial')
    .whereNot('m.state', 'closed').andWhere(expiry, '<', until)
    .orderBy(expiry as unknown as string).limit(limit).select('m.meter_id');
  return rows.map((r: { meter_id: string }) => r.meter_id);
}
