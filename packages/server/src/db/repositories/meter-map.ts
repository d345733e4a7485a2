import type { Knex } from 'knex';

/** The meter_map row of a shard (epoch, root, next free slot, ownership epoch) and its meter_map_nodes. */

/** The map row's epoch set (a reinstatement's). */
export async function setMapEpoch(trx: Knex.Transaction, shard: number, epoch: number, at: Date): Promise<void> {
  await trx('meter_map').where({ shard }).update({ epoch, updated_at: at });
}

export interface MapRowColumns { epoch: number; root: Buffer; next_slot: number }
export interface MapNodeRow { level: number | null; idx: number | null; hash: Buffer | null }

/** Raises the map row's ownership epoch; the new epoch, none when the shard has no map row. */
export async function raiseOwnerEpoch(db: Knex, shard: number): Promise<{ owner_epoch: number | string } | undefined> {
  const r = await db.raw('UPDATE meter_map SET owner_epoch = owner_epoch + 1 WHERE shard = ? RETURNING owner_epoch', [shard]);
  return r.rows[0];
}

/** The map row, locked (FOR UPDATE). */
export async function lockMapRowColumns(trx: Knex.Transaction, shard: number): Promise<MapRowColumns | undefined> {
  const r = await trx.raw('SELECT epoch, root, next_slot FROM meter_map WHERE shard = ? FOR UPDATE', [shard]);
  return r.rows[0];
}

/** The map row, every column. */
export async function mapRowColumns(db: Knex, shard: number): Promise<MapRowColumns | undefined> {
  return db('meter_map').where({ shard }).first();
}

/** The stored nodes at the positions (level, index). */
export async function mapNodesAt(trx: Knex.Transaction, shard: number, levels: number[], indexes: number[]): Promise<MapNodeRow[]> {
  const r = await trx.raw(
    'SELECT level, idx, hash FROM meter_map_nodes WHERE shard = ? AND (level, idx) IN (SELECT * FROM unnest(?::smallint[], ?::bigint[]))',
    [shard, levels, indexes]);
  return r.rows;
}

/**
 * One round trip: the module's row and the map row locked (FOR UPDATE), and the stored nodes at
 * the positions (level, index). One row per node found (at least one row); module_rows 0: the
 * module has no row; epoch null: the shard has no map row.
 */
export async function lockModuleAndMapRows(trx: Knex.Transaction, req: { moduleSerial: string; shard: number; levels: number[]; indexes: number[] }): Promise<Array<
  MapNodeRow & { module_rows: number; checkpoint: Buffer | null; epoch: number | null; root: Buffer | null; next_slot: number | null }
>> {
  const r = await trx.raw(
    `WITH mo AS (SELECT checkpoint FROM modules WHERE module_serial = ? FOR UPDATE),
          mp AS (SELECT epoch, root, next_slot FROM meter_map WHERE shard = ? FOR UPDATE)
     SELECT (SELECT count(*) FROM mo)::int AS module_rows, (SELECT checkpoint FROM mo) AS checkpoint,
            mp.epoch, mp.root, mp.next_slot, n.level, n.idx, n.hash
       FROM (SELECT 1) AS one
       LEFT JOIN mp ON true
       LEFT JOIN (SELECT level, idx, hash FROM meter_map_nodes
                   WHERE shard = ? AND (level, idx) IN (SELECT * FROM unnest(?::smallint[], ?::bigint[]))) n ON true`,
    [req.moduleSerial, req.shard, req.shard, req.levels, req.indexes]);
  return r.rows;
}

/** The module's checkpoint, its row locked (FOR UPDATE). */
export async function lockModuleCheckpoint(trx: Knex.Transaction, moduleSerial: string): Promise<{ checkpoint: Buffer | null } | undefined> {
  return trx('modules').where({ module_serial: moduleSerial }).forUpdate().first('checkpoint');
}

/** Stores a path of nodes and the map row (one statement). */
export async function storeMapRows(trx: Knex.Transaction, req: { shard: number; levels: number[]; indexes: number[]; hashes: Buffer[]; epoch: number; root: Buffer; nextSlot: number }): Promise<void> {
  await trx.raw(
    `WITH path AS (
       INSERT INTO meter_map_nodes (shard, level, idx, hash)
       SELECT ?, l, i, h FROM unnest(?::smallint[], ?::bigint[], ?::bytea[]) AS p(l, i, h)
       ON CONFLICT (shard, level, idx) DO UPDATE SET hash = EXCLUDED.hash)
     UPDATE meter_map SET epoch = ?, root = ?, next_slot = ?, updated_at = now() WHERE shard = ?`,
    [req.shard, req.levels, req.indexes, req.hashes, req.epoch, req.root, req.nextSlot, req.shard]);
}

/** The map row's epoch set, its time the database's (a replayed reinstatement's). */
export async function setMapEpochNow(trx: Knex.Transaction, shard: number, epoch: number): Promise<void> {
  await trx.raw('UPDATE meter_map SET epoch = ?, updated_at = now() WHERE shard = ?', [epoch, shard]);
}
