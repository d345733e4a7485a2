import type { Knex } from 'knex';

/**
 * The rows a group of one module's commands writes, in one statement (packages/server/src/ledger/store-command.ts):
 * the meters (or the pool row: the master PSD's), the module's checkpoint row, the map path and
 * row, and the journal rows. Each part touches another table.
 */
export interface CommandRowsStatement {
  /** master: the pool row's package and registers; create: the one meter inserted; update: the meters updated. */
  target: 'master' | 'create' | 'update';
  /** master: package, record counter, purchased, available, refunds paid, updated at; else the meters' column arrays
   * (meter id, state, record counter, package, cert serial, key expiry, AR, DR, updated at, slot). */
  targetBindings: unknown[];
  module: { serial: string; checkpoint: Buffer; seq: number; at: Date; type: string; amount: number };
  path: { shard: number; levels: number[]; indexes: number[]; hashes: Buffer[] };
  map: { shard: number; epoch: number; root: Buffer; nextSlot: number; ownerEpoch: number | null };
  journal: {
    meterIds: string[]; seqs: number[]; types: string[]; amounts: number[]; ascending: number[]; descending: number[]; checkpoints: Buffer[];
    payloads: Buffer[]; macs: Buffer[]; createdAt: string[]; sequences: number[]; receipts: Array<string | null>; packages: Buffer[];
  };
}

const UNNEST_METERS = `unnest(?::text[], ?::text[], ?::bigint[], ?::bytea[], ?::text[], ?::timestamptz[], ?::bigint[], ?::bigint[], ?::timestamptz[], ?::bigint[])
                          AS u(meter_id, state, record_counter, package, cert_serial, key_expiry, ascending_register, descending_register, updated_at, slot)`;

const TARGET_SQL = {
  master: `UPDATE pool SET package = ?::bytea, record_counter = ?::bigint, purchased = ?::bigint, available = ?::bigint,
                            refunds_paid = ?::bigint, updated_at = ?::timestamptz WHERE pool_id = 1 RETURNING 1`,
  create: `INSERT INTO meters (meter_id, state, record_counter, package, cert_serial, key_expiry, ascending_register, descending_register, updated_at, slot)
       SELECT * FROM ${UNNEST_METERS} RETURNING 1`,
  update: `UPDATE meters m SET state = u.state, record_counter = u.record_counter, package = u.package, cert_serial = u.cert_serial,
              key_expiry = u.key_expiry, ascending_register = u.ascending_register, descending_register = u.descending_register, updated_at = u.updated_at
         FROM ${UNNEST_METERS} WHERE m.meter_id = u.meter_id RETURNING 1`,
};

/** Writes the rows; how many of each were written (the map row: 0 when the ownership epoch is no longer the row's). */
export async function writeCommandRows(trx: Knex.Transaction, s: CommandRowsStatement): Promise<{ meters: number; modules: number; maps: number; journal: number }> {
  const j = s.journal;
  const result = await trx.raw(
    `WITH me AS (${TARGET_SQL[s.target]}),
          mo AS (UPDATE modules SET checkpoint = ?, checkpoint_seq = ?, last_tx_at = ?, last_tx_type = ?, last_tx_amount = ?, updated_at = ?
                  WHERE module_serial = ? RETURNING 1),
          path AS (INSERT INTO meter_map_nodes (shard, level, idx, hash)
                   SELECT ?, l, i, h FROM unnest(?::smallint[], ?::bigint[], ?::bytea[]) AS p(l, i, h)
                   ON CONFLICT (shard, level, idx) DO UPDATE SET hash = EXCLUDED.hash RETURNING 1),
          mp AS (UPDATE meter_map SET epoch = ?, root = ?, next_slot = ?, updated_at = now()
                  WHERE shard = ? AND (?::bigint IS NULL OR owner_epoch = ?) RETURNING 1),
          jo AS (INSERT INTO journal (meter_id, module_serial, checkpoint_seq, tx_type, amount, ascending_register, descending_register,
                                      checkpoint, payload, module_mac, created_at, sequence, receipt, package)
                 SELECT j.meter_id, ?, j.seq, j.tx_type, j.amount, j.a_reg, j.d_reg, j.checkpoint, j.payload, j.mac, j.created, j.sequence, j.receipt::jsonb, j.package
                   FROM unnest(?::text[], ?::bigint[], ?::text[], ?::bigint[], ?::bigint[], ?::bigint[], ?::bytea[], ?::bytea[], ?::bytea[],
                               ?::timestamptz[], ?::bigint[], ?::text[], ?::bytea[])
                        AS j(meter_id, seq, tx_type, amount, a_reg, d_reg, checkpoint, payload, mac, created, sequence, receipt, package)
                 RETURNING 1)
     SELECT (SELECT count(*) FROM me)::int AS meters, (SELECT count(*) FROM mo)::int AS modules, (SELECT count(*) FROM mp)::int AS maps,
            (SELECT count(*) FROM jo)::int AS journal`,
    [
      ...s.targetBindings,
      s.module.checkpoint, s.module.seq, s.module.at, s.module.type, s.module.amount, s.module.at, s.module.serial,
      s.path.shard, s.path.levels, s.path.indexes, s.path.hashes,
      s.map.epoch, s.map.root, s.map.nextSlot, s.map.shard, s.map.ownerEpoch, s.map.ownerEpoch,
      s.module.serial,
      j.meterIds, j.seqs, j.types, j.amounts, j.ascending, j.descending, j.checkpoints,
      j.payloads, j.macs, j.createdAt, j.sequences, j.receipts, j.packages,
    ] as unknown as Knex.RawBinding[]);
  return result.rows[0];
}
