import type { Knex } from 'knex';
import { HsmModule } from '../hsm/hsm-module';
import { ZERO_DIGEST, decodeCheckpoint, digestOf } from '../module/checkpoint';
import { verifyJournalMac } from './journal';

export interface JournalReport {
  ok: boolean;
  rowsChecked: number;
  modules: number;
  /** The first row (per module, in sequence order) that does not verify. */
  firstBroken?: { journalId: number; moduleSerial: string; seq: number; reason: string };
}

/**
 * Verifies the journal end to end with a module holding the deployment's MAC key: each row's
 * checkpoint MAC and module MAC, that its columns say what its checkpoint says, that each
 * module's rows form an unbroken hash chain (prevDigest = digest of the previous row's
 * checkpoint), and that the module table's checkpoint is the chain's last record. A deleted,
 * reordered, edited or inserted row breaks one of these.
 */
export async function verifyJournal(req: { db: Knex; hsm: HsmModule }): Promise<JournalReport> {
  const serials = (await req.db('journal').distinct('module_serial')).map((r) => r.module_serial as string).sort();
  let rowsChecked = 0;
  for (const serial of serials) {
    const rows = await req.db('journal').where({ module_serial: serial }).orderBy('checkpoint_seq').orderBy('journal_id');
    let prev: { checkpoint: Buffer; seq: number } | null = null;
    for (const r of rows) {
      const broken = (reason: string): JournalReport => ({
        ok: false, rowsChecked, modules: serials.length,
        firstBroken: { journalId: r.journal_id, moduleSerial: serial, seq: r.checkpoint_seq, reason },
      });
      let cp;
      try {
        cp = await decodeCheckpoint(req.hsm, r.checkpoint);
      } catch (e) {
        return broken(`checkpoint: ${(e as Error).message}`);
      }
      if (!(await verifyJournalMac(req.hsm, r.checkpoint, r.payload, r.module_mac))) return broken('module MAC does not verify');
      if (cp.moduleSerial !== serial || cp.seq !== r.checkpoint_seq || cp.meterId !== r.meter_id || cp.type !== r.tx_type ||
          cp.amount !== r.amount || cp.ascendingRegister !== r.ascending_register || cp.descendingRegister !== r.descending_register) {
        return broken('row columns differ from its checkpoint record');
      }
      if (prev) {
        if (cp.seq <= prev.seq) return broken(`sequence ${cp.seq} does not follow ${prev.seq}`);
        if (!cp.prevDigest.equals(digestOf(prev.checkpoint))) return broken('hash chain broken: a row before it is missing or was changed');
      } else if (!cp.prevDigest.equals(ZERO_DIGEST)) {
        return broken("the module's first journal row does not start its chain (rows missing before it)");
      }
      prev = { checkpoint: r.checkpoint, seq: cp.seq };
      rowsChecked++;
    }
    const mod = await req.db('modules').where({ module_serial: serial }).first('checkpoint');
    if (prev && (!mod?.checkpoint || !(mod.checkpoint as Buffer).equals(prev.checkpoint))) {
      const last = rows[rows.length - 1];
      return { ok: false, rowsChecked, modules: serials.length, firstBroken: { journalId: last.journal_id, moduleSerial: serial, seq: last.checkpoint_seq, reason: "module table checkpoint is not the chain's last record (rows missing after it?)" } };
    }
  }
  return { ok: true, rowsChecked, modules: serials.length };
}
