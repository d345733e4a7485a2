import type { Knex } from 'knex';
import { vbiError } from '@vbi/core/errors';
import { AuditRecord } from '../module/audit';
import { PsdEngine } from '../module/psd-engine';
import { sealJournalPayload } from '../module/journal-seal';
import { Approval, ReinstatementStatement, requireApprovals } from './officer-approval';
import { MAP_SHARD, lockMapRow } from './pg-meter-map';
import { commitOrThrow } from '../db/commit';
import { insertJournalRow } from '../db/repositories/journal';
import { setMapEpoch } from '../db/repositories/meter-map';
import { insertModuleRow, lockModuleRow, storeReinstatedCheckpoint } from '../db/repositories/modules';

/**
 * Officer reinstatement (docs/checkpoint.md), approved by M of the module's officers
 * (packages/server/src/ledger/officer-approval.ts): the module accepts the database's state as the
 * truth — its checkpoint row for this module and the meter map row — after a disaster recovery
 * or an investigated inhibition. One `reinstate` record, chained to the accepted row and carrying
 * a map epoch above everything seen, is stored as the module row, the map row's epoch and a
 * journal row, COMMITted, and only then made the module's whole ring; the inhibition is lifted
 * last. `acceptCheckpoint` (hex the officer read from the module row, or null for none) must
 * still be what the database holds, so nothing changed between inspection and acceptance.
 */
export async function reinstateModule(req: {
  db: Knex; engine: PsdEngine; officer: string; acceptCheckpoint: Buffer | null; approvals: Approval[];
}): Promise<AuditRecord | undefined> {
  const { db, engine } = req;
  if (typeof req.officer !== 'string' || !req.officer.trim()) throw vbiError('BAD_REQUEST', 'officer name is required');
  return engine.exclusive(async () => {
    // nothing happens before M officers approved exactly this: this module, this checkpoint, this inhibition
    const approvedBy = await requireApprovals(engine.hsm, reinstatementStatement(engine, req.acceptCheckpoint), req.approvals);
    const trx = await db.transaction();
    let prepared;
    try {
      let row = await lockModuleRow(trx, engine.hsm.serial);
      if (!row) {
        await insertModuleRow(trx, engine.hsm.serial, engine.hsm.tokenLabel);
        row = await lockModuleRow(trx, engine.hsm.serial);
      }
      const dbCheckpoint: Buffer | null = row!.checkpoint ?? null;
      const same = req.acceptCheckpoint === null ? dbCheckpoint === null : dbCheckpoint !== null && dbCheckpoint.equals(req.acceptCheckpoint);
      if (!same) throw vbiError('CHECKPOINT_MISMATCH', "the module row's checkpoint is not the one the officer accepted (it changed, or was mistyped)");
      const map = await lockMapRow(trx);
      if (map.epoch < 0) throw vbiError('BAD_REQUEST', `the database has no meter map row for shard ${MAP_SHARD}: restore it first`);
      prepared = await engine.prepareReinstatement({ dbCheckpoint, map });
      const at = new Date(prepared.record.time);
      await storeReinstatedCheckpoint(trx, engine.hsm.serial, { checkpoint: prepared.bytes, seq: prepared.record.seq, at });
      await setMapEpoch(trx, MAP_SHARD, prepared.record.mapEpoch, at);
      const sealed = await sealJournalPayload(engine.hsm, prepared.bytes, { officer: req.officer });
      await insertJournalRow(trx, {
        meter_id: '', module_serial: engine.hsm.serial, checkpoint_seq: prepared.record.seq, tx_type: 'reinstate',
        amount: 0, ascending_register: 0, descending_register: 0,
        checkpoint: prepared.bytes, payload: sealed.payload, module_mac: sealed.moduleMac, created_at: at,
      });
      await commitOrThrow(trx);
    } catch (e) {
      if (!trx.isCompleted()) await trx.rollback().catch(() => undefined);
      throw e;
    }
    return engine.completeReinstatement({ ...prepared, officer: req.officer, approvedBy });
  });
}

/** The statement the officers approve for reinstating `engine`'s module with `acceptCheckpoint` (ceremony approval-request). */
export function reinstatementStatement(engine: PsdEngine, acceptCheckpoint: Buffer | null): ReinstatementStatement {
  return {
    action: 'reinstate', moduleSerial: engine.hsm.serial,
    acceptCheckpoint: acceptCheckpoint ? acceptCheckpoint.toString('hex') : null,
    inhibitedAt: engine.status().inhibited?.at ?? null,
  };
}
