import type { Knex } from 'knex';

/** The pool table: the vendor's postage pool registers (one row, pool_id 1), in mills. */
export interface PoolRegistersRow {
  purchased: number | string;
  available: number | string;
  refunds_paid: number | string;
  updated_at: Date;
}

export async function readPoolRegisters(db: Knex): Promise<PoolRegistersRow> {
  return db('pool').where({ pool_id: 1 }).first('purchased', 'available', 'refunds_paid', 'updated_at');
}

/** What the pool can supply now. */
export async function poolAvailable(db: Knex): Promise<{ available: number } | undefined> {
  return db('pool').where({ pool_id: 1 }).first('available');
}
