import type { Knex } from 'knex';
import { insertRefund } from '../db/repositories/refunds';

/**
 * The refunds rows, written inside the refund command's transaction. The pool's registers are
 * the master PSD's (packages/server/src/module/commands/master-psd.ts): the refund's `pool` movement moves them
 * (a partial refund is paid out of the system, a full refund's remaining DR goes back to the pool).
 */
export async function recordRefund(trx: Knex.Transaction, r: {
  meterId: string; kind: 'partial' | 'full'; amount: number; reason: string; record: { moduleSerial: string; seq: number }; at: Date;
}): Promise<number> {
  return Number(await insertRefund(trx, { meterId: r.meterId, kind: r.kind, amount: r.amount, reason: r.reason, moduleSerial: r.record.moduleSerial, seq: r.record.seq, at: r.at }));
}
