import type { Knex } from 'knex';
import { EMPTY, MapNode, MeterMapView, siblingPositions } from '../module/meter-map';
import {
  lockMapRowColumns, lockModuleAndMapRows, lockModuleCheckpoint, mapNodesAt, mapRowColumns, raiseOwnerEpoch, storeMapRows, type MapNodeRow,
} from '../db/repositories/meter-map';

/**
 * The meter map's row key. Each shard of a deployment keeps its map in its own schema
 * (packages/server/src/config/shard.ts), so within one the map is always row 0.
 */
export const MAP_SHARD = 0;

export interface MapRow { epoch: number; root: Buffer; nextSlot: number }

/**
 * Takes the shard for this process (called while holding the shard's lease): raises the map
 * row's ownership epoch and returns it. Every command's write of the map row then requires that
 * value (storeCommands), so a process the shard was taken from commits nothing more.
 */
export async function claimMap(db: Knex): Promise<number> {
  const row = await raiseOwnerEpoch(db, MAP_SHARD);
  if (!row) throw new Error(`the database has no meter map row ${MAP_SHARD}`);
  return Number(row.owner_epoch);
}

/**
 * The meter map's rows in PostgreSQL (packages/server/sql/0050_meter_map.sql): the map row (epoch, root, next
 * free slot) and the non-empty nodes. The database only stores them; the modules decide what
 * they prove (packages/server/src/module/psd-engine.ts). One statement to lock the row and read a proof, one to
 * store a path and the row: they are on every command's path.
 */

/** A deleted map row reads as epoch -1: the module refuses it as a rollback. */
const NO_ROW: MapRow = { epoch: -1, root: Buffer.alloc(0), nextSlot: 0 };

export async function lockMapRow(trx: Knex.Transaction): Promise<MapRow> {
  const r = await lockMapRowColumns(trx, MAP_SHARD);
  return r ? { epoch: r.epoch, root: r.root, nextSlot: r.next_slot } : NO_ROW;
}

export async function readMapRow(db: Knex): Promise<MapRow | null> {
  const r = await mapRowColumns(db, MAP_SHARD);
  return r ? { epoch: r.epoch, root: r.root, nextSlot: r.next_slot } : null;
}

/** Locks the map row (FOR UPDATE) and reads the proof for its next free slot (a meter being created). */
async function lockMapAndProveNext(trx: Knex.Transaction): Promise<{ row: MapRow; view: MeterMapView }> {
  const row = await lockMapRow(trx);
  return { row, view: { epoch: row.epoch, root: row.root, slot: row.nextSlot, siblings: await siblings(trx, row.nextSlot) } };
}

/**
 * The hot path's one round trip for module and map: locks this module's row and the map row and
 * reads the proof for a known slot (for a meter being created, `slot` null: the map row's next
 * free slot, one more round trip). `moduleRow` is null when the module has no row.
 */
export async function lockModuleAndMap(trx: Knex.Transaction, req: { moduleSerial: string; slot: number | null }): Promise<{ moduleRow: { checkpoint: Buffer | null } | null; row: MapRow; view: MeterMapView }> {
  if (req.slot === null) {
    const m = await lockModuleCheckpoint(trx, req.moduleSerial);
    return { moduleRow: m ?? null, ...(await lockMapAndProveNext(trx)) };
  }
  const { views, ...rest } = await lockModuleAndMapFor(trx, { moduleSerial: req.moduleSerial, slots: [req.slot] });
  return { ...rest, view: views[0] };
}

/**
 * lockModuleAndMap for the known slots of several meters at once (the commands of a group that
 * run side by side): one round trip, one proof per slot, all against the map as it is now.
 */
export async function lockModuleAndMapFor(trx: Knex.Transaction, req: { moduleSerial: string; slots: number[] }): Promise<{ moduleRow: { checkpoint: Buffer | null } | null; row: MapRow; views: MeterMapView[] }> {
  const paths = req.slots.map(siblingPositions);
  const wanted = new Map<string, { level: number; index: number }>();
  for (const p of paths.flat()) wanted.set(`${p.level}:${p.index}`, p);
  const pos = [...wanted.values()];
  const rows = await lockModuleAndMapRows(trx, { moduleSerial: req.moduleSerial, shard: MAP_SHARD, levels: pos.map((p) => p.level), indexes: pos.map((p) => p.index) });
  const first = rows[0];
  const row = first.epoch === null ? NO_ROW : { epoch: first.epoch, root: first.root as Buffer, nextSlot: first.next_slot as number };
  const stored = new Map<string, Buffer>();
  if (first.epoch !== null) {
    for (const n of rows) {
      if (n.level !== null && n.idx !== null && n.hash !== null) stored.set(`${n.level}:${n.idx}`, n.hash);
    }
  }
  return {
    moduleRow: first.module_rows > 0 ? { checkpoint: first.checkpoint } : null,
    row,
    views: req.slots.map((slot, k) => ({
      epoch: row.epoch, root: row.root, slot, siblings: paths[k].map((p) => stored.get(`${p.level}:${p.index}`) ?? EMPTY[p.level]),
    })),
  };
}

async function siblings(trx: Knex.Transaction, slot: number): Promise<Buffer[]> {
  const pos = siblingPositions(slot);
  return fill(pos, await mapNodesAt(trx, MAP_SHARD, pos.map((p) => p.level), pos.map((p) => p.index)));
}

/** One sibling per level, EMPTY[level] where no node is stored. */
function fill(pos: Array<{ level: number; index: number }>, rows: MapNodeRow[]): Buffer[] {
  const byLevel = new Map<number, { idx: number; hash: Buffer }>();
  for (const r of rows) if (r.level !== null && r.idx !== null && r.hash !== null) byLevel.set(r.level, { idx: r.idx, hash: r.hash });
  return pos.map((p) => {
    const n = byLevel.get(p.level);
    return n && n.idx === p.index ? n.hash : EMPTY[p.level];
  });
}

/** Stores a command's new path and the map row, in the command's transaction (one statement). */
export async function storeMap(trx: Knex.Transaction, req: { nodes: MapNode[]; epoch: number; root: Buffer; nextSlot: number }): Promise<void> {
  await storeMapRows(trx, {
    shard: MAP_SHARD, levels: req.nodes.map((n) => n.level), indexes: req.nodes.map((n) => n.index), hashes: req.nodes.map((n) => n.hash),
    epoch: req.epoch, root: req.root, nextSlot: req.nextSlot,
  });
}
