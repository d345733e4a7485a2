import { decodeIndicium, assembleIndicium } from '@vbi/core/indicium/layout';
import { ReportSource } from './report-source';

/**
 * The day's activity as the postal authority ingests it (docs/reports.md; WO 01/29778 and the
 * CMRS/NMATS reports of the vendor's postal services): every meter movement and reset, and every
 * indicium printed, for one UTC day. Built the same way from the database and from a journal
 * export, so a report can be reproduced after the fact and compared byte for byte.
 */
export const REPORT_FORMAT = 'vbi-daily-report/1';

/** Records that move a meter or its funds (not prints, inquiries, sessions or reinstatements). */
export const MOVEMENT_TYPES = [
  'meter-create', 'meter-certify', 'meter-assign', 'registration', 'pvd', 'refund', 'withdraw', 'suspend', 'reactivate', 'key-renewal', 'license', 'revoke-licence',
] as const;

export interface Movement {
  at: string; meterId: string; type: string; amount: number; ascendingRegister: number; descendingRegister: number; moduleSerial: string; seq: number;
}

export interface Transaction {
  at: string; meterId: string; kind: string; piece: number; postage: number; dateOfMailing: string; originZip: string; destinationZip: string;
  rateCategory: string; certSerial: string; moduleSerial: string; checkpointSeq: number;
}

export interface DailyActivity {
  format: string;
  date: string;
  movements: { rows: Movement[]; totals: { records: number; byType: Record<string, number>; downloaded: number; refunded: number } };
  transactions: { rows: Transaction[]; totals: { indicia: number; postage: number; corrections: number; meters: number } };
}

/** [00:00Z of `date`, 00:00Z of the next day). `date` is YYYY-MM-DD. */
export function dayBounds(date: string): { from: Date; to: Date } {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date) || Number.isNaN(Date.parse(`${date}T00:00:00Z`)) || new Date(`${date}T00:00:00Z`).toISOString().slice(0, 10) !== date) {
    throw new RangeError(`not a calendar date: ${date}`);
  }
  const from = new Date(`${date}T00:00:00Z`);
  return { from, to: new Date(from.getTime() + 86_400_000) };
}

export async function dailyActivity(source: ReportSource, date: string): Promise<DailyActivity> {
  const { from, to } = dayBounds(date);
  const movements: Movement[] = (await source.records(from, to)).filter((r) => (MOVEMENT_TYPES as readonly string[]).includes(r.type)).map((r) => ({
    at: r.at, meterId: r.meterId, type: r.type, amount: r.amount, ascendingRegister: r.ascendingRegister, descendingRegister: r.descendingRegister,
    moduleSerial: r.moduleSerial, seq: r.seq,
  }));
  const byType: Record<string, number> = {};
  for (const m of movements) byType[m.type] = (byType[m.type] ?? 0) + 1;
  const transactions: Transaction[] = (await source.indicia(from, to)).map((i) => {
    const f = decodeIndicium(assembleIndicium(i.data, i.signature)).fields;
    return {
      at: i.at, meterId: i.meterId, kind: i.kind, piece: f.sequence, postage: i.postage, dateOfMailing: f.dateOfMailing, originZip: f.originZip,
      destinationZip: f.destinationZip, rateCategory: f.rateCategory, certSerial: f.certSerial, moduleSerial: i.moduleSerial, checkpointSeq: i.checkpointSeq,
    };
  });
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  return {
    format: REPORT_FORMAT,
    date,
    movements: {
      rows: movements,
      totals: {
        records: movements.length, byType,
        downloaded: sum(movements.filter((m) => m.type === 'pvd').map((m) => m.amount)),
        refunded: sum(movements.filter((m) => m.type === 'refund').map((m) => m.amount)),
      },
    },
    transactions: {
      rows: transactions,
      totals: {
        indicia: transactions.length, postage: sum(transactions.map((t) => t.postage)),
        corrections: transactions.filter((t) => t.kind === 'correction').length, meters: new Set(transactions.map((t) => t.meterId)).size,
      },
    },
  };
}
