import type { Knex } from 'knex';

/** The meters table: one row per meter, the sealed package and non-secret copies of its registers. */
export interface MeterRow {
  meter_id: string;
  account_id: number | null;
  state: 'unassigned' | 'active' | 'suspended' | 'closed';
  record_counter: number;
  package: Buffer;
  ascending_register: number;
  descending_register: number;
  updated_at: Date;
  cert_serial: string | null;
  slot: number | null;
  key_expiry: Date | null;
}

/** The meter's row, every column. */
export async function meterRow(db: Knex, meterId: string): Promise<MeterRow | undefined> {
  return db('meters').where({ meter_id: meterId }).first();
}

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

/** Whether the meter has a row. */
export async function meterExists(db: Knex, meterId: string): Promise<boolean> {
  return Boolean(await db('meters').where({ meter_id: meterId }).first('meter_id'));
}
