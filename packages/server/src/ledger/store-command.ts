import type { Knex } from 'knex';
import type { PreparedCommand } from '../module/psd-engine';
import { MAP_SHARD } from './pg-meter-map';
import { vbiError } from '@vbi/core/errors';
import { writeCommandRows } from '../db/repositories/command-rows';

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
  /** The one command is the master PSD's: its package and register copies go to the pool row (packages/server/src/module/commands/master-psd.ts). */
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
  const p = cs[0].out.package;
  const masterArrays = [cs[0].out.sealedPackage, p.recordCounter, p.ascendingRegister + p.descendingRegister, p.descendingRegister, p.refundRegister, cs[0].at.toISOString()];
  // a node on several paths is stored once, as the last command left it
  const nodes = new Map<string, { level: number; index: number; hash: Buffer }>();
  for (const c of cs) for (const n of c.out.mapNodes) nodes.set(`${n.level}:${n.index}`, n);
  const path = [...nodes.values()];
  const r = last.out.record;
  const n = await writeCommandRows(trx, {
    target: req.master ? 'master' : req.creates ? 'create' : 'update',
    targetBindings: req.master ? masterArrays : meterArrays,
    module: { serial: req.moduleSerial, checkpoint: last.out.checkpoint, seq: r.seq, at: last.at, type: r.type, amount: r.amount },
    path: { shard: MAP_SHARD, levels: path.map((x) => x.level), indexes: path.map((x) => x.index), hashes: path.map((x) => x.hash) },
    map: { shard: MAP_SHARD, epoch: r.mapEpoch, root: r.mapRoot, nextSlot: req.nextSlot, ownerEpoch: req.ownerEpoch ?? null },
    journal: {
      meterIds: col((c) => c.out.package.meterId), seqs: col((c) => c.out.record.seq), types: col((c) => c.out.record.type), amounts: col((c) => c.out.record.amount),
      ascending: col((c) => c.out.record.ascendingRegister), descending: col((c) => c.out.record.descendingRegister), checkpoints: col((c) => c.out.checkpoint),
      payloads: col((c) => c.payload), macs: col((c) => c.moduleMac), createdAt: col((c) => c.at.toISOString()), sequences: col((c) => c.out.package.recordCounter),
      receipts: col((c) => c.receipt), packages: col((c) => c.out.sealedPackage),
    },
  });
  if (n.maps === 0 && req.ownerEpoch !== undefined) {
    throw vbiError('SHARD_LOST', `another process took the shard over (ownership epoch ${req.ownerEpoch} is no longer the map's): nothing of this group is written`);
  }
  // the rows were read and locked in this transaction: one missing now is a bug, never a refusal
  if (n.meters !== cs.length || n.modules !== 1 || n.maps !== 1 || n.journal !== cs.length) {
    throw new Error(`module ${req.moduleSerial}: the commands' rows changed under them (meters ${n.meters}, modules ${n.modules}, map ${n.maps}, journal ${n.journal} of ${cs.length})`);
  }
}
