import type { Knex } from 'knex';
import type { PreparedCommand } from '../module/psd-engine';
import { MAP_SHARD } from './pg-meter-map';
import { vbiError } from '../errors';

/** What one command writes besides its own rows (Step.after). */
export interface CommandRows {
  out: PreparedCommand<unknown>;
  at: Date;
  /** The journal payload sealed by the module, and its MAC. */
  payload: Buffer;
  moduleMac: Buffer;
  /** The receipt kept with the journal row (JSON), if the command signed one. */
  receipt: string | null;
}

/**
 * The rows that consecutive commands of one module's group write, in one statement (one round
 * trip on the hot path): each meter (package and non-secret columns), each journal row (record,
 * sealed payload, and the package recovery rebuilds the meter from: docs/journal-export.md),
 * the map nodes on their paths, and — as the last command left them — the module's checkpoint
 * row and the map row. Each part touches another table, so the parts do not see or overwrite
 * each other. `creates`: the one command creates its meter (the row is inserted with its slot).
 */
export async function storeCommands(trx: Knex.Transaction, req: {
  moduleSerial: string; nextSlot: number; creates: boolean; commands: CommandRows[];
  /** The one command is the master PSD's: its package and register copies go to the pool row (src/module/commands/master-psd.ts). */
  master?: boolean;
  /** The shard's ownership epoch this process claimed (claimMap): the map row is written only while it is still the row's. */
  ownerEpoch?: number;
}): Promise<void> {
  const cs = req.commands;
  if (cs.length === 0) return;
  if ((req.creates || req.master) && cs.length !== 1) throw new Error("a command that creates its meter, or the master PSD's, is stored alone");
  const last = cs[cs.length - 1];
  const col = <T>(f: (c: CommandRows) => T): T[] => cs.map(f);
  const meters = col((c) => ({
    id: c.out.package.meterId, state: c.out.package.state, counter: c.out.package.recordCounter, pkg: c.out.sealedPackage,
    cert: c.out.package.indiciumCertSerial || null,
    expiry: c.out.package.indiciumKeyExpiry ? new Date(c.out.package.indiciumKeyExpiry).toISOString() : null,
    asc: c.out.package.ascendingRegister, desc: c.out.package.descendingRegister, at: c.at.toISOString(), slot: c.out.record.slot,
  }));
  const meterArrays = [
    meters.map((m) => m.id), meters.map((m) => m.state), meters.map((m) => m.counter), meters.map((m) => m.pkg), meters.map((m) => m.cert),
    meters.map((m) => m.expiry), meters.map((m) => m.asc), meters.map((m) => m.desc), meters.map((m) => m.at), meters.map((m) => m.slot),
  ];
  const unnestMeters = `unnest(?::text[], ?::text[], ?::bigint[], ?::bytea[], ?::text[], ?::timestamptz[], ?::bigint[], ?::bigint[], ?::timestamptz[], ?::bigint[])
                          AS u(meter_id, state, record_counter, package, cert_serial, key_expiry, ascending_register, descending_register, updated_at, slot)`;
  const p = cs[0].out.package;
  const masterSql = `UPDATE pool SET package = ?::bytea, record_counter = ?::bigint, purchased = ?::bigint, available = ?::bigint,
                            refunds_paid = ?::bigint, updated_at = ?::timestamptz WHERE pool_id = 1 RETURNING 1`;
  const masterArrays = [cs[0].out.sealedPackage, p.recordCounter, p.ascendingRegister + p.descendingRegister, p.descendingRegister, p.refundRegister, cs[0].at.toISOString()];
  const meterSql = req.master ? masterSql : req.creates
    ? `INSERT INTO meters (meter_id, state, record_counter, package, cert_serial, key_expiry, ascending_register, descending_register, updated_at, slot)
       SELECT * FROM ${unnestMeters} RETURNING 1`
    : `UPDATE meters m SET state = u.state, record_counter = u.record_counter, package = u.package, cert_serial = u.cert_serial,
              key_expiry = u.key_expiry, ascending_register = u.ascending_register, descending_register = u.descending_register, updated_at = u.updated_at
         FROM ${unnestMeters} WHERE m.meter_id = u.meter_id RETURNING 1`;
  // a node on several paths is stored once, as the last command left it
  const nodes = new Map<string, { level: number; index: number; hash: Buffer }>();
  for (const c of cs) for (const n of c.out.mapNodes) nodes.set(`${n.level}:${n.index}`, n);
  const path = [...nodes.values()];
  const r = last.out.record;
  const result = await trx.raw(
    `WITH me AS (${meterSql}),
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
      ...(req.master ? masterArrays : meterArrays),
      last.out.checkpoint, r.seq, last.at, r.type, r.amount, last.at, req.moduleSerial,
      MAP_SHARD, path.map((n) => n.level), path.map((n) => n.index), path.map((n) => n.hash),
      r.mapEpoch, r.mapRoot, req.nextSlot, MAP_SHARD, req.ownerEpoch ?? null, req.ownerEpoch ?? null,
      req.moduleSerial,
      col((c) => c.out.package.meterId), col((c) => c.out.record.seq), col((c) => c.out.record.type), col((c) => c.out.record.amount),
      col((c) => c.out.record.ascendingRegister), col((c) => c.out.record.descendingRegister), col((c) => c.out.checkpoint),
      col((c) => c.payload), col((c) => c.moduleMac), col((c) => c.at.toISOString()), col((c) => c.out.package.recordCounter),
      col((c) => c.receipt), col((c) => c.out.sealedPackage),
    ] as unknown as Knex.RawBinding[]);
  const n = result.rows[0];
  if (n.maps === 0 && req.ownerEpoch !== undefined) {
    throw vbiError('SHARD_LOST', `another process took the shard over (ownership epoch ${req.ownerEpoch} is no longer the map's): nothing of this group is written`);
  }
  // the rows were read and locked in this transaction: one missing now is a bug, never a refusal
  if (n.meters !== cs.length || n.modules !== 1 || n.maps !== 1 || n.journal !== cs.length) {
    throw new Error(`module ${req.moduleSerial}: the commands' rows changed under them (meters ${n.meters}, modules ${n.modules}, map ${n.maps}, journal ${n.journal} of ${cs.length})`);
  }
}
