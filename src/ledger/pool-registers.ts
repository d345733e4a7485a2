import type { Knex } from 'knex';
import { vbiError } from '../errors';

/**
 * The vendor's pool (master PSD registers) as the commands move value in and out of it, always
 * inside the command's transaction. Shared by the ledger's commands and the mailer's service.
 */

/** Locks the pool row for a PVD and refuses one it cannot cover (POOL_EXHAUSTED). */
export async function reservePool(trx: Knex.Transaction, amount: number): Promise<void> {
  const pool = await trx('pool').where({ pool_id: 1 }).forUpdate().first();
  if (pool.available < amount) throw vbiError('POOL_EXHAUSTED', `pool holds ${pool.available} mills, the PVD asks ${amount}`);
}

/** A PVD took `amount` out of the pool (after reservePool in the same transaction). */
export async function debitPool(trx: Knex.Transaction, amount: number): Promise<void> {
  await trx('pool').where({ pool_id: 1 }).update({ available: trx.raw('available - ?', [amount]), updated_at: trx.fn.now() });
}

/**
 * A refund: a partial (spoilage) refund leaves the system (refunds paid out); a full refund puts
 * the meter's remaining DR back into the pool. Either way a refunds row records it; returns its id.
 */
export async function recordRefund(trx: Knex.Transaction, r: {
  meterId: string; kind: 'partial' | 'full'; amount: number; reason: string; record: { moduleSerial: string; seq: number }; at: Date;
}): Promise<number> {
  await trx('pool').where({ pool_id: 1 }).update(r.kind === 'partial'
    ? { refunds_paid: trx.raw('refunds_paid + ?', [r.amount]), updated_at: trx.fn.now() }
    : { available: trx.raw('available + ?', [r.amount]), updated_at: trx.fn.now() });
  const [row] = await trx('refunds').insert({
    meter_id: r.meterId, kind: r.kind, amount: r.amount, reason: r.reason,
    module_serial: r.record.moduleSerial, checkpoint_seq: r.record.seq, created_at: r.at,
  }).returning('refund_id');
  return Number(row.refund_id);
}
