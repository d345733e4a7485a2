import type { Knex } from 'knex';
import { ExportEntry } from '../ledger/journal-export';
import { indiciaBetween, journalRecordsBetween } from '../db/repositories/journal';

/**
 * Where a daily report reads the day's module records and indicia: the live database, or a
 * journal export (docs/journal-export.md) — the same report from either (docs/reports.md).
 */
export interface ReportRecord {
  at: string; moduleSerial: string; seq: number; meterId: string; type: string;
  amount: number; ascendingRegister: number; descendingRegister: number;
}

export interface ReportIndicium {
  at: string; meterId: string; kind: string; postage: number; moduleSerial: string; checkpointSeq: number;
  data: Buffer; signature: Buffer;
}

export interface ReportSource {
  name: 'database' | 'journal-export';
  /** Records whose time is in [from, to), in time order (then module, sequence). */
  records(from: Date, to: Date): Promise<ReportRecord[]>;
  /** Indicia written in [from, to), in the same order as their records. */
  indicia(from: Date, to: Date): Promise<ReportIndicium[]>;
}

const byTime = <T extends { at: string; moduleSerial: string }>(seqOf: (x: T) => number) => (x: T, y: T) =>
  x.at < y.at ? -1 : x.at > y.at ? 1 : x.moduleSerial < y.moduleSerial ? -1 : x.moduleSerial > y.moduleSerial ? 1 : seqOf(x) - seqOf(y);

export function databaseSource(db: Knex): ReportSource {
  return {
    name: 'database',
    async records(from, to) {
      const rows = await journalRecordsBetween(db, from, to);
      return rows.map((r) => ({
        at: r.created_at.toISOString(), moduleSerial: r.module_serial, seq: Number(r.checkpoint_seq), meterId: r.meter_id, type: r.tx_type,
        amount: Number(r.amount), ascendingRegister: Number(r.ascending_register), descendingRegister: Number(r.descending_register),
      })).sort(byTime((x) => x.seq));
    },
    async indicia(from, to) {
      const rows = await indiciaBetween(db, from, to);
      return rows.map((r) => ({
        at: r.created_at.toISOString(), meterId: r.meter_id, kind: r.kind, postage: Number(r.postage), moduleSerial: r.module_serial,
        checkpointSeq: Number(r.checkpoint_seq), data: r.data, signature: r.signature, id: Number(r.indicium_id),
      })).sort((x, y) => byTime<typeof x>((z) => z.checkpointSeq)(x, y) || x.id - y.id).map(({ id: _id, ...rest }) => rest);
    },
  };
}

/** A verified journal export's entries (readExport) as a report source. */
export function exportSource(entries: ExportEntry[]): ReportSource {
  const inDay = (at: string, from: Date, to: Date) => at >= from.toISOString() && at < to.toISOString();
  return {
    name: 'journal-export',
    async records(from, to) {
      return entries.filter((e) => inDay(e.journal.createdAt, from, to)).map((e) => ({
        at: e.journal.createdAt, moduleSerial: e.journal.moduleSerial, seq: e.journal.seq, meterId: e.journal.meterId, type: e.journal.type,
        amount: e.journal.amount, ascendingRegister: e.journal.ascendingRegister, descendingRegister: e.journal.descendingRegister,
      })).sort(byTime((x) => x.seq));
    },
    async indicia(from, to) {
      const out: Array<ReportIndicium & { id: number }> = [];
      for (const e of entries) {
        for (const r of e.rows.indicia ?? []) {
          const at = new Date(r.created_at as string).toISOString();
          if (!inDay(at, from, to)) continue;
          out.push({
            at, meterId: String(r.meter_id), kind: String(r.kind), postage: Number(r.postage), moduleSerial: String(r.module_serial),
            checkpointSeq: Number(r.checkpoint_seq), data: Buffer.from(String(r.data), 'base64'), signature: Buffer.from(String(r.signature), 'base64'), id: Number(r.indicium_id),
          });
        }
      }
      return out.sort((x, y) => byTime<typeof x>((z) => z.checkpointSeq)(x, y) || x.id - y.id).map(({ id: _id, ...rest }) => rest);
    },
  };
}
