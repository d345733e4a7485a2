import type { Knex } from 'knex';
import { HsmModule } from '../hsm/hsm-module';
import { decodeCheckpoint } from '../module/checkpoint';
import { openJournalPayload } from '../module/journal-seal';
import { vbiError } from '@vbi/core/errors';
import { journalOfMeter } from '../db/repositories/journal';
import { meterRow } from '../db/repositories/meters';
import { openPackage } from '../module/package-seal';

export interface HistoryLine {
  journalId: number;
  at: string;
  type: string;
  amount: number;
  ascendingRegister: number;
  descendingRegister: number;
  module: string;
  seq: number;
  details: Record<string, unknown>;
}

/**
 * A meter's registers and history as the journal records them, every checkpoint verified and
 * every payload decrypted by a module (so an edited row shows up as an error, not as history).
 */
export async function meterHistory(req: { db: Knex; hsm: HsmModule; meterId: string }): Promise<{ meter: Record<string, unknown>; history: HistoryLine[] }> {
  const m = await meterRow(req.db, req.meterId);
  if (!m) throw vbiError('UNKNOWN_METER', `no meter ${req.meterId}`);
  const rows = await journalOfMeter(req.db, req.meterId);
  const history: HistoryLine[] = [];
  for (const r of rows) {
    const cp = await decodeCheckpoint(req.hsm, r.checkpoint);
    const details = await openJournalPayload(req.hsm, r.checkpoint, r.payload);
    // raw indicium bytes are long: show their size, not their base64
    for (const k of ['data', 'signature']) if (typeof details[k] === 'string') details[k] = `${Buffer.from(details[k] as string, 'base64').length} bytes`;
    history.push({
      journalId: r.journal_id, at: new Date(cp.time).toISOString(), type: cp.type, amount: cp.amount,
      ascendingRegister: cp.ascendingRegister, descendingRegister: cp.descendingRegister, module: cp.moduleSerial, seq: cp.seq, details,
    });
  }
  // the licence is only in the sealed package (docs/licensing.md): read it there, MAC checked
  const pkg = await openPackage(req.hsm, m.package, m.meter_id);
  return {
    meter: {
      meterId: m.meter_id, accountId: m.account_id, state: m.state, licence: pkg.licence, licenceId: pkg.licenceId, recordCounter: m.record_counter,
      ascendingRegister: m.ascending_register, descendingRegister: m.descending_register, updatedAt: m.updated_at,
    },
    history,
  };
}

export function millsText(mills: number): string {
  const sign = mills < 0 ? '-' : '';
  const a = Math.abs(mills);
  return `${sign}${Math.floor(a / 1000)}.${String(a % 1000).padStart(3, '0')}`;
}
