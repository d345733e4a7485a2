import type { Knex } from 'knex';

/**
 * The conservation invariants, in integer mills (architecture brief, invariant 2):
 *  - per meter: AR + DR = value downloaded - value refunded (from the journal);
 *  - system: pool available + sum(DR) + sum(AR) = bought from the post - refunds paid out.
 */
export async function conservation(db: Knex): Promise<{ violations: string[]; system: { left: number; right: number } }> {
  const violations: string[] = [];
  const rows = await db('meters as m')
    .leftJoin(
      db('journal').select('meter_id')
        .sum({ downloaded: db.raw("CASE WHEN tx_type = 'pvd' THEN amount ELSE 0 END") })
        .sum({ refunded: db.raw("CASE WHEN tx_type = 'refund' THEN amount ELSE 0 END") })
        .groupBy('meter_id').as('j'),
      'j.meter_id', 'm.meter_id')
    .select('m.meter_id', 'm.ascending_register', 'm.descending_register', 'j.downloaded', 'j.refunded');
  for (const r of rows) {
    const lhs = r.ascending_register + r.descending_register;
    const rhs = Number(r.downloaded ?? 0) - Number(r.refunded ?? 0);
    if (lhs !== rhs) violations.push(`meter ${r.meter_id}: AR + DR = ${lhs} but downloaded - refunded = ${rhs}`);
  }
  const pool = await db('pool').where({ pool_id: 1 }).first();
  const sums = await db('meters').sum({ ar: 'ascending_register', dr: 'descending_register' }).first();
  const left = pool.available + Number(sums?.ar ?? 0) + Number(sums?.dr ?? 0);
  const right = pool.purchased - pool.refunds_paid;
  if (left !== right) violations.push(`system: pool + DR + AR = ${left} but bought - refunds paid = ${right}`);
  return { violations, system: { left, right } };
}
