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

/** The first certified, unassigned meter of the pool (by meter id). */
export async function firstPooledMeter(db: Knex): Promise<{ meter_id: string } | undefined> {
  return db('meters').where({ state: 'unassigned' }).whereNotNull('cert_serial').whereNull('account_id')
    .orderBy('meter_id').first('meter_id');
}

/** How many certified, unassigned meters wait in the pool. */
export async function pooledMeterCount(db: Knex): Promise<{ n?: number | string } | undefined> {
  return db('meters').where({ state: 'unassigned' }).whereNotNull('cert_serial').whereNull('account_id').count({ n: '*' }).first();
}

export async function setMeterAccount(trx: Knex.Transaction, meterId: string, accountId: number): Promise<void> {
  await trx('meters').where({ meter_id: meterId }).update({ account_id: accountId });
}

/** Deletes the meter while it is unassigned and uncertified. */
export async function deleteUncertifiedMeter(db: Knex, meterId: string): Promise<void> {
  await db('meters').where({ meter_id: meterId, state: 'unassigned' }).whereNull('cert_serial').del();
}

/** A meter's register copies and sealed package, with the value its journal's PVD records downloaded and its refund records refunded (null: none). */
export interface MeterMovementsRow {
  meter_id: string; package: Buffer; ascending_register: number; descending_register: number;
  downloaded: number | string | null; refunded: number | string | null;
}

/** Every meter with the sums of its journal's PVD and refund records. */
export async function metersWithMovements(db: Knex): Promise<MeterMovementsRow[]> {
  return db('meters as m')
    .leftJoin(
      db('journal').select('meter_id')
        .sum({ downloaded: db.raw("CASE WHEN tx_type = 'pvd' THEN amount ELSE 0 END") })
        .sum({ refunded: db.raw("CASE WHEN tx_type = 'refund' THEN amount ELSE 0 END") })
        .groupBy('meter_id').as('j'),
      'j.meter_id', 'm.meter_id')
    .select('m.meter_id', 'm.package', 'm.ascending_register', 'm.descending_register', 'j.downloaded', 'j.refunded');
}

/** Every meter's slot and sealed package. */
export async function meterSlots(db: Knex): Promise<Array<{ meter_id: string; slot: number | null; package: Buffer }>> {
  return db('meters').select('meter_id', 'slot', 'package');
}

/** The account the meter is assigned to, if it has a row. */
export async function meterAccountId(db: Knex, meterId: string): Promise<{ account_id: number | null } | undefined> {
  return db('meters').where({ meter_id: meterId }).first('account_id');
}

/** The meter's sealed package. */
export async function meterPackage(db: Knex, meterId: string): Promise<{ package: Buffer } | undefined> {
  return db('meters').where({ meter_id: meterId }).first('package');
}

/** A meter row (every column) with the checkpoint of the meter's newest journal record, as the engine locks it. */
export interface LockedMeterRow { meter_id: string; slot: number; package: Buffer; newest_checkpoint: Buffer | null; [column: string]: unknown }

/** The meter row and its newest journal record's checkpoint, one round trip; the row locked (FOR UPDATE OF m). */
export async function lockMeterWithNewestCheckpoint(trx: Knex.Transaction, meterId: string): Promise<LockedMeterRow | undefined> {
  return (await trx.raw(
    `SELECT m.*, (SELECT j.checkpoint FROM journal j WHERE j.meter_id = m.meter_id ORDER BY j.journal_id DESC LIMIT 1) AS newest_checkpoint
       FROM meters m WHERE m.meter_id = ? FOR UPDATE OF m`, [meterId])).rows[0];
}

/** lockMeterWithNewestCheckpoint for several meters, locked in meter id order. */
export async function lockMetersWithNewestCheckpoint(trx: Knex.Transaction, meterIds: string[]): Promise<LockedMeterRow[]> {
  return (await trx.raw(
    `SELECT m.*, (SELECT j.checkpoint FROM journal j WHERE j.meter_id = m.meter_id ORDER BY j.journal_id DESC LIMIT 1) AS newest_checkpoint
       FROM meters m WHERE m.meter_id = ANY(?::text[]) ORDER BY m.meter_id FOR UPDATE OF m`, [meterIds])).rows as LockedMeterRow[];
}

/** The meter's row updated with these columns. */
export async function updateMeterRow(trx: Knex.Transaction, meterId: string, columns: Record<string, unknown>): Promise<void> {
  await trx('meters').where({ meter_id: meterId }).update(columns);
}

/** A meter's row inserted. */
export async function insertMeterRow(trx: Knex.Transaction, row: { meter_id: string; slot: number; [column: string]: unknown }): Promise<void> {
  await trx('meters').insert(row);
}
