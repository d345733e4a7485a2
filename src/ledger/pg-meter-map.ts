import type { Knex } from 'knex';
import { EMPTY, MapNode, MeterMapView, siblingPositions } from '../module/meter-map';

/** The one map shard of this deployment (docs/ledger.md, "Spreading over nodes"). */
export const MAP_SHARD = 0;

export interface MapRow { epoch: number; root: Buffer; nextSlot: number }

/**
 * The meter map's rows in PostgreSQL (sql/0050_meter_map.sql): the map row (epoch, root, next
 * free slot) and the non-empty nodes. The database only stores them; the modules decide what
 * they prove (src/module/psd-engine.ts).
 */
export async function lockMapRow(trx: Knex.Transaction): Promise<MapRow> {
  const r = await trx('meter_map').where({ shard: MAP_SHARD }).forUpdate().first();
  if (!r) return { epoch: -1, root: Buffer.alloc(0), nextSlot: 0 }; // row deleted: the module refuses it
  return { epoch: r.epoch, root: r.root, nextSlot: r.next_slot };
}

export async function readMapRow(db: Knex): Promise<MapRow | null> {
  const r = await db('meter_map').where({ shard: MAP_SHARD }).first();
  return r ? { epoch: r.epoch, root: r.root, nextSlot: r.next_slot } : null;
}

/** The proof for `slot`: one sibling per level, bottom-up, EMPTY[level] where no node is stored. One query. */
export async function mapView(trx: Knex.Transaction, row: MapRow, slot: number): Promise<MeterMapView> {
  const pos = siblingPositions(slot);
  const rows: Array<{ level: number; idx: number; hash: Buffer }> = await trx('meter_map_nodes')
    .where({ shard: MAP_SHARD })
    .whereIn(['level', 'idx'], pos.map((p) => [p.level, p.index]))
    .select('level', 'idx', 'hash');
  const byLevel = new Map(rows.map((r) => [r.level, r]));
  const siblings = pos.map((p) => {
    const r = byLevel.get(p.level);
    return r && r.idx === p.index ? r.hash : EMPTY[p.level];
  });
  return { epoch: row.epoch, root: row.root, slot, siblings };
}

/** Stores a command's new path and the map row, in the command's transaction. */
export async function storeMap(trx: Knex.Transaction, req: { nodes: MapNode[]; epoch: number; root: Buffer; nextSlot: number }): Promise<void> {
  await trx('meter_map_nodes')
    .insert(req.nodes.map((n) => ({ shard: MAP_SHARD, level: n.level, idx: n.index, hash: n.hash })))
    .onConflict(['shard', 'level', 'idx']).merge(['hash']);
  await trx('meter_map').where({ shard: MAP_SHARD }).update({ epoch: req.epoch, root: req.root, next_slot: req.nextSlot, updated_at: trx.fn.now() });
}
